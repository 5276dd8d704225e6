"""`reflectrl pipeline --seeds`: one run folder per training seed, the same results one after another or as Ray
tasks (a lost worker's seed re-run), a killed multi-seed run resumed, and the report over the seeds."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from killed_runs import kill_cli_when
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.pipeline.aggregate import t_interval, t_quantile
from reflectrl.pipeline.plan import stage_names
from reflectrl.pipeline.presets import preset
from reflectrl.pipeline.run import run_pipeline
from reflectrl.pipeline.seeds import parse_seeds, run_seeds, shared_stages
from reflectrl.pipeline.stages import DONE, ConfigMismatch
from reflectrl.trainers.checkpoint import latest_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = [0, 1]
COMMAND = "reflectrl pipeline taxi --preset tiny --out RUN --seeds 2"


def _results(out: Path) -> dict[str, bytes]:
    """Every final adapter, every report (less its command line, which names the folder) and every evaluated episode."""
    files = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out)
        if "checkpoints" in relative.parts or not path.is_file():
            continue
        if path.name == "adapter_model.safetensors" or relative.parts[-2:-1] == ("dropoff",) and path.name == "episodes.jsonl":
            files[str(relative)] = path.read_bytes()
        elif path.name == "report.md":
            lines = path.read_text(encoding="utf-8").splitlines()
            files[str(relative)] = "\n".join(line for line in lines if not line.startswith("- **command**")).encode()
    return files


def _stage_records(folder: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(folder.glob(f"*/{DONE}"))}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    """Two tiny seeds, one after the other, in this process."""
    out = tmp_path_factory.mktemp("sequential") / "run"
    run_seeds("taxi", preset("tiny", "taxi"), out, SEEDS, command=COMMAND, log=lambda message: None, progress=False)
    return out


@pytest.mark.slow  # about 35 s: two tiny pipelines (the module's first test makes them)
def test_each_seed_is_an_ordinary_run_folder_paired_with_the_others_and_reported_over_the_seeds(sequential, tmp_path):
    from reflectrl.pipeline.console import StageLines
    from reflectrl.pipeline.stage_functions import sft_stage

    out = sequential
    # Seed 0 trains what a single run with the preset's seed trains; seed 1 trains another adapter from the same rows.
    sft_stage(preset("tiny", "taxi"), "policy", out / "data" / "policy.jsonl", StageLines(), tmp_path / "single")
    single = (tmp_path / "single" / "adapter_model.safetensors").read_bytes()
    assert (out / "seed-0" / "sft-policy" / "adapter_model.safetensors").read_bytes() == single
    assert (out / "seed-1" / "sft-policy" / "adapter_model.safetensors").read_bytes() != single
    # Paired: the same data (copied byte for byte) and the same evaluation episodes for every seed.
    for name in ("policy.jsonl", "reflector.jsonl", DONE):
        assert (out / "seed-0" / "data" / name).read_bytes() == (out / "seed-1" / "data" / name).read_bytes() == (out / "data" / name).read_bytes()
    episodes = [
        [(e["seed"], e["options"]) for e in map(json.loads, (out / f"seed-{s}" / "eval-rl-reflect" / "dropoff" / "episodes.jsonl").read_text().splitlines())]
        for s in SEEDS
    ]
    assert episodes[0] == episodes[1]
    for seed in SEEDS:
        settings = json.loads((out / f"seed-{seed}" / "pipeline.json").read_text())
        assert settings["preset"]["training_seed"] == seed and settings["preset"]["seed"] == 0
        assert settings["preset"]["rl"]["seed"] == seed
        assert (out / f"seed-{seed}" / "report.md").read_text().startswith("# Reflect-RL comparison on taxi (preset tiny)")
    assert set(shared_stages()) == {"data", "eval-prompted", "eval-oracle", "eval-random"}

    report = (out / "report.md").read_text()
    assert report.startswith("# Reflect-RL comparison on taxi over 2 training seeds (preset tiny)\n\n**Over 2 training seeds: Reflect-RL ")
    assert "| setting | seed 0 | seed 1 | mean | 95% t-interval |" in report
    assert "| Reflect-RL minus SFT + RL, no reflection |" in report and "| SFT + RL, no reflection minus SFT only, no reflection |" in report
    assert "95% Student t-intervals over the seeds" in report and "[seed-1/report.md](seed-1/report.md)" in report
    # The tiny preset plays 4 seeded episodes, the same for every seed: the interval is about those, not the level.
    assert "an interval is about these episodes, not the whole level" in report and "training noise alone" not in report
    assert "| Oracle (upper bound) | 100.0% | 100.0% | 100.0% | none: trains nothing, one evaluation in every seed |" in report
    # Each reflective row's diagnostics, seed by seed, as each seed's evaluation measured them.
    measured = [json.loads((out / f"seed-{s}" / "eval-rl-reflect" / DONE).read_text())["summary"]["reflection_diagnostics"] for s in SEEDS]
    cells = " | ".join(f"{100 * d['reflector_accuracy']:.1f}%" for d in measured)
    assert "## Reflection diagnostics, seed by seed" in report and f"| Reflect-RL: reflection right | {cells} |" in report
    assert "| SFT reflective policy reading the teacher's reflections (ceiling): policy follows it |" in report
    assert (out / "learning_curves.png").read_bytes().startswith(b"\x89PNG")
    assert "| seed-1 |" in (out / "timing.md").read_text()

    # The folder is a multi-seed one: a single run refuses it, and a run with other settings too.
    with pytest.raises(ConfigMismatch, match="layout"):
        run_pipeline("taxi", preset("tiny", "taxi"), out, log=lambda message: None, progress=False)
    with pytest.raises(ConfigMismatch, match="preset.data.episodes"):
        run_seeds("taxi", replace(preset("tiny", "taxi"), data=replace(preset("tiny", "taxi").data, episodes=7)), out, SEEDS, log=lambda m: None)


def _kill_ray_worker_when(title: str, condition, killed: list[int], finished: threading.Event) -> None:
    """SIGKILL the Ray worker process running the task `title` once `condition()` holds (gives up when `finished` is
    set: a fixed time limit failed the test on a machine busy with other jobs, where the seed took minutes to get there)."""
    while not finished.is_set() and not condition():
        time.sleep(0.01)
    while not finished.is_set():
        for entry in Path("/proc").iterdir():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if command.startswith(f"ray::{title}"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
                return
        time.sleep(0.01)


@pytest.mark.slow  # about 40 s: two tiny pipelines as Ray tasks side by side, one of them killed and re-run
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the Ray worker through /proc")
def test_seeds_as_ray_tasks_give_the_same_adapters_and_reports_even_when_a_worker_is_lost(sequential, tmp_path):
    ray = pytest.importorskip("ray", reason="needs ray (pip install 'reflectrl[ray]')")
    from reflectrl.rollout.ray_session import start_ray

    out = tmp_path / "run"
    session = start_ray(None, num_cpus=2)
    killed: list[int] = []
    messages: list[str] = []
    finished = threading.Event()
    run_dir = out / "seed-1" / "rl-reflect" / "run"
    killer = threading.Thread(
        target=_kill_ray_worker_when,
        args=("reflectrl seed-1", lambda: run_dir.is_dir() and latest_checkpoint(run_dir) is not None, killed, finished), daemon=True,
    )
    try:
        killer.start()
        run_seeds("taxi", preset("tiny", "taxi"), out, SEEDS, ray_address="auto", command=COMMAND, log=messages.append, progress=False)
    finally:
        finished.set()
        session.stop()
    killer.join(timeout=1)
    assert not ray.is_initialized()
    assert killed, "the seed's worker was never killed"
    rl = json.loads((out / "seed-1" / "rl-reflect" / DONE).read_text())
    assert rl["resumed"] and rl["summary"]["resumed_from_iteration"] >= 1  # Ray re-ran the seed, which resumed
    # The tasks' messages reached the driver's log (through a Ray queue), the re-run's too.
    # (the "resuming after iteration" line is a detail, for the log file unless verbose; the stage's line says it)
    assert any(m.startswith("[seed-1] [rl-reflect] done in") and "(resumed)" in m for m in messages)
    for seed in SEEDS:
        assert any(m.startswith(f"[seed-{seed}] [eval-rl-reflect] done in") for m in messages) and f"[seed-{seed}] done" in messages
    assert _results(out) == _results(sequential)
    assert (out / "report.md").read_bytes() == (sequential / "report.md").read_bytes()  # the same command line too


@pytest.mark.slow  # about 40 s: two tiny pipelines in two processes side by side
def test_seeds_in_parallel_processes_give_the_same_adapters_and_reports(sequential, tmp_path):
    out = tmp_path / "run"
    messages: list[str] = []
    run_seeds("taxi", preset("tiny", "taxi"), out, SEEDS, parallel=2, command=COMMAND, log=messages.append, progress=False)
    assert any(m.startswith("2 seeds in 2 processes") for m in messages)
    for seed in SEEDS:  # each seed ran in its own process: its stages are recorded in its folder
        assert set(_stage_records(out / f"seed-{seed}")) == set(stage_names("core"))
    assert _results(out) == _results(sequential)
    for relative in ["report.md"] + [f"seed-{seed}/report.md" for seed in SEEDS]:  # the same command line too
        assert (out / relative).read_bytes() == (sequential / relative).read_bytes(), relative


@pytest.mark.slow  # about 40 s: a two-seed CLI run killed in its second seed, then finished
def test_a_killed_multi_seed_run_resumes_where_it_stopped(sequential, tmp_path):
    out = tmp_path / "run"
    run_dir = out / "seed-1" / "rl-reflect" / "run"
    kill_cli_when(
        ["pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--seeds", "2", "--quiet"], tmp_path,
        lambda: run_dir.is_dir() and latest_checkpoint(run_dir) is not None,
    )
    assert not (out / "seed-1" / "rl-reflect" / DONE).exists() and not (out / "report.md").exists()
    first_seed = _stage_records(out / "seed-0")
    assert set(first_seed) == set(stage_names("core"))

    messages: list[str] = []
    run_seeds("taxi", preset("tiny", "taxi"), out, SEEDS, command=COMMAND, log=messages.append, progress=False)
    assert _stage_records(out / "seed-0") == first_seed
    assert sum(m.startswith("[seed-0]") and "already done" in m for m in messages) == len(first_seed)
    assert any(m.startswith("[seed-1] [rl-reflect] done") and "(resumed)" in m for m in messages)
    assert _results(out) == _results(sequential)

    # A re-run adds nothing and rewrites the same report; more seeds can join later with the same settings.
    messages.clear()
    run_seeds("taxi", preset("tiny", "taxi"), out, SEEDS, command=COMMAND, log=messages.append, progress=False)
    assert not any(m.endswith("running") for m in messages)
    assert _results(out) == _results(sequential)


@pytest.mark.slow  # about 20 s: a parallel two-seed CLI run whose parent is killed alone
def test_seed_processes_end_when_the_parent_is_killed_alone(tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "run"
    workers: list = []

    def seeds_started() -> bool:
        # The parent's spawned seed workers, once both seed folders exist (their stages are under way).
        if not all((out / f"seed-{seed}" / "pipeline.json").exists() for seed in SEEDS):
            return False
        parent = next(c for c in psutil.Process(os.getpid()).children() if str(out) in " ".join(c.cmdline()))
        workers[:] = [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
        return len(workers) >= 2

    kill_cli_when(["pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--seeds", "2", "--parallel", "2", "--quiet"], tmp_path, seeds_started)
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"seed processes still running after their parent was killed: {[p.pid for p in alive]}"


def test_seed_lists_and_the_cli_refuse_bad_requests_without_traceback():
    assert parse_seeds("5") == [0, 1, 2, 3, 4] and parse_seeds("0,3,7") == [0, 3, 7] and parse_seeds("7,") == [7]
    for bad in ("0", "-1,2", "1,1", "a", ",", "2.5"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    runner = CliRunner()
    for args, message in [
        (["--seeds", "x"], "--seeds takes a count"),
        (["--parallel", "2", "--serve-reflector", "llamacpp"], "choose it or --serve-reflector"),
        (["--ray-address", "auto"], "give --seeds"),
        (["--seeds", "2", "--parallel", "2", "--ray-address", "auto"], "not both"),
    ]:
        result = runner.invoke(app, ["pipeline", "taxi", "--preset", "tiny", *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_t_intervals_use_students_quantiles():
    # Reference values of t(0.975, df) from any table.
    for df, expected in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    estimate = t_interval([0.5, 0.6, 0.7])
    assert estimate.mean == pytest.approx(0.6) and estimate.high - estimate.mean == pytest.approx(4.3027 * 0.1 / 3**0.5, abs=1e-4)
    assert t_interval([0.4]).low is None
