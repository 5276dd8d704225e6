"""`reflectrl play`: a person plays an environment in the terminal, through the same labelled menu the policy sees."""

from __future__ import annotations

import sys
from typing import Any, Optional, TextIO

import typer

from reflectrl.cli.errors import env_entry, fail
from reflectrl.envs import TextEnv
from reflectrl.protocol import LabelSet, Menu


def play_episode(env: TextEnv, seed: int | None, show_oracle: bool, stdin: TextIO) -> dict[str, Any]:
    """Run one interactive episode; returns a summary. End of input ends the game cleanly."""
    labels = LabelSet.plain()
    _, info = env.reset(seed=seed)
    typer.echo(f"Task: {info['task']}")
    total, steps = 0.0, 0
    while True:
        typer.echo("")
        typer.echo(info["observation"])
        menu = Menu.build(info["actions"], labels)
        typer.echo("Actions:")
        typer.echo(menu.render())
        if show_oracle:
            best = env.oracle_index()
            typer.echo(f"(oracle: {menu.label_of(best)}. {menu.actions[best]})")
        index = _ask(menu, stdin)
        if index is None:
            typer.echo("Input ended; game over.")
            return {"return": total, "steps": steps, "success": False, "finished": False}
        _, reward, terminated, truncated, info = env.step(index)
        total += reward
        steps += 1
        typer.echo(f"> {menu.actions[index]}   reward {reward:+g}   total {total:+g}")
        if terminated or truncated:
            outcome = "success" if info["success"] else ("out of steps" if truncated else "failure")
            typer.echo(f"\nEpisode over after {steps} steps: {outcome}, return {total:+g}.")
            return {"return": total, "steps": steps, "success": bool(info["success"]), "finished": True}


def _ask(menu: Menu, stdin: TextIO) -> int | None:
    while True:
        typer.echo("Choose a label: ", nl=False)
        line = stdin.readline()
        if line == "":
            typer.echo("")
            return None
        label = line.strip()
        index = menu.index_of(label)
        if index is not None:
            return index
        shown = f"{menu.labels[0]}-{menu.labels[-1]}" if len(menu.labels) > 1 else menu.labels[0]
        typer.echo(f"Unknown label {label!r}: type one of the labels {shown} shown before the actions.")


def play(
    env_name: str = typer.Argument(..., metavar="ENV", help="Environment name (see `reflectrl envs`)."),
    seed: Optional[int] = typer.Option(None, help="Episode seed (random if omitted)."),
    level: Optional[str] = typer.Option(None, help="Curriculum level (default: the hardest)."),
    horizon: Optional[int] = typer.Option(None, help="Maximum number of steps."),
    split: Optional[str] = typer.Option(None, help="Task split, for environments with task sets."),
    index: Optional[int] = typer.Option(None, help="Task index within --split."),
    task: Optional[str] = typer.Option(None, help="Task id, for environments with task sets."),
    show_oracle: bool = typer.Option(False, "--show-oracle", help="Show the oracle's choice at each step."),
) -> None:
    """Play an environment yourself: read the state, type an action's label."""
    entry = env_entry(env_name)
    options = {"level": level, "horizon": horizon, "split": split, "index": index, "task_id": task}
    kwargs = {k: v for k, v in options.items() if v is not None}
    try:
        env = entry.env_class()(max_actions=len(LabelSet.plain()), **kwargs)
    except (ValueError, OSError, TypeError, ImportError) as err:
        fail(f"cannot start {entry.name}: {err}")
    play_episode(env, seed, show_oracle, sys.stdin)
