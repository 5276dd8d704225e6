"""Training seeds: one pipeline run per seed, run one after another, in local processes or as Ray tasks.

``reflectrl pipeline ENV --seeds 5`` (seeds 0..4) or ``--seeds 0,3,7`` makes, in the run folder OUT:

* ``OUT/pipeline.json``: the settings, as in any run folder (and that it holds seed folders);
* ``OUT/data/`` and the evaluations of the rows that train nothing (prompted model, oracle, random):
  the stages no training seed changes (`shared_stages`), made once;
* ``OUT/seed-K/``: an ordinary, resumable pipeline run folder (`reflectrl.pipeline.run`) with
  `Preset.training_seed` K; the shared stages are copied into it byte for byte before it runs, so its
  own report.md is complete;
* ``OUT/report.md``, ``learning_curves.png``, ``timing.md``: the aggregate (`reflectrl.pipeline.aggregate`).

What a seed changes: everything training draws, and only that (`Preset.training_seed`): SFT's LoRA
initialisation, the rows it holds out, its data order and label shuffles; RL's episode seeds, action
sampling, label shuffles, replay and minibatch order. The teacher data, the evaluation episodes and the
evaluation's label shuffles come from `Preset.seed`, the same for every seed, so the seeds are paired:
their rows differ only by how training went. Seed K = `Preset.seed` trains what a single run trains.

Where the seeds run: one after another (default); ``parallel`` local processes, the torch threads split
between them; or as Ray tasks (``ray_address``: ``auto`` or ``HOST:PORT`` of a cluster started with
``ray start --head``), each asking Ray for its CPUs (= its torch threads) and GPUs. A Ray task whose
worker or node is lost is re-run by Ray (`SEED_RETRIES`), resuming from the stages and checkpoints its
folder kept. The tasks' messages reach the driver's console through a Ray queue; the rest of the
workers' output (library warnings and progress bars) stays in Ray's worker logs. A worker on another
machine that cannot see OUT receives the shared stages from the driver and sends its folder back
(without checkpoints) when it is done.

Re-running the same command resumes: finished stages are skipped in every seed folder, a killed
stage resumes from its checkpoints, and the aggregate is rewritten; more seeds can be added later
with the same settings. The same seeds give the same adapters and reports whichever way they run
(on the same kind of CPU: kernels decide float rounding, see `report.cpu_description`).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from reflectrl.envs import lookup
from reflectrl.pipeline.aggregate import UNTRAINED, seed_folder, write_aggregate
from reflectrl.pipeline.console import LOG_FILE, StageLines
from reflectrl.pipeline.plan import SETTINGS, saved_settings, stage_names
from reflectrl.pipeline.presets import Preset, saved_defaults
from reflectrl.pipeline.report import REPORT
from reflectrl.pipeline.run import run_pipeline
from reflectrl.pipeline.stage_functions import data_stage, eval_stage, local_reflector
from reflectrl.pipeline.stage_processes import exit_with_parent
from reflectrl.pipeline.stages import DONE, Stage, StageRunner
from reflectrl.run_log import run_log
from reflectrl.trainers.trackers import DEFAULT_REPORT_TO

LAYOUT = "one pipeline run folder per training seed (seed-N), the stages no seed changes shared"
"""Saved in the multi-seed folder's pipeline.json: a single run refuses the folder, and the reverse."""
SEED_RETRIES = 3
"""Times Ray re-runs a seed whose worker process or node was lost (an error inside the run is not retried)."""
MESSAGE_POLL_S = 0.5
"""Seconds between the driver's looks for the Ray tasks' messages."""
SKIPPED_WHEN_SENT = "checkpoints"
"""Folders a remote worker leaves out when it sends a seed folder back (the final adapters are kept)."""


