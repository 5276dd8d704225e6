"""`run_pipeline`: a run's plan (`reflectrl.pipeline.plan`) stage by stage, resumable, then its report.

Each stage runs in its own folder under the run folder through `StageRunner` (`reflectrl.pipeline.stages`,
which skips finished stages and refuses a folder made with other settings), doing the work of its stage
function (`reflectrl.pipeline.stage_functions`); the report is rewritten at the end of every run
(`reflectrl.pipeline.report.write_run_report`).

With ``serve_reflector`` (``reflectrl pipeline --serve-reflector llamacpp``)
the RL and evaluation stages ask the frozen SFT reflector through an
inference server that the run starts (`reflectrl.serving`) instead of
generating in-process; the servers' exports and logs are in
``reflector-servers/``. It is not part of the run's settings (a float32
engine writes the same reflections), but the evaluation reflection caches of
served reflectors are kept apart from the in-process ones.

With ``parallel`` (``reflectrl pipeline --parallel 2``) the stages that do not read each other's results run
side by side, each in a local process (`reflectrl.pipeline.stage_processes`): each stage names the stages it
reads (`plan_stages`), so the reflector's SFT, the longest stage, runs beside both policies' SFT and RL without
reflection.

``report_to`` (``reflectrl pipeline --report-to``) names the experiment
trackers of the SFT and RL stages (`reflectrl.trainers.trackers`), each
stage a tracker run named ``FOLDER/STAGE``; it is not part of the run's
settings either (the trackers only show what the stages compute).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from reflectrl.envs import lookup
from reflectrl.pipeline.console import LOG_FILE, StageLines
from reflectrl.pipeline.plan import (
    DAGGER_DATA, DAGGER_REFLECTOR, REFLECTOR_SERVERS, RL_JOBS, SETTINGS, SFT_JOBS, has_dagger, saved_settings, stage_names,
    trained_reflector, with_trained_reflector,
)
from reflectrl.pipeline.presets import Preset, saved_defaults
from reflectrl.pipeline.report import ComparisonRow, comparison_rows, verdict_sentence, write_run_report
from reflectrl.pipeline.stage_functions import data_stage, dagger_stage, eval_stage, local_reflector, rl_stage, sft_stage
from reflectrl.pipeline.stages import Stage, StageRunner
from reflectrl.trainers.trackers import DEFAULT_REPORT_TO


@dataclass
class PipelineResult:
    """What a pipeline run produced."""

    out: Path
    report: Path
    rows: list[ComparisonRow]
    records: dict[str, dict[str, Any]]
    """DONE record of every stage."""
    verdict: str
    """The report's first sentence."""


def run_pipeline(
    env: str,
    preset: Preset,
    out: str | os.PathLike,
    *,
    command: str | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    rows: str = "core",
    serve_reflector: str | None = None,
    server_options: dict[str, Any] | None = None,
    verbose: bool = False,
    report_to: tuple[str, ...] = DEFAULT_REPORT_TO,
    parallel: int = 1,
) -> PipelineResult:
    """Run (or finish) the pipeline for `env` with `preset` in the folder `out`; returns the report's path and rows.

    `command` is recorded in the report as the way to reproduce it. `rows` (see `plan.ROWS`) is not part of
    the run's settings: every stage is the same either way, so ``all`` later adds the ablation's stages.
    `serve_reflector` names an engine (`reflectrl.serving.engines.ENGINES`) that serves the reflectors;
    `server_options` are `start_reflector_server` keywords (threads, engine_python_path, ...). `report_to`
    names the trackers of the SFT and RL stages (not part of the run's settings either).

    `parallel` > 1 runs up to that many independent stages at once, each in a local process with this process's
    torch threads split between them (`reflectrl.pipeline.stage_processes`; not with `serve_reflector`).

    `log` gets one line per stage (`reflectrl.pipeline.console`); with `progress` the running stage's line is
    drawn live on a terminal. Third-party progress bars and known warnings are kept off the console unless
    `verbose`, which also logs each stage's details (RL iterations, SFT losses); all of it is appended to
    the run folder's log file (`LOG_FILE`).
    """
    from reflectrl.run_log import run_log

    if parallel < 1:
        raise ValueError("parallel must be >= 1")
    if parallel > 1 and serve_reflector is not None:
        raise ValueError("stages in parallel processes use their own in-process reflectors: choose parallel or serve_reflector")
    # The workers' stage lines are printed as each ends; a live line would be drawn over by them.
    lines = StageLines(log, live=progress and parallel == 1, verbose=verbose)
    with run_log(Path(out) / LOG_FILE, verbose):
        if serve_reflector is None:
            return _run_stages(env, preset, out, command, lines, rows, local_reflector, report_to, parallel)
        from reflectrl.serving.reflector_pool import ReflectorServers

        with ReflectorServers(serve_reflector, Path(out) / REFLECTOR_SERVERS, **(server_options or {})) as servers:
            return _run_stages(env, preset, out, command, lines, rows, servers.spec_for, report_to, parallel)


