"""Options that several commands share: CPU threads and compute precision, and where a run computes."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional

import typer

from reflectrl.cli.errors import fail


def threads_option() -> Any:
    return typer.Option(
        None, "--threads", min=1,
        help="torch CPU threads (default: torch's); 1 is often faster on a machine busy with other jobs.",
    )


def bf16_option() -> Any:
    return typer.Option(
        None, "--bf16/--no-bf16",
        help="bfloat16 autocast for the models (default: on GPUs with bfloat16; off on CPUs, where float32 keeps the numbers independent of native bfloat16 support).",
    )


def verbose_option() -> Any:
    return typer.Option(
        False, "--verbose", help="Show the libraries' own progress bars (model loading, datasets) and their known harmless warnings.",
    )


def report_to_option() -> Any:
    return typer.Option(
        "tensorboard", "--report-to", metavar="TRACKERS",
        help="Experiment trackers that get the run's settings and metrics, comma-separated: tensorboard, wandb, mlflow, "
        "trackio, or none; each reads its own environment (WANDB_MODE, MLFLOW_TRACKING_URI, ...). The metrics files are written either way.",
    )


def report_to_names(text: str) -> tuple[str, ...]:
    """The trackers of a ``--report-to`` value; an unknown or uninstalled one fails the command."""
    from reflectrl.trainers.trackers import TrackerError, parse_report_to

    try:
        return parse_report_to(text)
    except TrackerError as err:
        fail(str(err))


def apply_threads(threads: Optional[int]) -> None:
    """Set torch's CPU thread count; it changes speed and at most float rounding, not the method."""
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))


@dataclass(frozen=True)
class RunOptions:
    """Where and how a command computes (`with_run_options` adds the flags)."""

    device: Optional[str] = None
    bf16: Optional[bool] = None
    threads: Optional[int] = None
    quiet: bool = False
    verbose: bool = False


def _run_parameters() -> list[inspect.Parameter]:
    typer_options = {
        "device": typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
        "bf16": bf16_option(),
        "threads": threads_option(),
        "quiet": typer.Option(False, "--quiet", help="No progress bar."),
        "verbose": verbose_option(),
    }
    kinds = {"device": Optional[str], "bf16": Optional[bool], "threads": Optional[int], "quiet": bool, "verbose": bool}
    return [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=typer_options[f.name], annotation=kinds[f.name])
        for f in fields(RunOptions)
    ]


def with_run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with --device, --bf16/--no-bf16, --threads, --quiet and --verbose, passed to it as `run: RunOptions`;
    it runs with the libraries' progress bars and known warnings off the console unless --verbose (`reflectrl.run_log`).

    typer reads a command's options from its signature, so the shared flags are
    added to the signature once here instead of being repeated by every command.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "run"]
    added = _run_parameters()

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        from reflectrl.run_log import run_log

        run = RunOptions(**{p.name: kwargs.pop(p.name) for p in added})
        with run_log(verbose=run.verbose):
            return command(**kwargs, run=run)

    parameters = own + added
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
