"""The AutoExplore environment's changes to each pipeline preset (its cpu preset starts from `TAXI_CPU_LESSONS`)."""

from __future__ import annotations

from typing import Any

from reflectrl.pipeline.presets.taxi import TAXI_CPU_LESSONS

CHANGES: dict[str, dict[str, Any]] = {
    # Test split = repositories never used for training; the prompts are long (listings, file heads).
    "tiny": {"level": "depth1", "env_kwargs": {"view_chars": 200}},
    # The taxi cpu lessons (`TAXI_CPU_LESSONS`; concise reflections: next command first, 20-30 tokens).
    # Teacher data on train tasks of every depth (0-3): the same moves (cd towards the question's
    # topic, cat, id) at every depth. RL on depth 1 for two iterations, then depth 2 (the paper's
    # curriculum, shortened); every test task at depth 1 (48) and depth 2 (64) for every row.
    # Decoy reads (half the time, another file of the folder before the answer): with the oracle's reads
    # only, every read on the expert's path was followed by "id" (58% of the rows after a read; the rest
    # were negatives), and the SFT reflective agent answered with the first file it read (wrong id in 96%
    # of its depth-1 held-out episodes; experiments/autoexplore_rl).
    # Policies 200 steps: 120 left the reflective policy following its reflection's command in 61% of steps.
    # Labels after the actions, as on ALFWorld, whose shuffled menus of about 22 entries this label layout
    # took the reflective policy from following its reflection in 34% of held-out rows to 92%.
    "cpu": {
        "level": "all", "horizon": 8, "label_after": True, "env_kwargs": {"view_chars": 300},
        **TAXI_CPU_LESSONS,
        "data": {"episodes": 200, "decoy_prob": 0.5, **TAXI_CPU_LESSONS["data"]},
        "sft": {**TAXI_CPU_LESSONS["sft"], "max_steps": 200},
        # 400 reflector steps named the oracle's first folder in 2/3 of the depth-1 test tasks but still did not
        # tell a file that answers from another after reading it (`id` after either as often; 40 minutes instead
        # of 12): the budget stays at 100 steps.
        "sft_by_role": {"reflector": {"max_steps": 100, "lr_scheduler": "cosine"}},
        # Groups whose episodes all got one return carry no policy-gradient signal: their passes are left out
        # (run 1's training success was 0-17% per iteration, so most groups are such groups).
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
