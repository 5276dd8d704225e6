"""The CLI's shared behaviour: light commands start without torch, user errors end in one line and status 2,
and `reflectrl eval --constrained` adds the label-restricted prompted baseline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app

runner = CliRunner()

HEAVY_MODULES = ("torch", "transformers", "peft")


@pytest.mark.parametrize("args", [["--help"], ["envs"], ["play", "taxi", "--seed", "0"], ["gen-data", "--help"], ["plot", "--help"]])
def test_light_commands_do_not_import_torch(args):
    script = (
        "import json, sys\n"
        "from reflectrl.cli.main import app\n"
        "try:\n"
        "    app(sys.argv[1:], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *args], input="", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    "args",
    [["play", "chess"], ["baselines", "chess"], ["pipeline", "chess"], ["eval", "chess", "--agent", "oracle"]],
)
def test_an_unknown_environment_is_one_line_and_status_2(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Error: unknown environment 'chess'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "extra",
    [["--agent", "oracle"], ["--agent", "prompted", "--model", "tiny-random", "--base-url", "http://127.0.0.1:9/v1"]],
)
def test_constrained_needs_a_local_prompted_model(extra):
    result = runner.invoke(app, ["eval", "taxi", "--episodes", "1", "--constrained", *extra])
    assert result.exit_code == 2, result.output
    assert "--constrained goes with --agent prompted" in result.output


def test_constrained_prompted_baseline_never_answers_invalid(tmp_path):
    args = ["eval", "corridor", "--agent", "prompted", "--model", "tiny-random", "--episodes", "2",
            "--level", "short", "--horizon", "3", "--device", "cpu", "--quiet"]
    free = runner.invoke(app, [*args, "--out", str(tmp_path / "free")])
    constrained = runner.invoke(app, [*args, "--constrained", "--out", str(tmp_path / "constrained")])
    assert free.exit_code == 0 and constrained.exit_code == 0, free.output + constrained.output
    free_result = json.loads((tmp_path / "free" / "eval.json").read_text())
    constrained_result = json.loads((tmp_path / "constrained" / "eval.json").read_text())
    # the tiny random model answers word pieces (all invalid); restricted to labels it always picks an action
    assert free_result["summary"]["invalid_rate"] == 1.0
    assert constrained_result["summary"]["invalid_rate"] == 0.0
    assert constrained_result["agent"] == "prompted tiny-random, label-restricted"


def test_plot_draws_the_runs_metrics(tmp_path):
    for name, rates in (("rl-plain", [0.1, 0.3, 0.5]), ("rl-reflect", [0.2, 0.4])):
        run = tmp_path / name
        run.mkdir()
        lines = [json.dumps({"iteration": i + 1, "train/success": r}) for i, r in enumerate(rates)]
        lines.append('{"iteration": 3, "train/succ')  # a line cut by a kill is skipped
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "plots" / "curves.png"
    result = runner.invoke(app, ["plot", str(tmp_path / "rl-plain"), f"RL={tmp_path / 'rl-reflect'}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 curves" in result.output and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = runner.invoke(app, ["plot", str(tmp_path / "nothing"), "--out", str(out)])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    no_metric = runner.invoke(app, ["plot", str(tmp_path / "rl-plain"), "--metric", "loss/value", "--out", str(out)])
    assert no_metric.exit_code == 2 and "none of the runs" in no_metric.output