def parse_seeds(text: str) -> list[int]:
    """``"5"`` -> seeds 0..4; ``"0,3,7"`` -> those seeds (a single seed: ``"7,"``)."""
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return list(range(count))
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes a count (5: seeds 0..4) or a comma list of seeds (0,3,7), not {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs distinct seeds >= 0, not {text!r}")
    return seeds


def shared_stages(rows: str = "core") -> list[str]:
    """Stages no training seed changes: the teacher data and the evaluations of rows without a trained adapter."""
    return [name for name in stage_names(rows) if name == "data" or name in {f"eval-{key}" for key in UNTRAINED}]


@dataclass(frozen=True)
class SeedJob:
    """One seed's run, as a local process or a Ray task receives it."""

    env: str
    preset: Preset
    """The run's preset with this seed's `training_seed`."""
    folder: str
    """The seed's run folder."""
    shared: str
    """The multi-seed run folder that holds the shared stages."""
    stages: tuple[str, ...]
    """The shared stages to copy in."""
    command: str | None = None
    rows: str = "core"
    threads: int | None = None
    """torch threads (None: leave them as they are)."""
    serve_reflector: str | None = None
    server_options: dict[str, Any] = field(default_factory=dict)
    report_to: tuple[str, ...] = DEFAULT_REPORT_TO
    """Experiment trackers of the SFT and RL stages (`run_pipeline`'s)."""

    @property
    def seed(self) -> int:
        return int(self.preset.training_seed)  # type: ignore[arg-type]


@dataclass
class SeedsResult:
    """What a multi-seed run produced."""

    out: Path
    report: Path
    verdict: str
    seeds: list[int]


def run_seeds(
    env: str,
    preset: Preset,
    out: str | os.PathLike,
    seeds: Sequence[int],
    *,
    parallel: int = 1,
    ray_address: str | None = None,
    gpus_per_seed: float = 0.0,
    threads: int | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    rows: str = "core",
    serve_reflector: str | None = None,
    server_options: dict[str, Any] | None = None,
    verbose: bool = False,
    report_to: tuple[str, ...] = DEFAULT_REPORT_TO,
) -> SeedsResult:
    """Run (or finish) the pipeline once per training seed under `out`, then write the aggregate report.

    `parallel`: local processes, `threads` (default: this machine's CPUs) split between them; `ray_address`:
    each seed a Ray task asking for `threads` CPUs (default: the preset's threads, else 1) and `gpus_per_seed`.
    The rest as `run_pipeline`.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"need distinct training seeds >= 0, got {seeds}")
    if preset.training_seed is not None:
        raise ValueError("the preset of a multi-seed run has no training_seed of its own: each seed's folder sets it")
    if parallel < 1:
        raise ValueError("parallel must be >= 1")
    if parallel > 1 and ray_address is not None:
        raise ValueError("choose local processes (parallel) or Ray (ray_address), not both")
    entry = lookup(env)
    out = Path(out)
    started = time.perf_counter()
    if preset.threads:
        import torch

        torch.set_num_threads(int(preset.threads))
    with run_log(out / LOG_FILE, verbose):
        lines = StageLines(log, live=progress, verbose=verbose)
        runner = StageRunner(
            out, {"env": entry.name, "preset": saved_settings(entry.name, preset), "layout": LAYOUT}, defaults={"preset": saved_defaults()},
            lines=lines,
        )
        shared = shared_stages(rows)
        for name in shared:
            if name == "data":
                runner.run(Stage(name, partial(data_stage, entry.name, preset, lines)))
            else:
                setting = next(s for s in SETTINGS if f"eval-{s.key}" == name)
                runner.run(Stage(name, partial(eval_stage, entry.name, preset, setting, out, lines, local_reflector)))
        if ray_address is not None:
            per_seed = threads or preset.threads or 1
        elif parallel > 1:
            per_seed = max(1, (threads or os.cpu_count() or 1) // parallel)
        else:
            per_seed = None  # this process's threads, as the caller set them
        jobs = [
            SeedJob(
                entry.name, replace(preset, training_seed=seed), str((out / seed_folder(seed)).absolute()), str(out.absolute()),
                tuple(shared), f"{command} (training seed {seed})" if command else None, rows, per_seed, serve_reflector,
                dict(server_options or {}), tuple(report_to),
            )
            for seed in seeds
        ]
        if ray_address is not None:
            _run_on_ray(jobs, ray_address, gpus_per_seed, lines.say)
        elif parallel > 1:
            _run_in_processes(jobs, parallel, lines.say)
        else:
            for job in jobs:
                lines.say(f"[{seed_folder(job.seed)}] training seed {job.seed} of {', '.join(map(str, seeds))}")
                run_seed(job, log, progress, verbose=verbose)
        report, verdict = write_aggregate(out, entry.name, preset, seeds, shared, command, time.perf_counter() - started)
        return SeedsResult(out, report, verdict, seeds)


def run_seed(
    job: SeedJob, log: Callable[[str], None] = print, progress: bool = False, shared: bytes | None = None, verbose: bool = False
) -> None:
    """Run one seed's pipeline in its folder after copying the shared stages in (from `job.shared`, or from
    `shared`, an archive of them, where that folder is not on this machine)."""
    folder = Path(job.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in job.stages:
        _copy_stage(Path(job.shared), folder, name, shared)
    if job.threads:
        import torch

        torch.set_num_threads(int(job.threads))
    tag = f"[{seed_folder(job.seed)}] "
    run_pipeline(
        job.env, job.preset, folder, command=job.command, log=lambda message: log(tag + message), progress=progress, rows=job.rows,
        serve_reflector=job.serve_reflector, server_options=job.server_options, verbose=verbose, report_to=job.report_to,
    )


def _copy_stage(source_root: Path, folder: Path, name: str, archive: bytes | None) -> None:
    """Put the finished shared stage `name` into `folder`, whole or not at all (a copy then a rename)."""
    target = folder / name
    if (target / DONE).is_file():
        return
    if target.exists():
        raise RuntimeError(f"{target} exists but is not a finished copy of the shared {name!r} stage; move it away and re-run")
    partial_copy = folder / f".{name}.copying"
    shutil.rmtree(partial_copy, ignore_errors=True)
    if (source_root / name / DONE).is_file():
        shutil.copytree(source_root / name, partial_copy)
    elif archive is not None:
        _unpack(archive, partial_copy, name)
    else:
        raise RuntimeError(f"the shared {name!r} stage is neither in {source_root} nor sent along")
    partial_copy.rename(target)


def _pack(root: Path, names: Sequence[str], skip: str | None = None) -> bytes:
    """The folders `names` under `root` as an uncompressed tar (adapters do not compress), without `skip` folders."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in names:
            archive.add(root / name, arcname=name, filter=lambda info: None if skip and skip in Path(info.name).parts else info)
    return buffer.getvalue()


