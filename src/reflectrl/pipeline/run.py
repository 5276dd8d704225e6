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
) -> PipelineResult:
    """Run (or finish) the pipeline for `env` with `preset` in the folder `out`; returns the report's path and rows.

    `command` is recorded in the report as the way to reproduce it. `rows` (see `plan.ROWS`) is not part of
    the run's settings: every stage is the same either way, so ``all`` later adds the ablation's stages.
    `serve_reflector` names an engine (`reflectrl.serving.engines.ENGINES`) that serves the reflectors;
    `server_options` are `start_reflector_server` keywords (threads, engine_python_path, ...). `report_to`
    names the trackers of the SFT and RL stages (not part of the run's settings either).

    `log` gets one line per stage (`reflectrl.pipeline.console`); with `progress` the running stage's line is
    drawn live on a terminal. Third-party progress bars and known warnings are kept off the console unless
    `verbose`, which also logs each stage's details (RL iterations, SFT losses); all of it is appended to
    the run folder's log file (`LOG_FILE`).
    """
    from reflectrl.run_log import run_log

    lines = StageLines(log, live=progress, verbose=verbose)
    with run_log(Path(out) / LOG_FILE, verbose):
        if serve_reflector is None:
            return _run_stages(env, preset, out, command, lines, rows, local_reflector, report_to)
        from reflectrl.serving.reflector_pool import ReflectorServers

        with ReflectorServers(serve_reflector, Path(out) / REFLECTOR_SERVERS, **(server_options or {})) as servers:
            return _run_stages(env, preset, out, command, lines, rows, servers.spec_for, report_to)


def _run_stages(
    env: str, preset: Preset, out: str | os.PathLike, command: str | None, lines: StageLines, rows: str,
    reflector_for: Callable[[Path], str], report_to: tuple[str, ...],
) -> PipelineResult:
    wanted = set(stage_names(rows, has_dagger(preset)))
    entry = lookup(env)
    out = Path(out)
    if preset.threads:
        import torch

        torch.set_num_threads(int(preset.threads))
    runner = StageRunner(out, {"env": entry.name, "preset": saved_settings(entry.name, preset)}, defaults={"preset": saved_defaults()}, lines=lines)
    lines.note(f"{command or 'run_pipeline'} in {out}")
    started = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    records["data"] = runner.run(Stage("data", partial(data_stage, entry.name, preset, lines)))
    for name, role, data_file in SFT_JOBS:
        if name in wanted:
            stage = partial(sft_stage, preset, role, out / "data" / data_file, lines, report_to=report_to)
            records[name] = runner.run(Stage(name, stage))
    if DAGGER_DATA in wanted:
        from reflectrl.datagen.dagger import ROUND_FILE

        records[DAGGER_DATA] = runner.run(Stage(DAGGER_DATA, partial(dagger_stage, entry.name, preset, out, lines)))
        stage = partial(
            sft_stage, preset, "reflector", out / DAGGER_DATA / ROUND_FILE, lines, report_to=report_to,
            changes={"init_adapter": str(out / "sft-reflector"), "max_steps": preset.dagger.steps},
        )
        records[DAGGER_REFLECTOR] = runner.run(Stage(DAGGER_REFLECTOR, stage))
    for name, policy, reflector, _ in RL_JOBS:
        if name in wanted:
            reflector = trained_reflector(preset, reflector) if reflector else None
            stage = partial(
                rl_stage, entry.name, preset, out / policy, out / reflector if reflector else None, reflector_for, lines, report_to=report_to
            )
            records[name] = runner.run(Stage(name, stage))
    for setting in SETTINGS:
        name = f"eval-{setting.key}"
        if name in wanted:
            stage = partial(eval_stage, entry.name, preset, with_trained_reflector(setting, preset), out, lines, reflector_for)
            records[name] = runner.run(Stage(name, stage))
    verdict = verdict_sentence(preset, records)
    report = write_run_report(entry, preset, out, records, verdict, command, time.perf_counter() - started)
    lines.note(f"{verdict} Report: {report}")
    return PipelineResult(out, report, comparison_rows(preset, records), records, verdict)
