"""`RLConfig`: the settings of an online RL run (`reflectrl.trainers.online.OnlineTrainer`).

Kept beside the trainer rather than in it, as TRL keeps a `*Config` beside each
trainer: the CLI, the pipeline presets and the benchmark build and override
it (`dataclasses.replace`) without loading torch, and the trainer and the
algorithms (`reflectrl.trainers.algorithms`) only read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

ALGORITHMS = ("pg", "ppo", "grpo")
PG_BASELINES = ("none", "mean", "critic")
ADVANTAGE_ESTIMATORS = ("gae", "mc")

TRAINED_REFLECTOR = "reflector"
"""Sub-folder of a saved policy (final or in a checkpoint) holding the reflector a `train_reflector` run trained:
a PEFT adapter folder, for `reflectrl eval --reflector`."""

_PURPOSES = {"init": 0, "train-seeds": 1, "labels": 2, "sample": 3, "replay": 4, "minibatches": 5, "update": 6, "eval": 7, "reflect": 8, "reflector": 9}


def derive_seed(seed: int, iteration: int, purpose: str) -> int:
    """A 63-bit seed for one purpose of one iteration (independent streams via NumPy's SeedSequence)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(iteration), _PURPOSES[purpose]]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


@dataclass
class RLConfig:
    """Settings of an online RL run (defaults follow the paper where it gives one)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = (
        "iterations", "eval_every", "checkpoint_every", "keep_checkpoints", "max_minutes",
        "ray", "ray_address", "env_workers", "env_worker_cpus", "env_worker_restarts", "env_call_timeout",
    )
    """Settings a resumed run may change (see `reflectrl.run_settings`): how long it runs, what it records
    and where its environments step (the Ray engine plays the same episodes as the local one)."""

    env: str = "corridor"
    """Environment short name (see `reflectrl envs`)."""
    levels: tuple[str, ...] = ()
    """Levels to train on, easiest first; empty: all levels with a curriculum, else the hardest."""
    horizon: int | None = None
    """Episode step limit; None keeps the environment's default."""
    algo: str = "pg"
    """'pg' (REINFORCE), 'ppo' (clipped, value-head critic) or 'grpo' (group baselines)."""
    iterations: int = 100
    """Number of collect-and-update iterations."""
    episodes_per_iter: int = 16
    """Episodes collected per iteration (for grpo: groups x group_size)."""
    group_size: int = 4
    """grpo: episodes played from each start seed (one group); ignored by pg and ppo."""
    seed: int = 0
    """Seed of every random choice (see the module docstring)."""
    lr: float = 2e-4
    """Adam learning rate (the paper's)."""
    grad_clip: float = 0.3
    """Maximum global gradient norm (the paper's)."""
    gamma: float = 1.0
    """Discount factor of returns."""
    pg_baseline: str = "mean"
    """pg: 'none', 'mean' (batch mean of the returns-to-go) or 'critic' (value head)."""
    advantage_estimator: str = "gae"
    """ppo: 'gae' or 'mc' (return-to-go minus value)."""
    gae_lambda: float = 0.95
    """ppo with gae: the lambda of GAE."""
    normalize_advantages: bool = True
    """pg: divide advantages by their batch std (keeps the baseline); ppo: also centre them."""
    ppo_clip: float = 0.1
    """ppo and grpo: ratio clip epsilon (the paper's 0.1)."""
    epochs: int = 3
    """ppo and grpo: passes over each batch (the paper's 3); pg always makes one."""
    minibatch_size: int = 0
    """Steps per optimizer step (rounded down to whole micro-batches, at least one); 0 puts the whole batch in one step."""
    micro_batch_size: int = 8
    """Steps per forward pass (gradients are accumulated over a minibatch)."""
    value_coef: float = 0.5
    """Weight of the critic's regression loss (ppo, pg with critic)."""
    value_clip: float | None = None
    """PPO-style value clipping range; None disables it."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the starting (SFT) policy; 0 disables it."""
    max_kl: float | None = None
    """Trust region: after each optimizer step the policy's exact KL from its distribution before the step is
    measured on that step's rows (one extra forward pass); a step past this many nats is undone, weights and
    optimizer state, and the iteration's update ends there. None: no check. Adam divides a step by the gradient's
    own size, so on a near-deterministic policy a tiny gradient still moves it fully (see `PolicyUpdate`)."""
    grpo_std_norm: bool = True
    """grpo: divide by the group's standard deviation."""
    step_groups: bool = False
    """grpo: add GiGPO-style advantages over identical states within a group."""
    step_group_weight: float = 1.0
    """grpo with step_groups: weight of the step-level advantage."""
    skip_zero_advantage: bool = False
    """grpo: leave out on-policy steps whose advantage is exactly 0 (their whole group had one return)."""
    replay_size: int = 16
    """Capacity of the buffer of successful episodes; 0 disables replay."""
    replay_episodes: int = 2
    """Replayed episodes mixed into each update."""
    replay_weight: float = 0.5
    """Weight of the self-imitation loss on replayed steps (see replay.py)."""
    curriculum_schedule: tuple[int, ...] = ()
    """Iterations after which to move to the next level (the paper's schedule)."""
    curriculum_threshold: float | None = None
    """Move to the next level when validation success reaches this."""
    eval_every: int = 10
    """Evaluate on the validation seeds every this many iterations (and at the start and end); 0: never."""
    eval_episodes: int = 20
    """Validation episodes per evaluation (seeds VALIDATION_SEED_START + k, greedy)."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many iterations (and at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (0: all)."""
    reflection_cache: bool = True
    """Answer repeated reflector prompts from a cache (a greedy reflector always gives a prompt the same
    reflection); its entries are saved with each checkpoint. Unused with sampled reflections."""
    reflection_temperature: float = 0.0
    """Sample the frozen reflector's reflections at this temperature while training (the paper: 1), seeded
    per iteration; 0: greedy. Evaluation always reflects greedily."""
    train_reflector: bool = False
    """Reflect-RL: also train the reflector's LoRA adapter from the returns, by policy gradient on the tokens of its
    sampled reflections with the run's advantages (`trainers.reflector_update`); needs reflection_temperature > 0 and
    a reflector adapter (a run without a reflector ignores it). The trained reflector is saved with every checkpoint and
    beside the final policy."""
    reflector_lr: float = 2e-5
    """train_reflector: Adam learning rate of the reflector's adapter."""
    reflector_kl_coef: float = 0.04
    """train_reflector: weight of the KL penalty (GRPO's k3 estimator, per token) to the reflector the run started
    from; 0 loads no reference."""
    max_minutes: float | None = None
    """Stop after the iteration that passes this many minutes of training in this process (at least one
    iteration runs; a checkpoint follows); a safety net for a time budget. None: no limit."""
    ray: bool = False
    """Step the environments in Ray actors (needs reflectrl[ray]); the episodes are the same as without."""
    ray_address: str | None = None
    """Join the Ray cluster at this address (implies ray); None with ray: start a Ray on this machine."""
    env_workers: int = 4
    """Ray: environment actors (each hosts a share of the running episodes)."""
    env_worker_cpus: float = 1.0
    """Ray: CPUs each environment actor reserves (fractions let several share a core)."""
    env_worker_restarts: int = 3
    """Ray: lost environment actors replaced (their episodes re-run from their seeds) before the run fails."""
    env_call_timeout: float = 300.0
    """Ray: seconds to wait for an environment actor's answer before it counts as lost."""

    def __post_init__(self) -> None:
        self.levels = tuple(self.levels)
        self.curriculum_schedule = tuple(int(s) for s in self.curriculum_schedule)
        checks = [
            (self.algo in ALGORITHMS, f"algo must be one of {', '.join(ALGORITHMS)}, got {self.algo!r}"),
            (self.pg_baseline in PG_BASELINES, f"pg_baseline must be one of {', '.join(PG_BASELINES)}"),
            (self.advantage_estimator in ADVANTAGE_ESTIMATORS, f"advantage_estimator must be one of {', '.join(ADVANTAGE_ESTIMATORS)}"),
            (self.iterations >= 0, "iterations must be >= 0"),
            (self.episodes_per_iter >= 1, "episodes_per_iter must be >= 1"),
            (self.group_size >= 1, "group_size must be >= 1"),
            (self.algo != "grpo" or self.episodes_per_iter % self.group_size == 0,
             f"grpo needs episodes_per_iter ({self.episodes_per_iter}) to be a multiple of group_size ({self.group_size})"),
            (self.algo != "grpo" or self.group_size >= 2, "grpo needs group_size >= 2 (a group of one has no baseline)"),
            (self.algo == "grpo" or not self.skip_zero_advantage, "skip_zero_advantage applies to grpo only"),
            (self.lr > 0 and self.grad_clip > 0, "lr and grad_clip must be > 0"),
            (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma and gae_lambda must lie in [0, 1]"),
            (self.ppo_clip > 0 and self.epochs >= 1, "ppo_clip must be > 0 and epochs >= 1"),
            (self.minibatch_size >= 0 and self.micro_batch_size >= 1, "minibatch_size must be >= 0, micro_batch_size >= 1"),
            (self.reflection_temperature >= 0, "reflection_temperature must be >= 0"),
            (not self.train_reflector or self.reflection_temperature > 0,
             "train_reflector needs sampled reflections: set reflection_temperature > 0 (the paper samples at 1)"),
            (self.reflector_lr > 0 and self.reflector_kl_coef >= 0, "reflector_lr must be > 0 and reflector_kl_coef >= 0"),
            (self.max_kl is None or self.max_kl > 0, "max_kl must be > 0 (or None for no check)"),
            (min(self.value_coef, self.entropy_coef, self.kl_coef, self.replay_weight) >= 0, "loss weights must be >= 0"),
            (self.replay_size >= 0 and self.replay_episodes >= 0, "replay sizes must be >= 0"),
            (min(self.eval_every, self.eval_episodes, self.checkpoint_every, self.keep_checkpoints) >= 0, "eval/checkpoint settings must be >= 0"),
            (self.eval_every == 0 or self.eval_episodes >= 1, "evaluation needs eval_episodes >= 1"),
            (self.curriculum_threshold is None or self.eval_every > 0, "a curriculum threshold needs evaluations (eval_every > 0)"),
            (self.max_minutes is None or self.max_minutes > 0, "max_minutes must be > 0 (or None for no limit)"),
            (self.env_workers >= 1 and self.env_worker_cpus > 0, "env_workers must be >= 1 and env_worker_cpus > 0"),
            (self.env_worker_restarts >= 0 and self.env_call_timeout > 0, "env_worker_restarts must be >= 0, env_call_timeout > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def uses_critic(self) -> bool:
        """Whether the policy needs a value head."""
        return self.algo == "ppo" or (self.algo == "pg" and self.pg_baseline == "critic")

    @property
    def uses_ray(self) -> bool:
        """Whether the environments step in Ray actors."""
        return self.ray or self.ray_address is not None

    @property
    def uses_curriculum(self) -> bool:
        return bool(self.curriculum_schedule) or self.curriculum_threshold is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["levels"] = list(self.levels)
        data["curriculum_schedule"] = list(self.curriculum_schedule)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown RL settings: {', '.join(unknown)}")
        return cls(**data)
