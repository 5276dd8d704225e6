"""The ALFWorld environment's changes to each pipeline preset (its cpu preset starts from `TAXI_CPU_LESSONS`).

Why each setting: experiments/README.md#alfworld. A cpu run takes about 3 h 15 min on a 2-core CPU, setup and
games included (experiments/alfworld_pipeline/README.md).
"""

from __future__ import annotations

from typing import Any

from reflectrl.pipeline.presets.taxi import TAXI_CPU_LESSONS

CHANGES: dict[str, dict[str, Any]] = {
    # Test split = valid_unseen (room layouts never seen in training); pick and place tasks.
    "tiny": {"level": "easy"},
    # Meant for `reflectrl alfworld make-games --n 260` as ALFWORLD_DATA (the default 20 games hold 3 valid_unseen
    # ones); every valid_unseen game is played once (experiments/alfworld_pipeline/README.md).
    # Compact text and a history of 4 steps: shorter prompts (experiments/alfworld_pipeline/README.md, "Prompt length").
    # An expert that searches as a player could, and the places visited on the status line: a search the student can
    # imitate (experiments/alfworld_rl/README.md, "An expert that searches as a player could").
    # Labels after the actions: the policy then takes its reflection's command (experiments/alfworld_rl/README.md,
    # "The menu layout"). Grounded reflections (the fact, then the command) in 32 tokens: the reflector then reads the
    # observation (experiments/alfworld_rl/README.md, "Facts first").
    "cpu": {
        "level": "full", "horizon": 15, "label_after": True, "reflection_tokens": 32,
        "env_kwargs": {"history_length": 4, "show_visited": True, "oracle_search": "prior"},
        **TAXI_CPU_LESSONS,
        "data": {"episodes": 200, **TAXI_CPU_LESSONS["data"], "teacher": "oracle:grounded"},
        "sft": {**TAXI_CPU_LESSONS["sft"], "max_steps": 160},
        # The reflector 300 steps: fewer got the errand wrong (experiments/alfworld_rl/README.md, "Second run").
        "sft_by_role": {"reflector": {"max_steps": 300, "lr_scheduler": "cosine"}},
        # RL on easy games first and groups of one return left out: run 1's first iteration won no episode and spent
        # most of its time on a zero gradient (experiments/alfworld_rl/README.md, run 1).
        "rl": {**TAXI_CPU_LESSONS["rl"], "levels": ("easy", "full"), "curriculum_schedule": (2,), "skip_zero_advantage": True},
        "eval": {"episodes": None, "prompted_episodes": 10},
    },
    "gpu": {"level": "full", "horizon": 30, "rl": {"levels": ("easy", "medium", "full"), "curriculum_schedule": (30, 80)}, "eval": {"episodes": 100}},
}
"""Changes to each preset for alfworld: preset name -> changes, nested like `PRESET_CHANGES`
(`reflectrl.pipeline.presets.ENV_OVERRIDES["alfworld"]`)."""
