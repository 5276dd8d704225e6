"""Online RL for the policy: rollouts with the frozen reflector, then pg / ppo / grpo updates.

One iteration:

1. **collect** `episodes_per_iter` episodes at the curriculum's level with the
   current policy (labels sampled at temperature 1); GRPO plays `group_size`
   episodes from each start seed;
2. **advantages** per algorithm (`returns.py`), from the rewards and the
   values recorded at sampling time;
3. **update** the policy's LoRA weights (and value head) with the
   algorithm's loss (`losses.py`), plus the entropy bonus, the optional KL
   penalty to the starting policy and the replayed successful episodes
   (`replay.py`), over `epochs` x minibatches. The steps are split once
   into micro-batches (one forward pass each) that stay together for the
   whole update; a minibatch is a run of whole micro-batches whose
   gradients are accumulated, and ppo/grpo first recompute the ratio
   denominators with these same micro-batches (`_refresh_old_log_probs`);
4. **bookkeeping**: successful episodes enter the replay buffer, validation
   runs every `eval_every` iterations, the curriculum may advance (clearing
   the buffer), metrics are written, a checkpoint is saved every
   `checkpoint_every` iterations.

Reproducibility and exact resume: every random choice of iteration `i`
(training seeds, label shuffling, action sampling, replay sampling,
minibatch order, torch's global RNG) is drawn from generators seeded by
(`seed`, `i`, purpose), never from a stream that runs across iterations. A
checkpoint after iteration `i` therefore only needs the weights, the
optimizer, the replay buffer, the curriculum and the metrics offset, and a
resumed run repeats the straight run bit for bit on the same machine.

Seeds follow the project's splits (`reflectrl.datagen.config.SPLIT_SEED_OFFSETS`):
training episodes draw seeds from the train range [0, validation offset),
validation uses `validation offset + k`, and the test range (from the test
offset on) is never touched by training, so it stays held out for evaluation.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflectrl.datagen.config import SPLIT_SEED_OFFSETS
from reflectrl.protocol import save_label_order
from reflectrl.rollout.engine import RolloutEngine
from reflectrl.rollout.episode import Batch, Episode, EpisodeRequest
from reflectrl.trainers import losses
from reflectrl.trainers.checkpoint import (
    capture_rng_state,
    checkpoint_iteration,
    latest_checkpoint,
    read_json,
    restore_rng_state,
    save_checkpoint,
    write_json,
)
from reflectrl.trainers.curriculum import Curriculum
from reflectrl.trainers.replay import ReplayBuffer
from reflectrl.trainers.returns import (
    gae,
    group_advantages,
    reward_to_go,
    scale_by_std,
    step_group_advantages,
    whiten,
)

ALGORITHMS = ("pg", "ppo", "grpo")
PG_BASELINES = ("none", "mean", "critic")
ADVANTAGE_ESTIMATORS = ("gae", "mc")
TRAIN_SEED_END = SPLIT_SEED_OFFSETS["validation"]
"""Training seeds are drawn from [0, TRAIN_SEED_END): the train split."""
VALIDATION_SEED_START = SPLIT_SEED_OFFSETS["validation"]
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "rl_config.json"
TIME_PREFIX = "time/"
"""Metrics under this prefix are wall-clock measurements: they are the only ones that differ between identical runs."""

_PURPOSES = {"init": 0, "train-seeds": 1, "labels": 2, "sample": 3, "replay": 4, "minibatches": 5, "update": 6, "eval": 7}


@dataclass
class RLConfig:
    """Settings of an online RL run (defaults follow the paper where it gives one)."""

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
            (min(self.value_coef, self.entropy_coef, self.kl_coef, self.replay_weight) >= 0, "loss weights must be >= 0"),
            (self.replay_size >= 0 and self.replay_episodes >= 0, "replay sizes must be >= 0"),
            (min(self.eval_every, self.eval_episodes, self.checkpoint_every, self.keep_checkpoints) >= 0, "eval/checkpoint settings must be >= 0"),
            (self.eval_every == 0 or self.eval_episodes >= 1, "evaluation needs eval_episodes >= 1"),
            (self.curriculum_threshold is None or self.eval_every > 0, "a curriculum threshold needs evaluations (eval_every > 0)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def uses_critic(self) -> bool:
        """Whether the policy needs a value head."""
        return self.algo == "ppo" or (self.algo == "pg" and self.pg_baseline == "critic")

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


def derive_seed(seed: int, iteration: int, purpose: str) -> int:
    """A 63-bit seed for one purpose of one iteration (independent streams via NumPy's SeedSequence)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(iteration), _PURPOSES[purpose]]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


@dataclass
class _Item:
    """One step prepared for the update."""

    prompt_ids: list[int]
    label_ids: list[int]
    action: int
    old_log_prob: float
    old_value: float
    advantage: float
    target: float
    replay: bool


@dataclass
class _Sums:
    """Running weighted sums of update statistics."""

    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float, weight: float) -> None:
        if weight > 0:
            self.totals[name] = self.totals.get(name, 0.0) + float(value) * weight
            self.counts[name] = self.counts.get(name, 0.0) + weight

    def means(self) -> dict[str, float]:
        return {name: self.totals[name] / self.counts[name] for name in self.totals}


