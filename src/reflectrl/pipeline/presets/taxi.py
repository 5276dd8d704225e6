"""The taxi environment's changes to each pipeline preset, and `TAXI_CPU_LESSONS`: the part of its cpu preset
that the cpu presets of the other environments start from. Why each setting: experiments/README.md#dangeroustaxi.

Time of a cpu run alone on a 2-core CPU: about 91 min, estimated from timed stages
(experiments/taxi_mapped_rl/README.md, "Time").
"""

from __future__ import annotations

from typing import Any

TAXI_CPU_LESSONS: dict[str, Any] = {
    # Concise reflections and 17% misleading rows: the SFT start Reflect-RL improved on
    # (experiments/taxi_rl/README.md, session 7).
    "data": {"teacher": "oracle:concise", "misleading": 0.17},
    # A constant rate for 120 steps: the policies' label loss falls late (experiments/taxi_pipeline/probes/README.md);
    # rows of 4 halve SFT's time, at a cost to the reflective players (experiments/taxi_pipeline/README.md).
    "sft": {"max_steps": 120, "batch_size": 4, "save_steps": 20, "lr_scheduler": "constant_with_warmup"},
    # The reflector's token loss falls early: half the steps, decayed to a clean end
    # (experiments/taxi_pipeline/README.md).
    "sft_by_role": {"reflector": {"max_steps": 60, "lr_scheduler": "cosine"}},
    # gamma 0.9 and step groups: gamma 1 rewards crashing early (experiments/taxi_rl/README.md, session 6);
    # minibatches of 32 steps: a few small Adam steps per iteration (experiments/taxi_pipeline/probes/README.md).
    "rl": {"iterations": 4, "episodes_per_iter": 12, "gamma": 0.9, "step_groups": True, "minibatch_size": 32},
}
"""What made the taxi cpu preset learn (experiments/README.md#dangeroustaxi): the cpu entries of the other environments
start from it (data settings other than teacher and misleading share are per environment)."""

CHANGES: dict[str, dict[str, Any]] = {
    # Drop-off, the paper's reported level; its menu is always the same six actions, so labels stay fixed
    # (experiments/taxi_sft/README.md).
    "tiny": {"level": "dropoff"},
    # Reasoned reflections, no misleading rows, the reflector as many steps as a policy, the described observation:
    # the policy then reads its reflection (experiments/taxi_reflection/README.md, section 2).
    # Menus as "move south (0)": the policy then follows its reflection
    # (experiments/taxi_reflection/README.md, section 3).
    # Every start state once (exact rates), the prompted model 10 episodes (experiments/taxi_pipeline/README.md).
    # No entropy bonus: Adam turns it into full-size steps of a near-deterministic policy, which collapsed it
    # (experiments/taxi_seeds_v2/README.md).
    # Mapped reflections (the reasoned ones plus the rows open across, from which the detour a wall forces
    # follows) and the reflector 360 steps: on seed 0 its SFT agent won 91% of the start states (reasoned at 120
    # steps 68%, at 360 steps 79%; experiments/taxi_focal/README.md, last section).
    "cpu": {
        "level": "dropoff", "shuffle_labels": False, "label_after": True, "reflection_tokens": 64,
        **TAXI_CPU_LESSONS,
        "data": {"episodes": 120, "teacher": "oracle:mapped", "misleading": 0.0},
        "sft_by_role": {"reflector": {"max_steps": 360, "lr_scheduler": "cosine"}},
        # A trust region of 0.25 nats per optimizer step rejects the step that collapsed seed 3
        # (experiments/taxi_dagger/README.md).
        # The mapped reflector frozen and greedy, as in the paper, and no DAgger round: after the round the agent
        # lost 15 and 34 points on seeds 0 and 1, and RL then taught the policy to ignore its reflection; training the
        # 360-step reflector by RL left it where it was (experiments/taxi_mapped_rl/README.md).
        "rl": {**TAXI_CPU_LESSONS["rl"], "entropy_coef": 0.0, "max_kl": 0.25},
        "eval": {"episodes": "all", "batch_size": 100, "prompted_episodes": 10},
    },
    "gpu": {
        "level": "dropoff", "horizon": 20, "shuffle_labels": False, "rl": {"levels": ("pickup", "dropoff"), "curriculum_schedule": (40,)},
        "eval": {"episodes": "all"},
    },
}
"""Changes to each preset for taxi: preset name -> changes, nested like `PRESET_CHANGES`
(`reflectrl.pipeline.presets.ENV_OVERRIDES["taxi"]`)."""