def plan_stages(
    env: str, preset: Preset, out: Path, lines: StageLines, rows: str, reflector_for: Callable[[Path], str],
    report_to: tuple[str, ...],
) -> list[Stage]:
    """The run's stages in the order they run one after another, each with the stages it reads (`Stage.needs`)."""
    wanted = set(stage_names(rows, has_dagger(preset)))
    stages = [Stage("data", partial(data_stage, env, preset, lines))]
    for name, role, data_file in SFT_JOBS:
        if name in wanted:
            stages.append(Stage(name, partial(sft_stage, preset, role, out / "data" / data_file, lines, report_to=report_to), ("data",)))
    if DAGGER_DATA in wanted:
        from reflectrl.datagen.dagger import ROUND_FILE

        stages.append(Stage(DAGGER_DATA, partial(dagger_stage, env, preset, out, lines), ("data", "sft-reflector", "sft-policy")))
        stage = partial(
            sft_stage, preset, "reflector", out / DAGGER_DATA / ROUND_FILE, lines, report_to=report_to,
            changes={"init_adapter": str(out / "sft-reflector"), "max_steps": preset.dagger.steps},
        )
        stages.append(Stage(DAGGER_REFLECTOR, stage, (DAGGER_DATA,)))
    for name, policy, reflector, _ in RL_JOBS:
        if name in wanted:
            reflector = trained_reflector(preset, reflector) if reflector else None
            stage = partial(rl_stage, env, preset, out / policy, out / reflector if reflector else None, reflector_for, lines, report_to=report_to)
            stages.append(Stage(name, stage, (policy,) + ((reflector,) if reflector else ())))
    for setting in SETTINGS:
        name = f"eval-{setting.key}"
        if name in wanted:
            used = with_trained_reflector(setting, preset)
            adapters = tuple(dict.fromkeys(Path(p).parts[0] for p in (used.policy, used.reflector) if p))
            stage = partial(eval_stage, env, preset, used, out, lines, reflector_for)
            stages.append(Stage(name, stage, adapters, shares=None if used.teacher else used.reflector))
    return stages


def _runner(env: str, preset: Preset, out: Path, lines: StageLines) -> StageRunner:
    return StageRunner(out, {"env": env, "preset": saved_settings(env, preset)}, defaults={"preset": saved_defaults()}, lines=lines)


def _run_stages(
    env: str, preset: Preset, out: str | os.PathLike, command: str | None, lines: StageLines, rows: str,
    reflector_for: Callable[[Path], str], report_to: tuple[str, ...], parallel: int,
) -> PipelineResult:
    entry = lookup(env)
    out = Path(out)
    if preset.threads:
        import torch

        torch.set_num_threads(int(preset.threads))
    runner = _runner(entry.name, preset, out, lines)
    lines.note(f"{command or 'run_pipeline'} in {out}")
    started = time.perf_counter()
    stages = plan_stages(entry.name, preset, out, lines, rows, reflector_for, report_to)
    if parallel > 1:
        import torch

        from reflectrl.pipeline.stage_processes import run_stages_in_processes

        threads = max(1, torch.get_num_threads() // parallel)
        finished = {stage.name for stage in stages if runner.done(stage.name) is not None}
        jobs = {stage.name: StageJob(entry.name, preset, str(out), stage.name, rows, threads, lines.verbose, report_to) for stage in stages}
        lines.say(f"{len(stages) - len(finished)} stages to run, at most {parallel} at once in local processes, {threads} torch "
                  f"thread{'s' if threads > 1 else ''} each")
        run_stages_in_processes(stages, finished, parallel, _stage_process, jobs, lines.say)
        records = {stage.name: runner.done(stage.name) for stage in stages}
    else:
        records = {stage.name: runner.run(stage) for stage in stages}
    verdict = verdict_sentence(preset, records)
    report = write_run_report(entry, preset, out, records, verdict, command, time.perf_counter() - started)
    lines.note(f"{verdict} Report: {report}")
    return PipelineResult(out, report, comparison_rows(preset, records), records, verdict)


@dataclass(frozen=True)
class StageJob:
    """One stage of a run, as a worker process receives it (`run_stages_in_processes`)."""

    env: str
    preset: Preset
    out: str
    stage: str
    rows: str
    threads: int
    verbose: bool
    report_to: tuple[str, ...]


def _stage_process(job: StageJob) -> None:
    import torch

    from reflectrl.run_log import run_log

    torch.set_num_threads(job.threads)
    out = Path(job.out)
    lines = StageLines(lambda message: print(message, flush=True), verbose=job.verbose)
    with run_log(out / LOG_FILE, job.verbose):
        stage = next(s for s in plan_stages(job.env, job.preset, out, lines, job.rows, local_reflector, job.report_to) if s.name == job.stage)
        _runner(job.env, job.preset, out, lines).run(stage)
