"""`reflectrl pipeline` with the tiny preset: the whole run, its report, skipping finished stages, kill and resume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from killed_runs import kill_cli_when
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.envs import lookup
from reflectrl.pipeline.console import LOG_FILE, StageLines
from reflectrl.pipeline.plan import evaluated_settings, rl_config, stage_names
from reflectrl.pipeline.presets import PRESETS, preset
from reflectrl.pipeline.run import run_pipeline
from reflectrl.pipeline.stages import DONE, ConfigMismatch
from reflectrl.trainers.checkpoint import latest_checkpoint

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def _done_records(out: Path) -> dict[str, bytes]:
    return {name: (out / name / DONE).read_bytes() for name in stage_names() if (out / name / DONE).exists()}


def _report_rows(report: str) -> dict[str, list[str]]:
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1].endswith("%"):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """A tiny pipeline run from start to end without interruption."""
    out = tmp_path_factory.mktemp("straight") / "run"
    run_pipeline("taxi", preset("tiny", "taxi"), out, log=lambda message: None, progress=False)
    return out


def _results(out: Path) -> dict[str, bytes]:
    """Every final adapter and the report, less its command line (which names the run folder)."""
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.glob("**/adapter_model.safetensors")) if "checkpoints" not in p.relative_to(out).parts
    }
    report = (out / "report.md").read_text(encoding="utf-8").splitlines()
    files["report.md"] = "\n".join(line for line in report if not line.startswith("- **command**")).encode()
    return files


def _kill_when(out: Path, tmp_path: Path, condition) -> None:
    """Run the tiny pipeline's CLI in a child process and SIGKILL it as soon as `condition()` holds."""
    kill_cli_when(["pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--quiet"], tmp_path, condition)