class OnlineTrainer:
    """Runs online RL on a `LabelPolicy` through a `RolloutEngine` (see the module docstring)."""

    def __init__(
        self,
        config: RLConfig,
        policy,
        engine: RolloutEngine,
        *,
        levels: Sequence[str],
        run_dir: str | Path | None = None,
        reference=None,
        eval_engine: RolloutEngine | None = None,
        log: Callable[[dict[str, Any]], None] | None = None,
    ):
        """
        Args:
            config: the run's settings.
            policy: the `LabelPolicy` being trained (with a value head when `config.uses_critic`).
            engine: plays episodes with an agent built on `policy`.
            levels: the curriculum's levels (see `resolve_levels`).
            run_dir: folder for metrics, tensorboard logs and checkpoints (None: keep nothing on disk).
            reference: a frozen `LabelPolicy` for the KL penalty (needed when `config.kl_coef > 0`).
            eval_engine: plays the validation episodes (default: `engine`), e.g. on another task split.
            log: called with each iteration's metrics (e.g. to update a progress bar).
        """
        # Saved next to the policy so evaluation presents menus the way it was trained.
        self._shuffle_labels = getattr(getattr(engine, "agent", None), "shuffle_labels", None)
        if config.uses_critic and getattr(policy, "value_head", None) is None:
            raise ValueError(f"algo {config.algo!r} with this baseline needs a policy with a value head")
        if config.kl_coef > 0 and reference is None:
            raise ValueError("kl_coef > 0 needs a reference policy")
        self.config = config
        self.policy = policy
        self.engine = engine
        self.eval_engine = eval_engine if eval_engine is not None else engine
        self.reference = reference
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log = log
        self.curriculum = Curriculum(levels, config.curriculum_schedule, config.curriculum_threshold)
        self.replay = ReplayBuffer(config.replay_size)
        self.params = policy.trainable_parameters()
        if not self.params:
            raise ValueError("the policy has no trainable parameters (add a LoRA adapter)")
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr)
        self.iteration = 0
        """Iterations completed."""
        self.episodes_seen = 0
        self.history: list[dict[str, Any]] = []
        """Metrics of every iteration of this process (also in metrics.jsonl)."""
        self._writer = None
        self._last_saved = -1

    # ---------------------------------------------------------------- running
    def train(self, until: int | None = None) -> list[dict[str, Any]]:
        """Run iterations until `until` (default `config.iterations`) are complete; returns their metrics.

        A trainer at iteration 0 starts afresh and clears the run folder's
        metrics; call `resume()` first to continue a run.
        """
        until = self.config.iterations if until is None else int(until)
        records = []
        if self.iteration == 0 and self.run_dir is not None:
            self._clear_logs()
        try:
            if self.iteration == 0 and self.config.eval_every and until > 0:
                start = self.evaluate()
                start.update({"iteration": 0, "level": self.curriculum.level})
                self._emit(start)
                records.append(start)
            while self.iteration < until:
                records.append(self.step())
            if self.run_dir is not None and self.iteration > 0 and self._last_saved != self.iteration:
                self.save()
        finally:
            self.close_writer()
        return records

    def step(self) -> dict[str, Any]:
        """One iteration: collect, update, bookkeeping; returns its metrics."""
        cfg = self.config
        it = self.iteration
        level = self.curriculum.level
        started = time.perf_counter()
        batch = self.collect(it, level)
        replayed = self.replay.sample(cfg.replay_episodes, np.random.default_rng(derive_seed(cfg.seed, it, "replay")))

        update_start = time.perf_counter()
        torch.manual_seed(derive_seed(cfg.seed, it, "update"))
        stats = self.update(batch, replayed, it)
        update_seconds = time.perf_counter() - update_start

        self.replay.add(batch.episodes)
        self.iteration += 1
        self.episodes_seen += len(batch.episodes)
        record: dict[str, Any] = {
            "iteration": self.iteration,
            "level": level,
            "episodes": self.episodes_seen,
            "train/success": batch.success_rate,
            f"train/success/{level}": batch.success_rate,
            "train/return": batch.mean_return,
            "train/length": batch.mean_length,
            "train/invalid_actions": float(np.mean([s.invalid for e in batch.episodes for s in e.steps])),
            "replay/size": len(self.replay),
            "replay/episodes_used": len(replayed),
        }
        record.update(stats)
        evaluated = None
        if cfg.eval_every and (self.iteration % cfg.eval_every == 0 or self.iteration == cfg.iterations):
            eval_start = time.perf_counter()
            record.update(self.evaluate(level))
            evaluated = record["val/success"]
            record[f"{TIME_PREFIX}evaluation"] = time.perf_counter() - eval_start
        if self.curriculum.advance(self.iteration, evaluated):
            self.replay.clear()
            record["curriculum/switched_to"] = self.curriculum.level
        record["curriculum/level_index"] = self.curriculum.index
        elapsed = time.perf_counter() - started
        record.update({f"{TIME_PREFIX}{k}": v for k, v in batch.timings.items()})
        record[f"{TIME_PREFIX}update"] = update_seconds
        record[f"{TIME_PREFIX}iteration"] = elapsed
        record[f"{TIME_PREFIX}episodes_per_second"] = len(batch.episodes) / max(elapsed, 1e-9)
        self._emit(record)
        if self.run_dir is not None and cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
            self.save()
        return record

    def requests(self, iteration: int, level: str) -> list[EpisodeRequest]:
        """The episodes of one training iteration: fresh seeds, in groups for grpo."""
        cfg = self.config
        size = cfg.group_size if cfg.algo == "grpo" else 1
        rng = np.random.default_rng(derive_seed(cfg.seed, iteration, "train-seeds"))
        seeds = rng.integers(0, TRAIN_SEED_END, size=cfg.episodes_per_iter // size)
        return [EpisodeRequest(int(s), level, group) for group, s in enumerate(seeds) for _ in range(size)]

    def collect(self, iteration: int, level: str) -> Batch:
        """Play one iteration's episodes with the current policy (sampling, no gradients)."""
        cfg = self.config
        generator = torch.Generator(device="cpu").manual_seed(derive_seed(cfg.seed, iteration, "sample"))
        with torch.no_grad():
            return self.engine.collect(
                self.requests(iteration, level),
                generator=generator,
                label_seed=derive_seed(cfg.seed, iteration, "labels"),
            )

    def evaluate(self, level: str | None = None, episodes: int | None = None, seed_start: int = VALIDATION_SEED_START) -> dict[str, Any]:
        """Greedy play on seeds `seed_start + k` (default: the validation split); returns val/success, val/return, val/length.

        For a held-out test, pass `seed_start=SPLIT_SEED_OFFSETS["test"]`.
        """
        level = level if level is not None else self.curriculum.level
        count = episodes if episodes is not None else self.config.eval_episodes
        requests = [EpisodeRequest(seed_start + k, level, k) for k in range(count)]
        with torch.no_grad():
            batch = self.eval_engine.collect(requests, greedy=True, label_seed=derive_seed(self.config.seed, 0, "eval"))
        return {
            "val/success": batch.success_rate,
            "val/return": batch.mean_return,
            "val/length": batch.mean_length,
            f"val/success/{level}": batch.success_rate,
        }

    # ---------------------------------------------------------------- update
    def advantages(self, episodes: Sequence[Episode]) -> tuple[list[float], list[float]]:
        """Per-step (advantage, value target) of on-policy episodes, flattened in episode order."""
        cfg = self.config
        rewards = [torch.tensor([s.reward for s in e.steps], dtype=torch.float32) for e in episodes]
        values = [torch.tensor([s.value or 0.0 for s in e.steps], dtype=torch.float32) for e in episodes]
        to_go = [reward_to_go(r, cfg.gamma) for r in rewards]
        if cfg.algo == "grpo":
            groups = torch.tensor([e.group for e in episodes])
            totals = torch.stack([g[0] if len(g) else torch.tensor(0.0) for g in to_go])
            per_episode = group_advantages(totals, groups, cfg.grpo_std_norm)
            adv = torch.cat([per_episode[i].expand(len(r)) for i, r in enumerate(rewards)])
            if cfg.step_groups:
                step_groups = torch.cat([torch.full((len(r),), e.group) for e, r in zip(episodes, rewards)])
                keys = [s.state_key for e in episodes for s in e.steps]
                adv = adv + cfg.step_group_weight * step_group_advantages(torch.cat(to_go), step_groups, keys, cfg.grpo_std_norm)
            return adv.tolist(), torch.cat(to_go).tolist()
        if cfg.algo == "ppo" and cfg.advantage_estimator == "gae":
            pairs = [gae(r, v, cfg.gamma, cfg.gae_lambda) for r, v in zip(rewards, values)]
            adv = torch.cat([a for a, _ in pairs])
            targets = torch.cat([t for _, t in pairs])
        else:
            targets = torch.cat(to_go)
            if cfg.uses_critic:
                adv = targets - torch.cat(values)
            elif cfg.pg_baseline == "mean":
                adv = targets - targets.mean()
            else:
                adv = targets.clone()
        if cfg.normalize_advantages:
            adv = whiten(adv) if cfg.algo == "ppo" else scale_by_std(adv)
        return adv.tolist(), targets.tolist()

    def update(self, batch: Batch, replayed: Sequence[Episode], iteration: int) -> dict[str, float]:
        """Optimise the policy on one batch (plus replayed episodes); returns loss statistics."""
        cfg = self.config
        advantages, targets = self.advantages(batch.episodes)
        items = [
            _Item(s.prompt_ids, s.label_ids, s.action, s.log_prob, s.value or 0.0, a, t, False)
            for s, a, t in zip((s for e in batch.episodes for s in e.steps), advantages, targets)
        ]
        if cfg.replay_weight > 0:
            items += [_Item(s.prompt_ids, s.label_ids, s.action, s.log_prob, 0.0, 0.0, 0.0, True) for e in replayed for s in e.steps]
        # A step without a label choice (an agent that answered nothing valid) has no log-prob to train;
        # its reward still counted in the returns above.
        items = [i for i in items if i.action >= 0 and i.prompt_ids and math.isfinite(i.old_log_prob)]
        skipped = 0
        if cfg.skip_zero_advantage:
            # DAPO's filter without its resampling: when every episode of a group earned the same
            # return, its steps carry no policy-gradient signal, only the entropy bonus (and KL),
            # yet each costs a forward and backward pass. On a task the policy never solves yet
            # (ALFWorld after a short SFT) that is the whole update.
            kept = [i for i in items if i.replay or i.advantage != 0.0]
            skipped, items = len(items) - len(kept), kept
        counts = {"update/skipped_steps": float(skipped)} if cfg.skip_zero_advantage else {}
        if not items:
            return {"update/steps": 0.0, "update/replay_steps": 0.0, **counts}
        epochs = 1 if cfg.algo == "pg" else cfg.epochs
        rng = np.random.default_rng(derive_seed(cfg.seed, iteration, "minibatches"))
        # Micro-batches keep their rows for the whole update: under bfloat16 a row's log-prob
        # depends on the rows it is batched with (up to 0.4 nats for SmolLM2 on DangerousTaxi),
        # so ratios are only exact between passes over the same micro-batch.
        order = rng.permutation(len(items)) if epochs > 1 or 0 < cfg.minibatch_size < len(items) else np.arange(len(items))
        micro = [[items[int(i)] for i in order[s : s + cfg.micro_batch_size]] for s in range(0, len(items), cfg.micro_batch_size)]
        if cfg.algo != "pg":
            self._refresh_old_log_probs(micro)
        per_step = max(1, cfg.minibatch_size // cfg.micro_batch_size) if cfg.minibatch_size else len(micro)
        sums = _Sums()
        for epoch in range(epochs):
            sequence = rng.permutation(len(micro)) if epoch > 0 else np.arange(len(micro))
            for start in range(0, len(micro), per_step):
                self._optimise([micro[int(i)] for i in sequence[start : start + per_step]], sums)
        stats = {f"loss/{k}": v for k, v in sums.means().items()}
        stats["update/steps"] = float(sum(not i.replay for i in items))
        stats["update/replay_steps"] = float(sum(i.replay for i in items))
        return {**stats, **counts}

    def _refresh_old_log_probs(self, micro_batches: list[list[_Item]]) -> None:
        """Ratio denominators from the update's own forward pass, before any step.

        The rollout sampled with the same weights, but in other batches (and
        possibly with other kernels), so its log-probs can differ from the
        update's by rounding; the ratio must start at exactly 1. Replayed steps
        keep the log-probs of the policy that played them (see `replay_loss`).
        """
        with torch.no_grad():
            for micro in micro_batches:
                out = self.policy.forward_ids([i.prompt_ids for i in micro], [i.label_ids for i in micro])
                picked = out.log_probs.gather(1, torch.tensor([[i.action] for i in micro], device=out.log_probs.device))
                for item, value in zip(micro, picked.squeeze(1).tolist()):
                    if not item.replay:
                        item.old_log_prob = value

    def _optimise(self, micro_batches: list[list[_Item]], sums: _Sums) -> None:
        cfg = self.config
        n_on = sum(not i.replay for micro in micro_batches for i in micro)
        n_replay = sum(len(micro) for micro in micro_batches) - n_on
        self.optimizer.zero_grad(set_to_none=True)
        for micro in micro_batches:
            out = self.policy.forward_ids([i.prompt_ids for i in micro], [i.label_ids for i in micro])
            actions = torch.tensor([i.action for i in micro], device=out.log_probs.device)
            chosen = out.log_probs.gather(1, actions[:, None]).squeeze(1)
            old = torch.tensor([i.old_log_prob for i in micro], device=chosen.device)
            on = torch.tensor([not i.replay for i in micro], device=chosen.device)
            total = chosen.new_zeros(())
            if on.any():
                share = int(on.sum()) / n_on
                loss, parts = self._policy_loss(micro, out, chosen, old, on)
                total = total + share * loss
                for name, value in parts.items():
                    sums.add(name, value, int(on.sum()))
            if (~on).any():
                share = int((~on).sum()) / n_replay
                replay = losses.replay_loss(chosen[~on], old[~on])
                total = total + share * cfg.replay_weight * replay
                sums.add("replay", replay.item(), int((~on).sum()))
            total.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        sums.add("grad_norm", float(norm), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _policy_loss(self, micro, out, chosen, old, on) -> tuple[torch.Tensor, dict[str, float]]:
        """The on-policy part of the loss for the steps selected by `on`."""
        cfg = self.config
        device = chosen.device
        adv = torch.tensor([i.advantage for i in micro], device=device)[on]
        lp, old_lp = chosen[on], old[on]
        kl = None
        if cfg.kl_coef > 0:
            with torch.no_grad():
                ref = self.reference.forward_ids([i.prompt_ids for i in micro], [i.label_ids for i in micro])
            kl = losses.label_kl(out.log_probs[on], ref.log_probs[on], out.mask[on])
        if cfg.algo == "pg":
            policy_loss = losses.policy_gradient_loss(lp, adv)
        elif cfg.algo == "ppo":
            policy_loss = losses.ppo_clip_loss(lp, old_lp, adv, cfg.ppo_clip)
        else:
            policy_loss = losses.grpo_loss(lp, old_lp, adv, cfg.ppo_clip, kl, cfg.kl_coef)
        entropy = losses.entropy_bonus(out.entropy[on])
        loss = policy_loss - cfg.entropy_coef * entropy
        parts = {"policy": policy_loss.item(), "entropy": entropy.item()}
        if kl is not None:
            if cfg.algo != "grpo":  # grpo's loss already holds its KL term
                loss = loss + cfg.kl_coef * kl.mean()
            parts["kl_to_reference"] = kl.mean().item()
        if cfg.uses_critic:
            targets = torch.tensor([i.target for i in micro], device=device)[on]
            old_values = torch.tensor([i.old_value for i in micro], device=device)[on]
            critic = losses.value_loss(out.values[on], targets, old_values, cfg.value_clip)
            loss = loss + cfg.value_coef * critic
            parts["value"] = critic.item()
        if cfg.algo != "pg":
            parts["clip_fraction"] = losses.clip_fraction(lp, old_lp, cfg.ppo_clip).item()
            parts["approx_kl"] = losses.approx_kl(lp, old_lp).item()
        parts["total"] = loss.item()
        return loss, parts

    # ----------------------------------------------------------- persistence
    def save(self) -> Path:
        """Write a checkpoint of the current state into the run folder (atomically)."""
        if self.run_dir is None:
            raise ValueError("this trainer has no run folder to save into")
        metrics_offset = self._metrics_path().stat().st_size if self._metrics_path().exists() else 0

        def write(folder: Path) -> None:
            self._save_policy(folder / "policy")
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            write_json(folder / "replay.json", self.replay.state_dict())
            write_json(folder / "rng.json", capture_rng_state())
            write_json(
                folder / "trainer.json",
                {
                    "iteration": self.iteration,
                    "episodes_seen": self.episodes_seen,
                    "metrics_offset": metrics_offset,
                    "curriculum": self.curriculum.state_dict(),
                    "config": self.config.to_dict(),
                },
            )

        path = save_checkpoint(self.run_dir, self.iteration, write, keep=self.config.keep_checkpoints)
        self._last_saved = self.iteration
        return path

    def resume(self, checkpoint: str | Path | None = None) -> int:
        """Load the latest complete checkpoint of the run (or `checkpoint`); returns its iteration (0 if none)."""
        if checkpoint is None:
            if self.run_dir is None:
                raise ValueError("no run folder to resume from")
            checkpoint = latest_checkpoint(self.run_dir)
            if checkpoint is None:
                return 0
        folder = Path(checkpoint)
        state = read_json(folder / "trainer.json")
        saved = RLConfig.from_dict(state["config"])
        mismatched = [
            f.name for f in fields(RLConfig)
            if f.name not in ("iterations", "eval_every", "checkpoint_every", "keep_checkpoints")
            and getattr(saved, f.name) != getattr(self.config, f.name)
        ]
        if mismatched:
            raise ValueError(f"the checkpoint was made with different settings: {', '.join(mismatched)}")
        load_policy_weights(self.policy, folder / "policy")
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        self.replay.load_state_dict(read_json(folder / "replay.json"))
        self.curriculum.load_state_dict(state["curriculum"])
        restore_rng_state(read_json(folder / "rng.json"))
        self.iteration = int(state["iteration"])
        self.episodes_seen = int(state["episodes_seen"])
        self._last_saved = checkpoint_iteration(folder)
        if self.run_dir is not None and self._metrics_path().exists():
            # Lines written after this checkpoint belong to iterations that will run again.
            with open(self._metrics_path(), "r+b") as handle:
                handle.truncate(int(state["metrics_offset"]))
        return self.iteration

    def save_final(self, folder: str | Path) -> None:
        """Save the trained policy (PEFT adapter folder, plus value head if any) for evaluation or more training."""
        self._save_policy(folder)

    def _save_policy(self, folder: str | Path) -> None:
        self.policy.save(folder)
        if self._shuffle_labels is not None:
            save_label_order(folder, self._shuffle_labels)

    # --------------------------------------------------------------- logging
    def _metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE  # type: ignore[operator]

    def _emit(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self._metrics_path(), "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
            writer = self._tensorboard()
            if writer is not None:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                        writer.add_scalar(key, value, record["iteration"])
                writer.flush()
        if self.log is not None:
            self.log(record)

    def _tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at runtime; JSONL metrics are always written
                return None
            # purge_step hides events of the iterations after a resumed checkpoint, which run again.
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.iteration + 1 if self.iteration else None)
        return self._writer

    def _clear_logs(self) -> None:
        """A fresh start: drop metrics of an earlier attempt that died before its first checkpoint."""
        self.close_writer()
        self._metrics_path().unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "tensorboard", ignore_errors=True)  # type: ignore[operator]

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def load_policy_weights(policy, folder: str | Path) -> None:
    """Load adapter (and value-head) weights written by `LabelPolicy.save` into `policy`'s adapter in place."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no adapter weights in {folder}")
    state = load_file(str(weights), device=str(policy.device))
    result = set_peft_model_state_dict(policy.model, state, adapter_name=policy.adapter)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise ValueError(f"adapter weights in {folder} do not fit the policy: {unexpected[:3]}")
    if policy.value_head is not None:
        policy.load_value_head(folder)


def resolve_levels(env_levels: Sequence[str], config: RLConfig) -> tuple[str, ...]:
    """The levels a run trains on: `config.levels`, else all levels with a curriculum, else the hardest."""
    if config.levels:
        unknown = [lvl for lvl in config.levels if lvl not in env_levels]
        if unknown:
            raise ValueError(f"unknown level(s) {', '.join(unknown)}; {config.env} has {', '.join(env_levels)}")
        return tuple(config.levels)
    return tuple(env_levels) if config.uses_curriculum else (env_levels[-1],)
