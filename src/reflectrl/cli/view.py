"""`reflectrl view`: the episodes of one or two evaluations as one self-contained HTML page (registered in `cli.main`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from reflectrl.cli.errors import fail


def view(
    path: Path = typer.Argument(
        ..., metavar="PATH",
        help="An evaluation folder (`reflectrl eval --out`), a run folder (`reflectrl pipeline --out`: one row per "
        "evaluation in it) or an episodes.jsonl file.",
    ),
    other: Optional[Path] = typer.Argument(None, metavar="[PATH2]", help="A second one: its episodes of the same seeds side by side."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="HTML file to write (default: view.html in PATH, view-vs-NAME.html with PATH2; beside a file PATH)."
    ),
    title: Optional[str] = typer.Option(None, "--title", help="Page title (default: the folders' names)."),
) -> None:
    """Write a page to read episodes in a browser: filters, and per step the observation, the reflection, the menu
    with the agent's probabilities, the chosen and the oracle's move and the reward. No server, no network."""
    from reflectrl.evaluation.viewer import PAGE_FILE, write_page

    paths = [path] if other is None else [path, other]
    if out is None:
        folder = path if path.is_dir() else path.parent
        out = folder / (PAGE_FILE if other is None else f"view-vs-{other.resolve().name}.html")
    if out.is_dir():
        fail(f"--out {out} is a folder: give the HTML file to write")
    try:
        written, evaluations = write_page(paths, out, title)
    except (ValueError, OSError) as err:
        fail(str(err))
    episodes = sum(len(e.episodes) for e in evaluations)
    typer.echo(f"wrote {written} ({len(evaluations)} evaluation{'s' if len(evaluations) != 1 else ''}, {episodes} episodes); open it in a browser")