def _unpack(data: bytes, target: Path, member: str | None = None) -> None:
    """Extract `data` (from `_pack`) into `target`; `member`: only that folder, as `target` itself."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        members = []
        for info in archive.getmembers():
            parts = Path(info.name).parts
            if member is not None:
                if parts[0] != member or len(parts) == 1:
                    continue
                info.name = str(Path(*parts[1:]))
            members.append(info)
        target.mkdir(parents=True, exist_ok=True)
        # The "data" filter refuses absolute paths, links out of `target` and device files.
        archive.extractall(target, members=members, filter="data")


# ------------------------------------------------------------------ local processes
def _run_in_processes(jobs: Sequence[SeedJob], parallel: int, log: Callable[[str], None]) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # spawn: a forked child would inherit torch's thread pool and locks mid-use.
    with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_seed_process, job): job for job in jobs}
        log(f"{len(jobs)} seeds in {parallel} processes, {jobs[0].threads} torch threads each")
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                raise RuntimeError(f"training seed {futures[future].seed} failed: {future.exception()}") from future.exception()
        for future in futures:
            future.result()


def _seed_process(job: SeedJob) -> None:
    exit_with_parent(os.getppid())
    run_seed(job, lambda message: print(message, flush=True))


# ------------------------------------------------------------------ Ray
def _run_on_ray(jobs: Sequence[SeedJob], address: str, gpus: float, log: Callable[[str], None]) -> None:
    from ray.util.queue import Queue

    from reflectrl.rollout.env_worker import import_ray
    from reflectrl.rollout.ray_session import start_ray

    ray = import_ray()
    # Forwarded by Ray, the workers' output came in Ray's colour codes, amid the libraries' warnings and progress
    # bars, and Ray's deduplication folded one seed's progress lines into another's (they differ only in numbers).
    session = start_ray(address, log_to_driver=False)
    try:
        here = ray.get_runtime_context().get_node_id()
        shared = ray.put(_pack(Path(jobs[0].shared), jobs[0].stages))
        messages = Queue(actor_options={"num_cpus": 0})  # no CPU: the seeds may ask for all of them
        task = ray.remote(_seed_task)
        pending = {
            task.options(
                num_cpus=job.threads or 1, num_gpus=gpus, name=f"reflectrl {seed_folder(job.seed)}", max_retries=SEED_RETRIES,
                retry_exceptions=False,
            ).remote(job, shared, here, messages): job
            for job in jobs
        }
        cpus = jobs[0].threads or 1
        log(
            f"{len(jobs)} seeds submitted to Ray at {address}, each asking for {cpus} CPU{'s' if cpus != 1 else ''} and {gpus:g} "
            "GPUs; the workers' other output goes to Ray's worker logs (/tmp/ray/session_latest/logs on each node by default)"
        )
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=MESSAGE_POLL_S)
            _print_queued(messages, log)
            if not ready:
                continue
            job = pending.pop(ready[0])
            try:
                folder = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                raise RuntimeError(f"training seed {job.seed} failed: {err.cause if err.cause is not None else err}") from None
            except ray.exceptions.RayError as err:  # its worker or node lost more often than SEED_RETRIES
                raise RuntimeError(
                    f"training seed {job.seed}: Ray lost its worker {SEED_RETRIES + 1} times ({type(err).__name__}); "
                    "re-run the same command to resume"
                ) from None
            if folder is not None and not (Path(job.folder) / REPORT).is_file():
                _unpack(folder, Path(job.folder), seed_folder(job.seed))
            log(f"[{seed_folder(job.seed)}] done")
    finally:
        session.stop()


def _print_queued(messages, log: Callable[[str], None]) -> None:
    """Log the seeds' messages waiting in the Ray queue `messages`, in the order they came."""
    count = messages.size()
    for message in messages.get_nowait_batch(count) if count else ():
        log(message)


def _seed_task(job: SeedJob, shared: bytes, driver_node: str, messages) -> bytes | None:
    """A seed as a Ray task, its messages put into the Ray queue `messages`: its folder, without checkpoints, when it
    ran on another node than the driver's."""
    import ray

    run_seed(job, messages.put, shared=shared)
    if ray.get_runtime_context().get_node_id() == driver_node:
        return None
    folder = Path(job.folder)
    return _pack(folder.parent, [folder.name], SKIPPED_WHEN_SENT)
