"""`reflectrl alfworld ...`: make ALFWorld games offline and check a game set."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from reflectrl.cli.errors import fail
from reflectrl.envs.alfworld.tasks import SPLITS

app = typer.Typer(
    help="ALFWorld: generate games offline with alfworld's own engine and planner, and check game sets.",
    no_args_is_help=True,
)


@app.command("make-games")
def make_games_command(
    out: Path = typer.Option(..., help="Data root to write (games go to OUT/json_2.1.1/<split>/...; use it as ALFWORLD_DATA)."),
    n: int = typer.Option(200, min=1, help="Number of games over all splits."),
    types: str = typer.Option("pick_and_place_simple", help="Comma-separated task types, or 'all'."),
    seed: int = typer.Option(0, min=0, help="Seed: the same seed and options give the same games."),
    valid_fraction: float = typer.Option(0.1, min=0.0, max=0.5, help="Share of games in each of valid_seen and valid_unseen."),
    max_objects: int = typer.Option(8, min=2, help="Movable objects per room (bounds the planner's search time)."),
    workers: int = typer.Option(0, min=0, help="Worker processes (0: one per CPU core)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write solvable ALFWorld games (with the planner's walkthrough) in the real data set's layout."""
    from reflectrl.envs.alfworld.engine import EngineMissing
    from reflectrl.envs.alfworld.generator import GeneratorConfig, make_games

    try:
        config = GeneratorConfig(
            out=out, n=n, task_types=types, seed=seed, valid_fraction=valid_fraction, max_objects=max_objects, workers=workers
        )
        if config.out.exists() and not config.out.is_dir():
            fail(f"--out {str(config.out)!r} exists and is not a folder")
        report = make_games(config, progress=not quiet)
    except (ValueError, EngineMissing) as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write games to {str(out)!r}: {err}")
    except KeyboardInterrupt:
        fail("interrupted; finished games are kept and a rerun continues where this one stopped", 130)

    counts = report.counts
    table = Table(title=f"ALFWorld games in {config.out}")
    table.add_column("task type")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for task_type in config.task_types:
        row = [counts[(s, task_type)] for s in SPLITS]
        table.add_row(task_type, *map(str, row), str(sum(row)))
    totals = [sum(counts[(s, t)] for t in config.task_types) for s in SPLITS]
    table.add_row("all", *map(str, totals), str(sum(totals)))
    Console().print(table)
    typer.echo(f"{report.made} new, {report.reused} already there, {len(report.failed)} failed; {report.seconds:.0f} s")
    for failed in report.failed:
        typer.echo(f"  no game for a {failed.task_type} slot of {failed.split}: {failed.error}", err=True)
    if report.failed:
        raise typer.Exit(1)


@app.command("check")
def check_command(
    data_dir: Path | None = typer.Option(None, help="Data root (default: ALFWORLD_DATA, else the generated default set)."),
    split: str = typer.Option("train", help="Split to check."),
    types: str = typer.Option("pick_and_place_simple", help="Comma-separated task types, or 'all'."),
    games: int = typer.Option(50, min=1, help="Number of games (the first ones of the split)."),
    random_steps: int = typer.Option(3, min=0, help="Random steps before the oracle takes over in the recovery check."),
    horizon: int = typer.Option(30, min=1, help="Steps per episode."),
    seed: int = typer.Option(0, min=0, help="Seed of the random player."),
) -> None:
    """Success of the oracle, of a random player and of the oracle after random steps."""
    from reflectrl.envs.alfworld.engine import EngineMissing
    from reflectrl.envs.alfworld.env import ALFWorldEnv
    from reflectrl.envs.alfworld.selfcheck import run_checks
    from reflectrl.evaluation.stats import wilson_interval

    try:
        env = ALFWorldEnv(split=split, data_dir=data_dir, task_types=types, horizon=horizon)
        result = run_checks(env, games, random_steps=random_steps, seed=seed)
    except (ValueError, FileNotFoundError, EngineMissing) as err:
        fail(str(err))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    table = Table(title=f"ALFWorld {split}: {result.games} games, horizon {horizon} ({result.seconds:.0f} s)")
    for column in ("player", "wins", "success", "95% interval"):
        table.add_column(column, justify="left" if column == "player" else "right")
    for name, wins in (
        ("oracle", result.oracle_wins),
        ("random", result.random_wins),
        (f"oracle after {random_steps} random steps", result.recovery_wins),
    ):
        lo, hi = wilson_interval(wins, result.games)
        table.add_row(name, f"{wins}/{result.games}", f"{result.rate(wins):.1%}", f"[{lo:.1%}, {hi:.1%}]")
    Console().print(table)
