"""The RL recipe: everything an online RL run is built from, assembled in one place from an `RLConfig`.

`reflectrl train`, the pipeline's RL stages and `benchmarks/bench_rl_iter.py`
all call `build_rl_run`, so they load the players, size the menus, build the
rollout engines and the trainer the same way (and share the trainer's time
limit, `RLConfig.max_minutes`). What they add is their own: the CLI's run
folder check and progress bar, the pipeline's log lines, the benchmark's
timing table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectrl.envs import lookup
from reflectrl.rollout import LocalRolloutEngine
from reflectrl.trainers.online import OnlineTrainer
from reflectrl.trainers.curriculum import resolve_levels
from reflectrl.trainers.rl_config import RLConfig
from reflectrl.trainers.rl_players import RLPlayers, load_rl_players


@dataclass
class RLRun:
    """A built RL run: its players and the trainer that plays and updates them."""

    config: RLConfig
    players: RLPlayers
    trainer: OnlineTrainer


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
    **player_options: Any,
) -> RLRun:
    """Load the players of `config` and build the engines and the trainer.

    `player_options` are `load_rl_players` keywords (lora_r, shuffle_labels, device, bf16, reflector_url, ...);
    those the config decides (value head, KL reference, init seed, reflection cache) come from it.

    `env_kwargs` reach every training environment, `eval_env_kwargs` (default:
    the same) the validation ones; menus are capped at the label set's size and
    `config.horizon` overrides the environment's episode limit.
    """
    entry = lookup(config.env)
    levels = resolve_levels(entry.env_class().levels, config)
    players = load_rl_players(
        policy, reflector, value_head=config.uses_critic, kl_reference=config.kl_coef > 0, init_seed=config.seed,
        cache_reflections=config.reflection_cache, **player_options,
    )
    fixed = {"max_actions": len(players.label_set)}
    if config.horizon is not None:
        fixed["horizon"] = config.horizon
    engine = LocalRolloutEngine(entry.name, players.agent, max_concurrent, {**(env_kwargs or {}), **fixed})
    eval_engine = None
    if eval_env_kwargs is not None:
        eval_engine = LocalRolloutEngine(entry.name, players.agent, max_concurrent, {**eval_env_kwargs, **fixed})
    trainer = OnlineTrainer(
        config, players.policy, engine, levels=levels, run_dir=run_dir, reference=players.reference,
        eval_engine=eval_engine, reflection_cache=players.reflection_cache, log=log,
    )
    return RLRun(config, players, trainer)
