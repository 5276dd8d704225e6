"""Online RL for the policy: rollouts with the frozen reflector, then pg / ppo / grpo updates.

One iteration:

1. **collect** `episodes_per_iter` episodes at the curriculum's level with the
   current policy (labels sampled at temperature 1); GRPO plays `group_size`
   episodes from each start seed;
2. **advantages** from the rewards and the values recorded at sampling
   time, by the run's algorithm (`algorithms.py`: pg, ppo or grpo, each one
   unit holding its advantages and loss);
3. **update** the policy's LoRA weights (and value head) with the
   algorithm's loss, plus the replayed successful episodes (`replay.py`),
   over the algorithm's epochs x minibatches (`update.py`);
4. **bookkeeping**: successful episodes enter the replay buffer, validation
   runs every `eval_every` iterations, the curriculum may advance (clearing
   the buffer), metrics are written, a checkpoint is saved every
   `checkpoint_every` iterations; with `max_minutes` the run stops (with a
   checkpoint) after the iteration that passes the time limit.

Reproducibility and exact resume: every random choice of iteration `i`
(training seeds, label shuffling, action sampling, replay sampling,
minibatch order, torch's global RNG) is drawn from generators seeded by
(`seed`, `i`, purpose), never from a stream that runs across iterations. A
checkpoint after iteration `i` therefore only needs the weights, the
optimizer, the replay buffer, the curriculum and the metrics offset, and a
resumed run repeats the straight run bit for bit on the same machine.

Under `accelerate launch` (an `accelerator` with several processes) every
process holds the policy and takes part in each update
(`reflectrl.trainers.data_parallel`); the main process alone plays the
episodes, evaluates and writes the run folder, and hands each batch and
each decision that ends the run to the others, so they all run the same
iterations on the same data.

Seeds follow the project's splits (`reflectrl.datagen.config.SPLIT_SEED_OFFSETS`):
training episodes draw seeds from the train range [0, validation offset),
validation uses `validation offset + k`, and the test range (from the test
offset on) is never touched by training, so it stays held out for evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reflectrl.datagen.config import SPLIT_SEED_OFFSETS
from reflectrl.models.adapters import save_adapter
from reflectrl.protocol import save_label_order
from reflectrl.rollout.engine import RolloutEngine
from reflectrl.rollout.episode import Batch, EpisodeRequest
from reflectrl.run_settings import ConfigMismatch, changed_settings
from reflectrl.storage import atomic_folder
from reflectrl.trainers.checkpoint import (
    capture_rng_state,
    checkpoint_iteration,
    latest_checkpoint,
    load_adapter_weights,
    load_policy_weights,
    read_json,
    remove_leftovers,
    restore_rng_state,
    save_checkpoint,
    write_json,
)
from reflectrl.trainers.curriculum import Curriculum, resolve_levels
from reflectrl.trainers.metrics_log import MetricsLog
from reflectrl.trainers.replay import ReplayBuffer
from reflectrl.trainers.rl_config import ADVANTAGE_ESTIMATORS, ALGORITHMS, PG_BASELINES, TRAINED_REFLECTOR, RLConfig, derive_seed
from reflectrl.trainers.trackers import DEFAULT_REPORT_TO, RunTrackers
from reflectrl.trainers.update import PolicyUpdate

if TYPE_CHECKING:
    from reflectrl.players.policy import LabelPolicy
    from reflectrl.players.reflection_cache import CachedReflector
    from reflectrl.trainers.reflector_update import ReflectorUpdate

__all__ = [
    "ADVANTAGE_ESTIMATORS", "ALGORITHMS", "PG_BASELINES", "OnlineTrainer", "RLConfig", "derive_seed", "load_policy_weights",
    "resolve_levels",
]

TRAIN_SEED_END = SPLIT_SEED_OFFSETS["validation"]
"""Training seeds are drawn from [0, TRAIN_SEED_END): the train split."""
VALIDATION_SEED_START = SPLIT_SEED_OFFSETS["validation"]
REFLECTIONS_FILE = "reflections.json"
"""A checkpoint's reflection cache: the reflector's identity and every entry, oldest first."""
REFLECTOR_OPTIMIZER_FILE = "reflector_optimizer.pt"
TIME_PREFIX = "time/"
"""Metrics under this prefix are wall-clock measurements: they are the only ones that differ between identical runs."""

class OnlineTrainer:
    """Runs online RL on a `LabelPolicy` through a `RolloutEngine` (see the module docstring)."""

    def __init__(
        self,
        config: RLConfig,
        policy: LabelPolicy,
        engine: RolloutEngine,
        *,
        levels: Sequence[str],
        run_dir: str | Path | None = None,
        reference: LabelPolicy | None = None,
        eval_engine: RolloutEngine | None = None,
        reflection_cache: CachedReflector | None = None,
        log: Callable[[dict[str, Any]], None] | None = None,
        accelerator: Any = None,
        trackers: RunTrackers | None = None,
        reflector_update: ReflectorUpdate | None = None,
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
            reflection_cache: the cache in front of the agents' reflector, if any: saved with every
                checkpoint and restored on resume, and its hits reported per iteration.
            log: called with each iteration's metrics (e.g. to update a progress bar).
            accelerator: an accelerate `Accelerator` whose processes share the updates (see the module
                docstring); None: this process alone.
            trackers: where the main process reports each iteration's metrics besides metrics.jsonl (their
                folder is `run_dir`); default: TensorBoard under `run_dir`, with `config` as the run's settings.
            reflector_update: trains the reflector after each policy update (`RLConfig.train_reflector`); its adapter
                is saved beside the policy (`TRAINED_REFLECTOR`) and its optimizer with each checkpoint.
        """
        self.config = config
        self.policy = policy
        self.accelerator = accelerator if accelerator is not None and accelerator.num_processes > 1 else None
        self.is_main = self.accelerator is None or self.accelerator.is_main_process
        """Whether this process plays the episodes and writes the run folder (always, without accelerate)."""
        self.updater = PolicyUpdate(config, policy, reference, self.accelerator)
        """The algorithm's optimisation of `policy`: what an iteration does after collecting."""
        if reflector_update is not None and self.accelerator is not None:
            raise ValueError("training the reflector runs in one process; leave accelerate out of such a run")
        self.reflector_update = reflector_update
        self.engine = engine
        self.eval_engine = eval_engine if eval_engine is not None else engine
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.reflection_cache = reflection_cache
        self.log = log
        self.curriculum = Curriculum(levels, config.curriculum_schedule, config.curriculum_threshold)
        self.replay = ReplayBuffer(config.replay_size)
        self.iteration = 0
        """Iterations completed."""
        self.episodes_seen = 0
        self.history: list[dict[str, Any]] = []
        """Metrics of every iteration of this process (also in metrics.jsonl)."""
        self.stopped_by_time_limit = False
        """Whether the last `train` call stopped early at `config.max_minutes`."""
        self.metrics: MetricsLog | None = None
        if self.run_dir is not None and self.is_main:
            if trackers is None:
                trackers = RunTrackers(DEFAULT_REPORT_TO, self.run_dir, self.run_dir.absolute().name, {"config": config.to_dict()})
            self.metrics = MetricsLog(self.run_dir, trackers)
        self._last_saved = -1

    # ---------------------------------------------------------------- running
    def train(self, until: int | None = None) -> list[dict[str, Any]]:
        """Run iterations until `until` (default `config.iterations`) are complete; returns their metrics.

        A trainer at iteration 0 starts afresh and clears the run folder's
        metrics; call `resume()` first to continue a run.
        """
        until = self.config.iterations if until is None else int(until)
        minutes = self.config.max_minutes
        deadline = time.monotonic() + 60 * minutes if minutes is not None else None
        self.stopped_by_time_limit = False
        records = []
        if self.iteration == 0 and self.metrics is not None:
            self.metrics.clear()  # a fresh start: drop the logs of an attempt that died before its first checkpoint
        try:
            if self.iteration == 0 and self.config.eval_every and until > 0:
                start = self.evaluate()
                start.update({"iteration": 0, "level": self.curriculum.level})
                self._emit(start)
                records.append(start)
            while self.iteration < until:
                records.append(self.step())
                if self._from_main(deadline is not None and time.monotonic() > deadline) and self.iteration < until:
                    self.stopped_by_time_limit = True
                    break
            if self.run_dir is not None and self.iteration > 0 and self._last_saved != self.iteration:
                self.save()
        finally:
            if self.metrics is not None:
                self.metrics.close()
        return records

    def step(self) -> dict[str, Any]:
        """One iteration: collect, update, bookkeeping; returns its metrics."""
        cfg = self.config
        it = self.iteration
        level = self.curriculum.level
        started = time.perf_counter()
        cache = self.reflection_cache
        asked = (cache.hits, cache.misses) if cache is not None else (0, 0)
        batch = self.collect(it, level)
        replayed = self.replay.sample(cfg.replay_episodes, np.random.default_rng(derive_seed(cfg.seed, it, "replay")))

        update_start = time.perf_counter()
        torch.manual_seed(derive_seed(cfg.seed, it, "update"))
        stats = self.updater.update(batch, replayed, it)
        update_seconds = time.perf_counter() - update_start
        if self.reflector_update is not None:
            reflector_start = time.perf_counter()
            stats.update(self.reflector_update.update(batch.episodes, it))
            stats[f"{TIME_PREFIX}reflector_update"] = time.perf_counter() - reflector_start

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
        if cache is not None:
            hits, misses = cache.hits - asked[0], cache.misses - asked[1]
            record.update({
                "reflect/cache_hits": hits, "reflect/cache_misses": misses,
                "reflect/cache_hit_rate": hits / max(hits + misses, 1), "reflect/cache_size": len(cache),
            })
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
        """The episodes of one training iteration: fresh seeds, in groups of `episodes_per_seed` (grpo)."""
        cfg = self.config
        size = self.updater.algorithm.episodes_per_seed
        rng = np.random.default_rng(derive_seed(cfg.seed, iteration, "train-seeds"))
        seeds = rng.integers(0, TRAIN_SEED_END, size=cfg.episodes_per_iter // size)
        return [EpisodeRequest(int(s), level, group) for group, s in enumerate(seeds) for _ in range(size)]

    def collect(self, iteration: int, level: str) -> Batch:
        """Play one iteration's episodes with the current policy (sampling, no gradients)."""
        cfg = self.config
        batch = None
        if self.is_main:
            generator = torch.Generator(device="cpu").manual_seed(derive_seed(cfg.seed, iteration, "sample"))
            # Sampled reflections draw from the iteration's own seed, so a resumed run samples what a straight one did.
            reseed = getattr(getattr(getattr(self.engine, "agent", None), "reflector", None), "reseed", None)
            if reseed is not None:
                reseed(derive_seed(cfg.seed, iteration, "reflect"))
            with torch.no_grad():
                batch = self.engine.collect(
                    self.requests(iteration, level),
                    generator=generator,
                    label_seed=derive_seed(cfg.seed, iteration, "labels"),
                )
        return self._from_main(batch)

    def evaluate(self, level: str | None = None, episodes: int | None = None, seed_start: int = VALIDATION_SEED_START) -> dict[str, Any]:
        """Greedy play on seeds `seed_start + k` (default: the validation split); returns val/success, val/return, val/length.

        For a held-out test, pass `seed_start=SPLIT_SEED_OFFSETS["test"]`.
        """
        level = level if level is not None else self.curriculum.level
        count = episodes if episodes is not None else self.config.eval_episodes
        requests = [EpisodeRequest(seed_start + k, level, k) for k in range(count)]
        batch = None
        if self.is_main:
            with torch.no_grad():
                batch = self.eval_engine.collect(requests, greedy=True, label_seed=derive_seed(self.config.seed, 0, "eval"))
        batch = self._from_main(batch)
        return {
            "val/success": batch.success_rate,
            "val/return": batch.mean_return,
            "val/length": batch.mean_length,
            f"val/success/{level}": batch.success_rate,
        }

    # ----------------------------------------------------------- persistence
    def save(self) -> Path:
        """Write a checkpoint of the current state into the run folder (atomically)."""
        if self.run_dir is None:
            raise ValueError("this trainer has no run folder to save into")
        if not self.is_main:
            self._last_saved = self.iteration
            self.accelerator.wait_for_everyone()  # the main process is writing the checkpoint
            return self.run_dir
        metrics_offset = self.metrics.size()  # type: ignore[union-attr]

        def write(folder: Path) -> None:
            self._save_policy(folder / "policy")
            self.metrics.save_into(folder, metrics_offset)  # type: ignore[union-attr]
            torch.save(self.updater.optimizer.state_dict(), folder / "optimizer.pt")
            if self.reflector_update is not None:
                torch.save(self.reflector_update.optimizer.state_dict(), folder / REFLECTOR_OPTIMIZER_FILE)
            write_json(folder / "replay.json", self.replay.state_dict())
            write_json(folder / "rng.json", capture_rng_state())
            if self.reflection_cache is not None:
                write_json(folder / REFLECTIONS_FILE, {
                    "identity": self.reflection_cache.identity, "entries": self.reflection_cache.state_dict(),
                })
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
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        return path

    def resume(self, checkpoint: str | Path | None = None) -> int:
        """Load the latest complete checkpoint of the run (or `checkpoint`); returns its iteration (0 if none)."""
        if checkpoint is None:
            if self.run_dir is None:
                raise ValueError("no run folder to resume from")
            remove_leftovers(self.run_dir)
            checkpoint = latest_checkpoint(self.run_dir)
            if checkpoint is None:
                return 0
        folder = Path(checkpoint)
        state = read_json(folder / "trainer.json")
        saved = RLConfig.from_dict(state["config"]).to_dict()
        mismatched = changed_settings(saved, self.config.to_dict(), RLConfig.RESUMABLE)
        if mismatched:
            raise ConfigMismatch(f"the checkpoint was made with different settings: {', '.join(mismatched)}")
        load_policy_weights(self.policy, folder / "policy")
        self.updater.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        if self.reflector_update is not None:
            update = self.reflector_update
            load_adapter_weights(update.model, update.adapter, folder / "policy" / TRAINED_REFLECTOR)
            update.optimizer.load_state_dict(torch.load(folder / REFLECTOR_OPTIMIZER_FILE, map_location="cpu", weights_only=True))
        self.replay.load_state_dict(read_json(folder / "replay.json"))
        self.curriculum.load_state_dict(state["curriculum"])
        restore_rng_state(read_json(folder / "rng.json"))
        if self.reflection_cache is not None:
            # Which prompts miss decides how the misses are batched (and so their rounding): the
            # resumed run continues from the cache the straight run had at this iteration.
            saved_cache = read_json(folder / REFLECTIONS_FILE) if (folder / REFLECTIONS_FILE).is_file() else {"entries": []}
            if saved_cache.get("identity", self.reflection_cache.identity) != self.reflection_cache.identity:
                raise ConfigMismatch(
                    f"the checkpoint's reflections were written by another reflector ({saved_cache['identity']}); "
                    "resume with the reflector the run started with"
                )
            self.reflection_cache.load_state_dict(saved_cache["entries"])
        self.iteration = int(state["iteration"])
        self.episodes_seen = int(state["episodes_seen"])
        self._last_saved = checkpoint_iteration(folder)
        if self.metrics is not None:
            # Lines written after this checkpoint belong to iterations that will run again.
            self.metrics.restore(folder, int(state["metrics_offset"]))
        return self.iteration

    def save_final(self, folder: str | Path) -> None:
        """Save the trained policy (PEFT adapter, value head if any, label order) for evaluation or more training.

        One atomic folder: a kill half-way must not leave an adapter whose value head and label
        order are missing, since loading would then fill them in silently with defaults.
        """
        if self.is_main:
            with atomic_folder(folder) as scratch:
                self._save_policy(scratch)
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def _save_policy(self, folder: str | Path) -> None:
        self.policy.save(folder)
        if self.reflector_update is not None:
            save_adapter(self.reflector_update.model, self.reflector_update.adapter, Path(folder) / TRAINED_REFLECTOR)
        # Saved next to the policy so evaluation presents menus the way it was trained.
        save_label_order(folder, self.engine.agent.shuffle_labels, self.engine.agent.label_after)

    def _from_main(self, value: Any) -> Any:
        """The main process's `value`, in every process (it is this process's own without accelerate)."""
        if self.accelerator is None:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def _emit(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.metrics is not None:
            self.metrics.append(record)
        if self.log is not None and self.is_main:
            self.log(record)