@pytest.mark.slow  # about 20 s: every stage of the pipeline with the tiny model
def test_tiny_pipeline_writes_every_row_and_the_plots_then_skips_everything(tmp_path):
    out = tmp_path / "run"
    messages: list[str] = []
    # CPU time, not wall time: on a machine shared with other jobs the wall clock measures them too.
    started = time.process_time()
    result = run_pipeline(
        "taxi", preset("tiny", "taxi"), out, command="reflectrl pipeline taxi --preset tiny --rows all", log=messages.append,
        progress=False, rows="all",
    )
    cpu_seconds = time.process_time() - started
    assert cpu_seconds < 180, f"the tiny pipeline took {cpu_seconds:.0f} CPU seconds"

    report = result.report.read_text()
    rows = _report_rows(report)
    labels = [s.label.replace("{model}", "tiny-random") for s in evaluated_settings("all")]
    assert set(labels) <= set(rows), f"missing rows: {set(labels) - set(rows)}"
    assert rows["Oracle (upper bound)"][0] == "100.0%"  # optimal drop-offs take at most 9 steps
    assert all(cells[2] == "4" for cells in rows.values())  # episodes per row
    for name in ("success.png", "learning_curves.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    assert "reflectrl pipeline taxi --preset tiny" in report and "## Stages" in report
    assert re.search(r"^\| data \| \d+ teacher episodes \(the teacher won \d+%\); \d+ reflector rows", report, re.M)
    assert report.splitlines()[2] == f"**{result.verdict}**" and result.verdict.startswith("Reflect-RL ")
    assert "## Each RL row against its SFT start" in report and "McNemar" in report
    # The episode page beside the report opens on Reflect-RL next to its SFT start, every evaluation offered.
    assert "[view.html](view.html)" in report
    page = json.loads((out / "view.html").read_text().split('id="reflectrl-data">', 1)[1].split("</script>", 1)[0])
    names = [row["name"] for row in page["rows"]]
    assert len(names) == len(evaluated_settings("all")) and all(name.endswith("/dropoff") for name in names)
    assert (names[page["left"]], names[page["right"]]) == ("eval-rl-reflect/dropoff", "eval-sft-reflect/dropoff")
    timing = (out / "timing.md").read_text()
    assert "| sft-policy |" in timing and "torch threads" in timing
    assert "torch thread |" not in timing  # one process: every stage had the invocation's threads, no note
    assert "- **CPU**: " in timing and "- **packages**: transformers " in timing
    assert set(_done_records(out)) == set(stage_names())
    for name in ("rl-reflect", "rl-reflect-positive", "rl-plain"):
        assert (out / name / "final" / "adapter_config.json").is_file()
        assert len((out / name / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    evaluated = json.loads((out / "eval-rl-reflect" / "dropoff" / "eval.json").read_text())
    assert evaluated["episodes"][0]["seed"] == 2_000_000
    # Reflect-RL meets the first states of the SFT-only row's episodes again: same reflector, same seeds.
    reflections = json.loads((out / "eval-rl-reflect" / DONE).read_text())["summary"]["reflections"]
    assert reflections["from_cache"] >= 4

    before = _done_records(out)
    messages.clear()
    again = run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False, rows="all")
    assert _done_records(out) == before
    assert sum("already done" in m for m in messages) == len(stage_names())
    assert [r.summary for r in again.rows] == [r.summary for r in result.rows]

    # The default rows are a subset of 'all': nothing to run, and the report drops the ablation row.
    core = run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False)
    assert "Reflect-RL, no negative examples" not in [r.setting for r in core.rows] and len(core.rows) == len(result.rows) - 1
    assert _done_records(out) == before
    with pytest.raises(ConfigMismatch, match="different configuration"):
        run_pipeline("taxi", replace(preset("tiny", "taxi"), seed=1), out, log=messages.append, progress=False)


@pytest.mark.slow  # about 30 s: the tiny pipeline with two stages at a time in worker processes
def test_stages_in_parallel_processes_give_the_same_adapters_and_report_as_a_straight_run(tmp_path, straight):
    out = tmp_path / "run"
    messages: list[str] = []
    result = run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False, parallel=2)
    assert messages[0] == f"{len(stage_names('core'))} stages to run, at most 2 at once in local processes, 1 torch thread each"
    assert set(result.records) == set(stage_names("core")) and all((out / name / DONE).is_file() for name in result.records)
    assert _results(out) == _results(straight)
    assert all(record["torch_threads"] == 1 for record in result.records.values())  # what timing.md's notes read
    messages.clear()  # finished: a re-run starts nothing
    run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False, parallel=2)
    assert messages == ["0 stages to run, at most 2 at once in local processes, 1 torch thread each"]
    with pytest.raises(ValueError, match="choose parallel or serve_reflector"):
        run_pipeline("taxi", preset("tiny", "taxi"), out, progress=False, parallel=2, serve_reflector="llamacpp")


def test_timing_notes_name_the_threads_of_a_stage_that_ran_with_fewer_than_the_invocation():
    from reflectrl.pipeline.report import _stage_seconds

    records = {
        "sft-policy": {"seconds": 10.0, "resumed": True, "torch_threads": 1},  # a --parallel worker's share
        "rl-plain": {"seconds": 20.0, "resumed": False, "torch_threads": 2},
        "eval-oracle": {"seconds": 1.0, "resumed": False},  # written before the threads were kept
    }
    assert _stage_seconds(records, threads=2) == [
        ("sft-policy", 10.0, "resumed after an interruption; 1 torch thread"), ("rl-plain", 20.0, ""), ("eval-oracle", 1.0, ""),
    ]


@pytest.mark.slow  # about 25 s: a pipeline process killed in its first RL stage, then finished
def test_killed_pipeline_resumes_without_redoing_finished_stages(tmp_path, straight):
    out = tmp_path / "run"
    run_dir = out / "rl-reflect" / "run"
    # Kill in the middle of the first RL run: after its first checkpoint, before it is done.
    _kill_when(out, tmp_path, lambda: run_dir.exists() and latest_checkpoint(run_dir) is not None)
    assert not (out / "rl-reflect" / DONE).exists(), "the RL stage finished before the kill; nothing to resume"
    finished = _done_records(out)
    assert set(finished) == {"data", "sft-reflector", "sft-policy", "sft-plain"}
    adapter = out / "sft-policy" / "adapter_model.safetensors"
    adapter_time = adapter.stat().st_mtime_ns

    messages: list[str] = []
    result = run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False)
    assert {name: (out / name / DONE).read_bytes() for name in finished} == finished
    assert adapter.stat().st_mtime_ns == adapter_time
    for name in finished:
        assert any(m.startswith(f"[{name}] already done") for m in messages)
        assert not any(m.startswith((f"[{name}] running", f"[{name}] resuming")) for m in messages)
    assert any(m.startswith("[rl-reflect] done") and "(resumed)" in m for m in messages)
    rl = json.loads((out / "rl-reflect" / DONE).read_text())
    assert rl["resumed"] and rl["summary"]["resumed_from_iteration"] >= 1 and rl["summary"]["iterations"] == 3
    metrics = (out / "rl-reflect" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in metrics] == [1, 2, 3]
    assert "resumed after an interruption" in (out / "timing.md").read_text()
    assert _results(out) == _results(straight)


