"""The TextWorld environment's changes to each pipeline preset (its cpu preset starts from `TAXI_CPU_LESSONS`)."""

from __future__ import annotations

from typing import Any

from reflectrl.pipeline.presets.taxi import TAXI_CPU_LESSONS

CHANGES: dict[str, dict[str, Any]] = {
    # Coin collector (the default challenge); two games per split keep the tiny run's generation to seconds.
    "tiny": {"level": "easy", "env_kwargs": {"games": 2}},
    # A first proposal from the other environments' cpu presets, not run end to end yet. Coin collector at the
    # medium level: a chain of 2-5 rooms with a dead end beside each, walkthroughs of 2-5 commands, menus of
    # 4-6 commands; the objective spells out the route, so a player that keeps track of its progress wins.
    # The taxi cpu lessons (`TAXI_CPU_LESSONS`) with the taxi run's reasoned reflections and no misleading
    # rows ("I am in the Kitchen. Last command (go south) was good. The coin is here. Next: take coin."), the
    # reflector as many steps as a policy, labels after the actions (as on the other menus that change from
    # step to step). Teacher data at this level: reflections of 19-33 tokens (mean 27), so 40 reflection
    # tokens hold every one; reflector prompts of 159-258 tokens, policy prompts of 180-282 (40 episodes,
    # SmolLM2's tokenizer). RL on easy games for two iterations, then medium; every test game of both levels.
    # Reference rows at horizon 12 on the 40 test games: oracle 100% at both levels (3.5 steps), random 37.5%
    # at easy, 10% at medium. 40 games per split: the run generates at most 160 games (2-9 s each on a busy
    # 2-core CPU, once per cache) instead of 280 with the default 100 train games.
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
