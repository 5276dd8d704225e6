"""The AutoExplore environment's changes to each pipeline preset (its cpu preset starts from `TAXI_CPU_LESSONS`).

Why each setting: experiments/README.md#autoexplore. A cpu run takes about 2 h 20 min on a 2-core CPU,
ceiling rows included (experiments/autoexplore_pipeline/README.md).
"""

from __future__ import annotations

from typing import Any

from reflectrl.pipeline.presets.taxi import TAXI_CPU_LESSONS

CHANGES: dict[str, dict[str, Any]] = {
    # Test split = repositories never used for training; the prompts are long (listings, file heads).
    "tiny": {"level": "depth1", "env_kwargs": {"view_chars": 200}},
    # Teacher data at every depth (the same moves: cd, cat, id); RL on depth 1 twice, then depth 2 (the paper's
    # curriculum, shortened); every test task at depths 1 and 2 (experiments/autoexplore_pipeline/README.md).
    # Decoy reads in 200 episodes, policies 200 steps: run 1's reflective agent answered with the first file it read,
    # and after 120 steps followed its reflection in 61% of steps (experiments/autoexplore_rl/README.md, run 1).
    # Labels after the actions, as on ALFWorld (experiments/alfworld_rl/README.md, "The menu layout").
    "cpu": {
        "level": "all", "horizon": 8, "label_after": True, "env_kwargs": {"view_chars": 300},
        **TAXI_CPU_LESSONS,
        "data": {"episodes": 200, "decoy_prob": 0.5, **TAXI_CPU_LESSONS["data"]},
        "sft": {**TAXI_CPU_LESSONS["sft"], "max_steps": 200},
        # The reflector stays at 100 steps: 400 learned the way to the folder, not when a file answers
        # (experiments/autoexplore_rl/README.md, "A longer reflector SFT").
        "sft_by_role": {"reflector": {"max_steps": 100, "lr_scheduler": "cosine"}},
        # Groups whose episodes all got one return carry no gradient and are left out
        # (experiments/autoexplore_rl/README.md, run 1).
        "rl": {**TAXI_CPU_LESSONS["rl"], "levels": ("depth1", "depth2"), "curriculum_schedule": (2,), "skip_zero_advantage": True},
        "eval": {"episodes": None, "levels": ("depth1", "depth2"), "batch_size": 64, "prompted_episodes": None},
    },
    "gpu": {
        "level": "depth2", "horizon": 15,
        "rl": {"levels": ("depth0", "depth1", "depth2"), "curriculum_schedule": (30, 80)},
        "eval": {"episodes": None, "levels": ("depth1", "depth2")},
    },
}
"""Changes to each preset for autoexplore: preset name -> changes, nested like `PRESET_CHANGES`
(`reflectrl.pipeline.presets.ENV_OVERRIDES["autoexplore"]`)."""
