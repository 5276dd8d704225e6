import subprocess
import sys

from typer.testing import CliRunner

from reflectrl.cli.main import app


def run_cli(*args, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "reflectrl.cli.main", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_play_with_piped_input_rejects_bad_labels_and_exits_cleanly():
    result = run_cli("play", "taxi", "--seed", "0", stdin="0\n9\nx\n1\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Unknown label '9'" in out and "Unknown label 'x'" in out
    assert out.count("> move") == 2  # labels 0 and 1 were played
    assert "Input ended" in out
    assert "Traceback" not in result.stderr


def test_play_to_the_end_reports_the_outcome():
    runner = CliRunner()
    # seed 0, level dropoff: follow the oracle shown on screen until the episode ends
    result = runner.invoke(app, ["play", "taxi", "--seed", "0", "--level", "dropoff", "--show-oracle"], input="")
    assert result.exit_code == 0
    first = result.output.split("(oracle: ")[1].split(".")[0]
    labels = [first]
    for _ in range(20):
        result = runner.invoke(
            app, ["play", "taxi", "--seed", "0", "--level", "dropoff", "--show-oracle"], input="\n".join(labels) + "\n"
        )
        if "Episode over" in result.output:
            break
        labels.append(result.output.rsplit("(oracle: ", 1)[1].split(".")[0])
    assert "Episode over" in result.output and "success" in result.output


def test_unknown_environment_and_level_give_clear_errors():
    bad_env = run_cli("play", "chess")
    assert bad_env.returncode == 2 and "unknown environment 'chess'" in bad_env.stderr
    bad_level = run_cli("play", "taxi", "--level", "expert")
    assert bad_level.returncode == 2 and "unknown level 'expert'" in bad_level.stderr
    assert "Traceback" not in bad_env.stderr + bad_level.stderr


def test_envs_lists_taxi_with_levels():
    result = CliRunner().invoke(app, ["envs"])
    assert result.exit_code == 0
    assert "reflectrl/DangerousTaxi-v0" in result.output and "pickup, dropoff, full" in result.output
