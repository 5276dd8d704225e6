"""`reflectrl play alfworld`, `reflectrl alfworld make-games` and `check`, and imports without the engine."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner
from alfworld_games import mini_data_set
from reflectrl.cli.main import app


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_data_set(tmp_path_factory)


def run_cli(*args, stdin="", env=None):
    return subprocess.run(
        [sys.executable, "-m", "reflectrl.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_play_alfworld_on_valid_unseen(root):
    result = run_cli("play", "alfworld", "--split", "valid_unseen", "--index", "0", "--show-oracle", stdin="0\nzz\n", env={"ALFWORLD_DATA": str(root)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Task: put " in out and "Around you: " in out
    assert "0. go to " in out and "(oracle: " in out
    assert "> go to " in out and "Unknown label 'zz'" in out and "Input ended" in out
    assert "Traceback" not in result.stderr


def invoke(*args):
    """In-process run (no interpreter start-up); the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(app, list(args))


def test_make_games_prints_counts_per_split_and_type_and_rejects_bad_options(tmp_path):
    result = invoke("alfworld", "make-games", "--out", str(tmp_path / "games"), "--n", "3", "--seed", "2", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "pick_and_place_simple" in line]
    assert len(lines) == 1 and [c.strip() for c in lines[0].split("│") if c.strip()][1:] == ["1", "1", "1", "3"]
    assert "train" in result.stdout and "valid_unseen" in result.stdout and "3 new" in result.stdout
    assert not (tmp_path / "games" / ".reflectrl-tmp").exists()
    bad = invoke("alfworld", "make-games", "--out", str(tmp_path / "x"), "--types", "pick_and_fly")
    assert bad.exit_code == 2 and "unknown ALFWorld task type(s) 'pick_and_fly'" in bad.stderr
    (tmp_path / "file").write_text("")
    not_dir = invoke("alfworld", "make-games", "--out", str(tmp_path / "file"))
    assert not_dir.exit_code == 2 and "is not a folder" in not_dir.stderr
    assert bad.exception is None or isinstance(bad.exception, SystemExit)


def test_check_reports_the_three_players(root):
    result = invoke("alfworld", "check", "--data-dir", str(root), "--split", "valid_seen", "--games", "1")
    assert result.exit_code == 0, result.output
    assert "oracle" in result.stdout and "1/1" in result.stdout and "oracle after 3 random steps" in result.stdout
    missing = invoke("alfworld", "check", "--data-dir", str(root / "nowhere"))
    assert missing.exit_code == 2 and "is not a folder" in missing.stderr


def test_reflectrl_imports_without_loading_the_engine():
    code = (
        "import sys, reflectrl, reflectrl.envs.alfworld, reflectrl.cli.main\n"
        "from reflectrl.envs import lookup\n"
        "assert lookup('alfworld').env_class().levels == ('easy', 'medium', 'full')\n"
        "assert not {'alfworld', 'textworld', 'fast_downward'} & set(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