@pytest.mark.slow  # about 30 s: a pipeline process killed inside an SFT stage, then finished
def test_a_pipeline_killed_inside_an_sft_stage_ends_like_a_straight_run(tmp_path, straight):
    out = tmp_path / "run"
    _kill_when(out, tmp_path, lambda: (out / "sft-policy" / "checkpoints" / "checkpoint-1").is_dir())
    assert not (out / "sft-policy" / DONE).exists(), "the SFT stage finished before the kill; nothing to resume"
    messages: list[str] = []
    run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False)
    assert any(m.startswith("[sft-policy] done") and "(resumed)" in m for m in messages)
    assert _results(out) == _results(straight)


@pytest.mark.slow  # about 30 s: the tiny pipeline again, from the command line in a child process
def test_a_second_straight_run_gives_the_same_results_and_prints_one_line_per_stage(tmp_path, straight):
    out = tmp_path / "again"
    command = [sys.executable, "-m", "reflectrl.cli.main", "pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert _results(out) == _results(straight)

    # The libraries print nothing of their own: no progress bar (tqdm's rate "it/s]"), no logged dict of the
    # Trainer, none of the known warnings; a child process, because pytest would record the warnings itself.
    console = done.stdout + done.stderr
    for noise in ("it/s]", "examples/s]", "{'train_runtime'", "FutureWarning", "mtime may not be reliable"):
        assert noise not in console, console
    stage_lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert [line[1:].split("]")[0] for line in stage_lines] == stage_names("core"), done.stdout
    assert re.search(r"^\[data\] done in \d+ s: 6/6 episodes, .+ rows, the teacher won \d+%$", done.stdout, re.M)
    assert re.search(r"^\[sft-policy\] done in \d+ s: 2/2 steps, .*loss \d+\.\d+, held-out label accuracy \d+%$", done.stdout, re.M)
    assert re.search(r"^\[rl-reflect\] done in \d+ s: 3/3 iterations, .*training success \d+%$", done.stdout, re.M)
    assert re.search(r"^\[eval-oracle\] done in \d+ s: 4/4 episodes, .*success 4/4$", done.stdout, re.M)
    # The log file has every stage line and what the console leaves out.
    log = (out / LOG_FILE).read_text()
    assert all(line in log for line in stage_lines)
    assert "[rl-reflect] iteration 3/3: training success" in log and "[sft-policy] step 2/2: " in log


def test_pipeline_cli_refuses_bad_requests_without_traceback(tmp_path):
    runner = CliRunner()
    for args, message in [
        (["pipeline", "nowhere"], "unknown environment"),
        (["pipeline", "taxi", "--preset", "huge"], "unknown preset"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(app, ["pipeline", "taxi", "--preset", "tiny", "--out", str(target), "--quiet"])
    assert result.exit_code == 2 and "not a folder" in result.output and "Traceback" not in result.output


def test_alfworld_game_set_from_the_environment_is_part_of_the_run_settings(tmp_path, monkeypatch):
    import reflectrl.pipeline.run as pipeline_run

    seen = {}

    def capture(env, settings, folder, command, **_):
        seen.update(env=env, settings=settings, command=command)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(pipeline_run, "run_pipeline", capture)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my games" / "json_2.1.1").mkdir(parents=True)
    monkeypatch.setenv("ALFWORLD_DATA", "my games")
    result = CliRunner().invoke(app, ["pipeline", "alfworld", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2 and "stopped by the test" in result.output
    assert seen["settings"].env_kwargs["data_dir"] == "my games"
    assert seen["command"].startswith("ALFWORLD_DATA='my games' reflectrl pipeline alfworld --preset cpu")


def test_presets_cover_every_environment_and_keep_the_paper_settings_on_gpu():
    for env in ("taxi", "corridor", "autoexplore", "alfworld"):
        for name in PRESETS:
            chosen = preset(name, env)
            assert chosen.name == name and chosen.eval_levels
            rl_config(env, chosen)  # RLConfig rejects inconsistent settings (e.g. grpo groups)
            # Budgets are steps and iterations: a time limit would make the table depend on the machine.
            assert chosen.sft.get("max_minutes") is None and chosen.rl.max_minutes is None, (env, name)
    gpu = preset("gpu", "taxi")
    assert (gpu.rl.lr, gpu.rl.grad_clip, gpu.rl.ppo_clip, gpu.rl.epochs) == (2e-4, 0.3, 0.1, 3)
    assert gpu.rl.levels == ("pickup", "dropoff") and gpu.level == "dropoff"
    assert preset("cpu", "taxi").model == "smollm2-135m" and preset("cpu", "taxi").level == "dropoff"
    assert preset("gpu", "autoexplore").eval_levels == ("depth1", "depth2")
    assert rl_config("taxi", preset("cpu", "taxi")).algo == "grpo"


def test_a_preset_with_label_after_menus_writes_its_data_that_way(tmp_path):
    from reflectrl.datagen import load_rows
    from reflectrl.pipeline.stage_functions import data_stage

    chosen = replace(preset("tiny", "taxi"), label_after=True)
    data_stage("taxi", chosen, StageLines(), tmp_path / "data")
    rows = load_rows(tmp_path / "data" / "policy.jsonl")
    assert rows and all(r["label_after"] for r in rows)
    assert all(f"{r['oracle_action']} ({r['completion']})" in r["prompt"] for r in rows)


def test_paired_comparison_pools_the_levels_then_compares_each_level(tmp_path):
    from reflectrl.pipeline.report import paired_comparisons

    # Depth 1: RL wins two episodes its start lost; depth 2: RL loses one. Pooled, the gain hides the loss.
    wins = {
        "sft-reflect": {"depth1": [0, 0, 1], "depth2": [1, 1]}, "rl-reflect": {"depth1": [1, 1, 1], "depth2": [0, 1]},
        "sft-plain": {"depth1": [0, 0, 0], "depth2": [0, 0]}, "rl-plain": {"depth1": [0, 0, 0], "depth2": [0, 0]},
    }
    for key, levels in wins.items():
        for level, outcomes in levels.items():
            folder = tmp_path / f"eval-{key}" / level
            folder.mkdir(parents=True)
            episodes = [{"seed": 100 + i, "level": level, "success": bool(s), "return": 20.0 if s else -5.0} for i, s in enumerate(outcomes)]
            (folder / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
            (folder / "eval.json").write_text(json.dumps({"summary": {"exact": False}}))
    chosen = preset("cpu", "autoexplore")
    assert chosen.eval_levels == ("depth1", "depth2")
    comparisons = {after: result for after, _, result in paired_comparisons(lookup("autoexplore"), chosen, tmp_path)}
    assert list(comparisons) == [
        "Reflect-RL", "SFT + RL, no reflection", "Reflect-RL, level depth1", "SFT + RL, no reflection, level depth1",
        "Reflect-RL, level depth2", "SFT + RL, no reflection, level depth2",
    ]
    assert (comparisons["Reflect-RL"]["won"], comparisons["Reflect-RL"]["lost"], comparisons["Reflect-RL"]["episodes"]) == (2, 1, 5)
    assert (comparisons["Reflect-RL, level depth1"]["won"], comparisons["Reflect-RL, level depth1"]["lost"]) == (2, 0)
    assert (comparisons["Reflect-RL, level depth2"]["won"], comparisons["Reflect-RL, level depth2"]["lost"]) == (0, 1)
    assert comparisons["Reflect-RL, level depth2"]["return_difference"] == pytest.approx(-12.5)
    # One evaluated level: the pooled comparison only.
    assert len(paired_comparisons(lookup("autoexplore"), replace(chosen, eval=replace(chosen.eval, levels=("depth1",))), tmp_path)) == 2


def test_cpu_description_names_the_model_and_the_kernel_instruction_sets():
    from reflectrl.pipeline.report import cpu_description

    cpuinfo = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nmodel name\t: Some CPU @ 2.0GHz\n"
    assert cpu_description(cpuinfo) == "Some CPU @ 2.0GHz; avx2 avx512f avx512_bf16"
    assert cpu_description("model name : Old CPU\nflags : fpu sse2\n") == "Old CPU; no AVX2"
    assert cpu_description().strip()  # this machine's, whatever it is


@pytest.mark.slow  # a few seconds: the finished straight run, copied and re-run
def test_a_run_folder_from_an_older_version_resumes_and_a_refusal_names_the_changed_settings(tmp_path, straight):
    import shutil

    out = tmp_path / "older"
    shutil.copytree(straight, out)
    saved = json.loads((out / "pipeline.json").read_text())
    # Written before these fields existed: they count as their defaults, which is what the tiny preset keeps.
    del saved["preset"]["data"]["decoy_prob"], saved["preset"]["label_after"]
    (out / "pipeline.json").write_text(json.dumps(saved))
    messages: list[str] = []
    run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False)
    assert sum("already done" in m for m in messages) == len(stage_names("core"))
    with pytest.raises(ConfigMismatch, match=r"preset\.label_after differ"):
        run_pipeline("taxi", replace(preset("tiny", "taxi"), label_after=True), out, log=messages.append, progress=False)
    with pytest.raises(ConfigMismatch, match=r": preset\.rl\.seed, preset\.seed differ"):
        run_pipeline("taxi", replace(preset("tiny", "taxi"), seed=1), out, log=messages.append, progress=False)
    # A folder without bf16 (every folder made at the device's default precision) ran at the default: None.
    assert "bf16" not in saved["preset"]
    with pytest.raises(ConfigMismatch, match=r": preset\.bf16 differ"):
        run_pipeline("taxi", replace(preset("tiny", "taxi"), bf16=True), out, log=messages.append, progress=False)


def test_a_run_at_the_default_precision_keeps_its_settings_and_report_and_names_float32_in_its_timing(straight):
    for stage in ("sft-reflector", "sft-policy", "sft-plain"):
        assert json.loads((straight / stage / "warmup_config.json").read_text())["bf16"] is None, stage
    assert "bf16" not in json.loads((straight / "pipeline.json").read_text())["preset"]
    report = (straight / "report.md").read_text()
    assert "precision" not in report and '"bf16"' not in report
    assert "device cpu (float32)" in (straight / "timing.md").read_text()


def test_the_rl_stage_closes_its_run_when_it_ends_and_when_it_fails(tmp_path, monkeypatch):
    import reflectrl.trainers.recipe as recipe
    from reflectrl.pipeline.stage_functions import local_reflector, rl_stage

    closed: list[bool] = []

    class Trainer:
        iteration, stopped_by_time_limit = 0, False

        def __init__(self, fail: bool):
            self.fail = fail

        def resume(self) -> int:
            return 0

        def train(self) -> None:
            if self.fail:
                raise RuntimeError("training broke")

        def save_final(self, folder: Path) -> None:
            folder.mkdir(parents=True)

    class Run:  # what build_rl_run returns: the trainer, and engines (Ray actors, a Ray session) to close
        def __init__(self, fail: bool):
            self.trainer = Trainer(fail)

        def close(self) -> None:
            closed.append(self.trainer.fail)

    for fail in (False, True):
        monkeypatch.setattr(recipe, "build_rl_run", lambda *args, fail=fail, **kwargs: Run(fail))
        stage = partial(rl_stage, "taxi", preset("tiny", "taxi"), tmp_path / "policy", None, local_reflector, StageLines())
        if fail:
            with pytest.raises(RuntimeError, match="training broke"):
                stage(tmp_path / "failing")
        else:
            assert stage(tmp_path / "ending")["iterations"] == 0
    assert closed == [False, True]
