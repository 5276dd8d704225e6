"""`reflectrl baselines`: oracle and random players on every level of an environment."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from reflectrl.cli.errors import env_entry, fail
from reflectrl.evaluation import evaluate_scripted


def baselines(
    env_name: str = typer.Argument(..., metavar="ENV", help="Environment name (see `reflectrl envs`)."),
    episodes: int = typer.Option(200, min=1, help="Episodes per player and level."),
    level: Optional[str] = typer.Option(None, help="One level only (default: every level)."),
    seed: int = typer.Option(0, help="First episode seed."),
) -> None:
    """Success of the oracle and of a uniformly random player, with 95% Wilson intervals."""
    entry = env_entry(env_name)
    levels = [level] if level else list(entry.env_class().levels)
    table = Table(title=f"{entry.gym_id}: scripted players, {episodes} episodes each (seeds {seed}..{seed + episodes - 1})")
    for column in ("level", "player", "success", "95% interval", "mean return", "mean steps"):
        table.add_column(column, justify="right" if column != "player" else "left")
    for lvl in levels:
        for player in ("oracle", "random"):
            try:
                res = evaluate_scripted(entry.name, player, episodes, level=lvl, seed=seed)
            except ValueError as err:
                fail(str(err))
            lo, hi = res.interval
            table.add_row(lvl, player, f"{res.success_rate:.1%}", f"[{lo:.1%}, {hi:.1%}]", f"{res.mean_return:+.2f}", f"{res.mean_steps:.1f}")
    Console().print(table)
