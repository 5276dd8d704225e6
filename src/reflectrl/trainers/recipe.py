"""The RL recipe: everything an online RL run is built from, assembled in one place from an `RLConfig`.

`reflectrl train`, the pipeline's RL stages and `benchmarks/bench_rl_iter.py`
all call `build_rl_run`, so they load the players, size the menus, build the
rollout engines and the trainer the same way (and share the trainer's time
limit, `RLConfig.max_minutes`). What they add is their own: the CLI's run
folder check and progress bar, the pipeline's log lines, the benchmark's
timing table.

With `config.uses_ray` the engines step their environments in Ray actors
(`reflectrl.rollout.ray_engine`), shared by the training and validation
engines; `RLRun.close` stops the actors and a Ray the run started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflectrl.envs import lookup
from reflectrl.players.load import RLPlayers, load_rl_players
from reflectrl.rollout import LocalRolloutEngine
from reflectrl.rollout.engine import RolloutEngine
from reflectrl.trainers.online import OnlineTrainer
from reflectrl.trainers.curriculum import resolve_levels
from reflectrl.trainers.rl_config import RLConfig
from reflectrl.trainers.reflector_update import ReflectorUpdate
from reflectrl.trainers.trackers import RunTrackers


@dataclass
class RLRun:
    """A built RL run: its players and the trainer that plays and updates them."""

    config: RLConfig
    players: RLPlayers
    trainer: OnlineTrainer
    close_steps: list[Callable[[], None]] = field(default_factory=list)
    """What `close` undoes, last built first (engines, Ray actors, a Ray started here)."""

    def close(self) -> None:
        """Release the engines' environments, and Ray's actors and session when the run uses them."""
        while self.close_steps:
            self.close_steps.pop()()


def build_rl_run(
    config: RLConfig,
    policy: str,
    reflector: str | None,
    *,
    run_dir: str | Path | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    eval_env_kwargs: Mapping[str, Any] | None = None,
    max_concurrent: int = 16,
    log: Callable[[dict[str, Any]], None] | None = None,
    accelerator: Any = None,
    trackers: RunTrackers | None = None,
    **player_options: Any,
) -> RLRun:
    """Load the players of `config` and build the engines and the trainer.

    `player_options` are `load_rl_players` keywords (lora_r, shuffle_labels, device, bf16, reflector_url, ...);
    those the config decides (value head, KL reference, init seed, reflection cache) come from it.

    `accelerator` (under `accelerate launch`) shares the updates among its processes; only its main
    process plays episodes, so only it starts Ray actors.

    `trackers` receive the metrics besides metrics.jsonl (see `OnlineTrainer`).

    `env_kwargs` reach every training environment, `eval_env_kwargs` (default:
    the same) the validation ones; menus are capped at the label set's size and
    `config.horizon` overrides the environment's episode limit.
    """
    entry = lookup(config.env)
    levels = resolve_levels(entry.env_class().levels, config)
    # A run without a reflector (the pipeline's plain arm shares the config) has no reflector to train.
    trains_reflector = config.train_reflector and reflector is not None
    players = load_rl_players(
        policy, reflector, value_head=config.uses_critic, kl_reference=config.kl_coef > 0, init_seed=config.seed,
        cache_reflections=config.reflection_cache and config.reflection_temperature == 0,
        reflector_temperature=config.reflection_temperature,
        reflector_reference=trains_reflector and config.reflector_kl_coef > 0, **player_options,
    )
    if trains_reflector and players.reflector_adapter is None:
        raise ValueError("train_reflector trains a local reflector: give the reflector as an SFT adapter folder")
    fixed = {"max_actions": len(players.label_set)}
    if config.horizon is not None:
        fixed["horizon"] = config.horizon
    run = RLRun(config, players, None)  # type: ignore[arg-type]  # the trainer follows its engines
    try:
        plays = accelerator is None or accelerator.is_main_process
        make_engine = _engine_factory(config, entry.name, players.agent, max_concurrent, run.close_steps, ray=config.uses_ray and plays)
        engine = make_engine({**(env_kwargs or {}), **fixed})
        eval_engine = make_engine({**eval_env_kwargs, **fixed}) if eval_env_kwargs is not None else None
        run.trainer = OnlineTrainer(
            config, players.policy, engine, levels=levels, run_dir=run_dir, reference=players.reference,
            eval_engine=eval_engine, reflection_cache=players.reflection_cache, log=log, accelerator=accelerator,
            trackers=trackers, reflector_update=_reflector_update(config, players) if trains_reflector else None,
        )
    except BaseException:
        run.close()  # no Ray actors or session left behind by a run that could not be built
        raise
    return run


def _reflector_update(config: RLConfig, players: RLPlayers) -> ReflectorUpdate:
    """The reflector's own update, for a run that trains it (`RLConfig.train_reflector`, a reflector given)."""
    from reflectrl.trainers.algorithms import algorithm_for

    return ReflectorUpdate(
        config, algorithm_for(config), players.players.model, players.players.tokenizer,
        adapter=players.reflector_adapter, reference=players.reflector_reference, bf16=players.policy.bf16,
    )


def _engine_factory(
    config: RLConfig, env_name: str, agent: Any, max_concurrent: int, close_steps: list[Callable[[], None]], ray: bool,
) -> Callable[[dict[str, Any]], RolloutEngine]:
    """Builds the run's engines: local, or with `ray` on Ray actors (started here once, shared by the engines)."""
    if not ray:
        return lambda kwargs: LocalRolloutEngine(env_name, agent, max_concurrent, kwargs)
    from reflectrl.rollout.env_worker import EnvWorkerGroup
    from reflectrl.rollout.ray_engine import RayRolloutEngine
    from reflectrl.rollout.ray_session import start_ray

    session = start_ray(config.ray_address)
    close_steps.append(session.stop)
    workers = EnvWorkerGroup(
        config.env_workers, cpus=config.env_worker_cpus, call_timeout=config.env_call_timeout,
        max_restarts=config.env_worker_restarts,
    )
    close_steps.append(workers.close)

    def make(kwargs: dict[str, Any]) -> RolloutEngine:
        engine = RayRolloutEngine(env_name, agent, workers, max_concurrent, kwargs)
        close_steps.append(engine.close)
        return engine

    return make
