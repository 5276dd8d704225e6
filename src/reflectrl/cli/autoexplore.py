"""`reflectrl autoexplore ...`: build AutoExplore task sets from folder trees, and the built-in benchmark."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from reflectrl.cli.errors import fail
from reflectrl.envs.autoexplore.generator import DEFAULT_EXCLUDE, GeneratorConfig, make_tasks
from reflectrl.envs.autoexplore.taskset import Task, TaskSetError, save_tasks, split_by_ratio, split_by_repository

app = typer.Typer(
    help="AutoExplore: turn folder trees into repository-exploration tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
SPLITS = ("auto", "repository", "ratio", "none")


def print_counts(tasks: list[Task], console: Console | None = None) -> None:
    """A table of task counts by kind and depth, one column per split."""
    console = console or Console()
    splits = sorted({t.split for t in tasks}, key=lambda s: ("train", "test").index(s))
    repositories = len({t.repository for t in tasks})
    table = Table(title=f"{len(tasks)} tasks from {repositories} repositor{'y' if repositories == 1 else 'ies'}")
    table.add_column("group")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    counts = Counter((t.split, t.kind) for t in tasks) + Counter((t.split, f"depth {t.depth}") for t in tasks)
    rows = [k for k in ("code", "text", "data")] + [f"depth {d}" for d in sorted({t.depth for t in tasks})]
    for row in rows:
        values = [counts[(s, row)] for s in splits]
        table.add_row(f"kind {row}" if not row.startswith("depth") else row, *map(str, values), str(sum(values)))
    console.print(table)


def _llm_client(llm: str, base_url: Optional[str], api_key_env: str):
    provider, _, model = llm.partition(":")
    if provider != "openai" or not model:
        fail(f"--llm must look like openai:MODEL, got {llm!r}")
    if not base_url:
        fail("--llm needs --base-url (any OpenAI-compatible endpoint)")
    try:
        from reflectrl.models.openai_backend import OpenAIChatClient
    except ImportError as err:
        fail(f"LLM rewriting is unavailable: {err}")
    return OpenAIChatClient(base_url, model, api_key_env=api_key_env), model


@app.command("make-tasks")
def make_tasks_command(
    roots: List[Path] = typer.Argument(..., metavar="ROOT...", help="Folder trees (repositories) to make tasks from."),
    out: Path = typer.Option(..., "--out", "-o", help="Task file to write (JSON lines)."),
    seed: int = typer.Option(0, help="Seed of every random choice; the same trees and seed give the same file."),
    split: str = typer.Option("auto", help="repository (test repositories unseen in train), ratio, none, or auto (repository when there are 2+ repositories, else ratio)."),
    test_fraction: float = typer.Option(0.2, help="Share of tasks (or, by repository, at least that share) put in test."),
    each_subfolder: bool = typer.Option(False, "--each-subfolder", help="Treat every sub-folder of each ROOT as its own repository."),
    per_file: int = typer.Option(2, min=1, help="At most this many questions per file."),
    max_depth: Optional[int] = typer.Option(None, min=0, help="Skip targets deeper than this many folders."),
    max_tasks: Optional[int] = typer.Option(None, min=1, help="Keep a seeded sample of at most this many tasks."),
    visible_chars: int = typer.Option(0, min=0, help="Keep only questions whose evidence is within this many characters of the file start (0: no limit)."),
    exclude: Optional[List[str]] = typer.Option(None, help=f"Folder names to skip (repeatable; default: {', '.join(DEFAULT_EXCLUDE)}; hidden names are always skipped)."),
    llm: Optional[str] = typer.Option(None, help="Rewrite questions with a chat model: openai:MODEL."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint for --llm."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the API key for --llm."),
) -> None:
    """Generate questions whose answer lies in exactly one file, and write them with their splits."""
    if split not in SPLITS:
        fail(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    start = time.monotonic()
    config = GeneratorConfig(
        seed=seed,
        per_file=per_file,
        max_depth=max_depth,
        visible_chars=visible_chars,
        exclude=tuple(exclude) if exclude else DEFAULT_EXCLUDE,
        max_tasks=max_tasks,
    )
    try:
        tasks, stats = make_tasks(list(roots), config, each_subfolder=each_subfolder)
        if not tasks:
            fail("no tasks found: the folders hold no documented code, sectioned documents or data tables")
        repositories = len({t.repository for t in tasks})
        if split == "auto":
            split = "repository" if repositories >= 2 else "ratio"
        if split == "repository":
            tasks = split_by_repository(tasks, test_fraction, seed)
        elif split == "ratio":
            tasks = split_by_ratio(tasks, test_fraction, seed)
        calls = 0
        if llm:
            from reflectrl.envs.autoexplore.rewrite import QuestionRewriter
            from reflectrl.storage import cache_root

            client, model = _llm_client(llm, base_url, api_key_env)
            rewriter = QuestionRewriter(client, model, cache_root() / "autoexplore" / "rewrites")
            try:
                tasks, calls = rewriter.rewrite(tasks)
            except RuntimeError as err:  # the backend's BackendError: server unreachable or unusable answers
                fail(f"question rewriting failed: {err}")
            finally:
                client.close()
        save_tasks(tasks, out)
    except (TaskSetError, OSError, ValueError) as err:
        fail(str(err))
    elapsed = time.monotonic() - start
    print_counts(tasks)
    typer.echo(
        f"read {stats.files_read} files, {stats.candidates} candidate questions, {stats.ambiguous} ambiguous dropped; "
        f"split: {split}; " + (f"{calls} model calls; " if llm else "") + f"wrote {out} in {elapsed:.1f} s"
    )


@app.command("make-benchmark")
def make_benchmark_command(
    seed: int = typer.Option(0, help="Seed of the synthetic repositories and their tasks."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to build in (must not exist); default: the reflectrl cache, where environments look for it."),
) -> None:
    """Build the built-in benchmark (synthetic repositories and tasks) and print its counts."""
    from reflectrl.envs.autoexplore.benchmark import TASKS_FILE, build_benchmark, builtin_tasks_path
    from reflectrl.envs.autoexplore.taskset import load_tasks

    try:
        if out is None:
            path = builtin_tasks_path(seed)
        else:
            if out.exists():
                fail(f"{out} already exists; choose a new folder")
            build_benchmark(out, seed=seed)
            path = out / TASKS_FILE
        tasks = load_tasks(path)
    except (TaskSetError, OSError) as err:
        fail(str(err))
    print_counts(tasks)
    typer.echo(f"task file: {path}")
