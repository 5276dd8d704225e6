"""`reflectrl pipeline`: teacher data, SFT, RL, evaluation and the comparison report in one command."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from reflectrl.cli.errors import env_entry, fail
from reflectrl.cli.options import apply_threads, report_to_names, report_to_option, threads_option
from reflectrl.pipeline.console import LOG_FILE
from reflectrl.pipeline.presets import PRESETS
from reflectrl.pipeline.report import TIMING
from reflectrl.serving.engines import ENGINES


def pipeline(
    env_name: str = typer.Argument(..., metavar="ENV", help="Environment name (see `reflectrl envs`)."),
    preset_name: str = typer.Option("cpu", "--preset", help=f"Settings preset: {', '.join(PRESETS)}."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/pipeline-ENV); re-running resumes it."),
    rows: str = typer.Option("core", "--rows", help="core: prompted, SFT and RL with and without reflection, oracle, random; all: also the paper's ablation without negative examples."),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress line (each stage's line is still printed when it ends)."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also print each stage's details (RL iterations, SFT losses) and the libraries' own progress bars and warnings.",
    ),
    threads: Optional[int] = threads_option(),
    serve_reflector: Optional[str] = typer.Option(
        None, "--serve-reflector", metavar="ENGINE",
        help="Serve the frozen reflectors with this inference server (llamacpp or vllm) during RL and evaluation, started and stopped by the run.",
    ),
    engine_python: Optional[str] = typer.Option(None, "--engine-python", help="With --serve-reflector: the Python that runs the engine (vLLM's own venv)."),
    seeds_text: Optional[str] = typer.Option(
        None, "--seeds", metavar="SEEDS",
        help="Training seeds: a count (5: seeds 0..4) or a list (0,3,7). One resumable run folder per seed (OUT/seed-K) from the "
        "same data, evaluated on the same episodes, and the report over the seeds in OUT/report.md. Without it: one run.",
    ),
    parallel: int = typer.Option(
        1, "--parallel", min=1,
        help="Run this many jobs at once in local processes, the threads (--threads, default all CPUs) split between them: with --seeds, "
        "seeds; without, the run's independent stages (the reflector's SFT beside the policies'). Peak memory grows with it.",
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", metavar="ADDRESS",
        help="With --seeds: run each seed as a task on the Ray cluster at ADDRESS (auto, or HOST:PORT of `ray start --head`), asking for "
        "--threads CPUs (default: the preset's threads, else 1); a seed whose worker is lost is re-run.",
    ),
    seed_gpus: Optional[float] = typer.Option(None, "--seed-gpus", min=0, help="With --ray-address: GPUs each seed's task asks for (default: 1 with the gpu preset, else 0)."),
    report_to: str = report_to_option(),
    assignments: Optional[list[str]] = typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="Change one preset setting, by its dotted name (rl.iterations=8, sft.max_steps=200, dagger.episodes=200, "
        "reflection_tokens=40); repeatable; saved with the run (pipeline.json), and a resume with another value is refused, naming it.",
    ),
    config_file: Optional[Path] = typer.Option(
        None, "--config", metavar="FILE", help="Preset changes from a TOML file ([rl] then iterations = 8), applied before --set.",
    ),
) -> None:
    """Run the whole comparison (data -> SFT -> RL -> evaluation -> report.md); re-run the same command to resume."""
    from reflectrl.pipeline.presets import preset as get_preset
    from reflectrl.pipeline.plan import ROWS
    from reflectrl.pipeline.run import run_pipeline
    from reflectrl.pipeline.seeds import parse_seeds

    entry = env_entry(env_name)
    if rows not in ROWS:
        fail(f"unknown --rows {rows!r}; choose from {', '.join(ROWS)}")
    seeds = None
    if seeds_text is not None:
        try:
            seeds = parse_seeds(seeds_text)
        except ValueError as err:
            fail(str(err))
    elif ray_address is not None or seed_gpus is not None:
        fail("--ray-address and --seed-gpus run the seeds of --seeds; give --seeds")
    elif parallel > 1 and serve_reflector is not None:
        fail("--parallel without --seeds runs stages in processes with their own reflectors: choose it or --serve-reflector")
    if parallel > 1 and ray_address is not None:
        fail("choose --parallel (local processes) or --ray-address (Ray tasks), not both")
    if serve_reflector is not None and serve_reflector not in ENGINES:
        fail(f"unknown --serve-reflector {serve_reflector!r}; choose from {', '.join(ENGINES)}")
    trackers = report_to_names(report_to)  # not part of the preset either: the trackers only show what the stages compute
    # Not part of the preset (it overrides the preset's own setting).
    apply_threads(threads)
    try:
        from reflectrl.pipeline.presets import merge_changes, parse_assignments, read_changes

        changes = merge_changes(read_changes(config_file) if config_file else {}, parse_assignments(assignments or []))
        settings = get_preset(preset_name, entry.name, changes)
        from reflectrl.pipeline.plan import rl_config

        rl_config(entry.name, settings)  # a bad RL value fails here, not after the SFT stages
    except ValueError as err:
        fail(str(err))
    try:
        pinned = entry.pinned(settings.env_kwargs)
    except FileNotFoundError as err:
        fail(str(err))
    if pinned:
        # Into the preset, so that pipeline.json and the report name them (ALFWorld's game set), and a re-run with
        # other values is refused instead of mixing two sets' stages.
        settings = replace(settings, env_kwargs={**settings.env_kwargs, **{key: value for key, (_, value) in pinned.items()}})
    variables = "".join(f"{variable}={shlex.quote(value)} " for variable, value in pinned.values())
    folder = out if out is not None else Path("runs") / f"pipeline-{entry.name}"
    command = variables + "reflectrl pipeline " + " ".join(
        shlex.quote(part) for part in (entry.name, "--preset", settings.name, "--out", str(folder))
    ) + (f" --rows {rows}" if rows != "core" else "") + (f" --serve-reflector {serve_reflector}" if serve_reflector else "")
    if config_file is not None:
        command += f" --config {shlex.quote(str(config_file))}"
    command += "".join(f" --set {shlex.quote(text)}" for text in assignments or [])
    if seeds is not None:
        command += f" --seeds {seeds_text}"
    typer.echo(f"{command}\nRun folder: {folder} (re-run the same command to resume after an interruption; log: {folder / LOG_FILE})")
    server_options = {"threads": threads, "engine_python_path": engine_python}
    try:
        if seeds is not None:
            from reflectrl.pipeline.seeds import run_seeds

            gpus = seed_gpus if seed_gpus is not None else float(settings.name == "gpu")
            outcome = run_seeds(
                entry.name, settings, folder, seeds, parallel=parallel, ray_address=ray_address, gpus_per_seed=gpus, threads=threads,
                command=command, progress=not quiet and parallel == 1 and ray_address is None, log=typer.echo, rows=rows,
                serve_reflector=serve_reflector, server_options=server_options, verbose=verbose, report_to=trackers,
            )
            typer.echo(f"{outcome.verdict}\nReport over the seeds: {outcome.report} (each seed's own: {folder}/seed-K/report.md)")
            return
        result = run_pipeline(
            entry.name, settings, folder, command=command, progress=not quiet, log=typer.echo, rows=rows,
            serve_reflector=serve_reflector, server_options=server_options, verbose=verbose, report_to=trackers, parallel=parallel,
        )
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail(f"interrupted; run the same command again to resume (finished stages in {folder} are kept)", 130)
    except KeyError as err:
        fail(str(err.args[0]) if err.args else "unknown name")
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        # bad settings or files, a different run in --out, a missing optional engine, model loading, torch
        fail(f"{err or type(err).__name__}\nFinished stages are kept; fix the cause and run the same command to resume.")
    typer.echo(result.verdict)
    _print_table(result)
    typer.echo(f"Report: {result.report} (times per stage: {result.report.parent / TIMING})")


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from reflectrl.evaluation.tables import interval, pct

    table = Table(title="Held-out evaluation (95% Wilson intervals; exact: every start state played)")
    for column in ("setting", "success", "95% interval", "episodes", "return", "steps", "invalid"):
        table.add_column(column, justify="left" if column == "setting" else "right", no_wrap=column != "setting")
    for row in result.rows:
        s = row.summary
        cells = (
            row.setting, pct(s["success"]), interval(s), str(s["episodes"]),
            f"{s['mean_return']:+.2f}", f"{s['mean_steps']:.1f}", pct(s["invalid_rate"]),
        )
        table.add_row(*(Text(c, style="dim" if row.reference else "") for c in cells))
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)  # a log file has no width; 80 columns would squeeze the setting names
    console.print(table)
