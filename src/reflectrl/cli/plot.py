"""`reflectrl plot`: learning curves of RL runs from their metrics.jsonl, as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from reflectrl.cli.errors import fail

METRICS_FILE = "metrics.jsonl"  # what `reflectrl train` writes into its run folder


def plot(
    runs: list[str] = typer.Argument(..., metavar="RUN...", help="RL run folders (`reflectrl train --out`), each optionally NAME=FOLDER."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    metric: list[str] = typer.Option(
        ["train/success", "val/success"], "--metric",
        help="Metrics to draw (repeatable), e.g. train/success, val/success, train/return, loss/policy.",
    ),
    title: Optional[str] = typer.Option(None, "--title", help="Plot title (default: the metrics)."),
) -> None:
    """Plot metrics per iteration of one or more RL runs (validation curves dashed)."""
    from reflectrl.pipeline.report import plot_learning_curves, read_curve

    curves = {}
    for run in runs:
        name, _, folder = run.rpartition("=") if "=" in run else (Path(run).name, "", run)
        path = Path(folder) / METRICS_FILE
        if not path.is_file():
            fail(f"{path} does not exist: give run folders written by `reflectrl train --out`")
        for key in metric:
            points = read_curve(path, key)
            if points:
                kind = {"val": "validation", "train": "training"}.get(key.split("/")[0], key)
                kind = kind if key.endswith("/success") else key
                curves[f"{name} ({kind})" if len(metric) > 1 else name] = points
    if not curves:
        fail(f"none of the runs has the metrics {', '.join(metric)}")
    percent = all("success" in key for key in metric)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(
        curves, out, title or ", ".join(metric), ylabel="success rate (%)" if percent else ", ".join(metric), percent=percent
    )
    typer.echo(f"wrote {out} ({len(curves)} curves)")
