"""The corridor environment's changes to each pipeline preset: a longer corridor in a larger preset."""

from __future__ import annotations

from typing import Any

CHANGES: dict[str, dict[str, Any]] = {
    "tiny": {"level": "short"},
    "cpu": {"level": "medium", "horizon": None},
    "gpu": {"level": "long", "rl": {"levels": ("short", "medium", "long"), "curriculum_schedule": (20, 50)}},
}
"""Changes to each preset for corridor: preset name -> changes, nested like `PRESET_CHANGES`
(`reflectrl.pipeline.presets.ENV_OVERRIDES["corridor"]`)."""
