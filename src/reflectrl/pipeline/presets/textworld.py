"""The TextWorld environment's changes to each pipeline preset (its cpu preset starts from `TAXI_CPU_LESSONS`).

Why each setting, and what was measured for the cpu preset: experiments/README.md#textworld.
"""

from __future__ import annotations

from typing import Any

from reflectrl.pipeline.presets.taxi import TAXI_CPU_LESSONS

CHANGES: dict[str, dict[str, Any]] = {
    # Coin collector (the default challenge); two games per split keep the tiny run's generation to seconds.
    "tiny": {"level": "easy", "env_kwargs": {"games": 2}},
    # Run once (62.9 min; its frozen reflector limits Reflect-RL, RL learned nothing from greedy episodes): coin collector at the medium level, the taxi cpu preset's reasoned
    # reflections (40 tokens hold every one), labels after the actions, 40 games per split to keep generation short
    # (experiments/textworld_pipeline/preset_notes.md; its run: experiments/textworld_pipeline/README.md).
    "cpu": {
        "level": "medium", "horizon": 12, "label_after": True, "reflection_tokens": 40,
        "env_kwargs": {"challenge": "coin_collector", "games": 40},
        **TAXI_CPU_LESSONS,
        "data": {"episodes": 120, "teacher": "oracle:reasoned", "misleading": 0.0},
        "sft_by_role": {"reflector": {"max_steps": 120, "lr_scheduler": "cosine"}},
        "rl": {**TAXI_CPU_LESSONS["rl"], "levels": ("easy", "medium"), "curriculum_schedule": (2,), "skip_zero_advantage": True},
        "eval": {"episodes": None, "levels": ("easy", "medium"), "batch_size": 64, "prompted_episodes": 10},
    },
    "gpu": {
        "level": "hard", "horizon": 30, "env_kwargs": {"challenge": "treasure_hunter"},
        "rl": {"levels": ("easy", "medium", "hard"), "curriculum_schedule": (30, 80)}, "eval": {"episodes": None},
    },
}
"""Changes to each preset for textworld: preset name -> changes, nested like `PRESET_CHANGES`
(`reflectrl.pipeline.presets.ENV_OVERRIDES["textworld"]`)."""
