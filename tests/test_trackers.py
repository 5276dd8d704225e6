"""``--report-to``: tiny RL and SFT runs log their settings and metrics to Weights & Biases (offline) and MLflow
(a SQLite store), and the tests read them back; names are checked before anything loads; a resume may report
elsewhere. A tracker that is not installed skips its checks, saying which."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.trainers.trackers import TrackerError, flat_settings, parse_report_to

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()

INSTALLED = [name for name in ("wandb", "mlflow") if importlib.util.find_spec(name) is not None]
needs_wandb = pytest.mark.skipif("wandb" not in INSTALLED, reason="wandb is not installed (pip install 'reflectrl[trackers]')")
needs_mlflow = pytest.mark.skipif("mlflow" not in INSTALLED, reason="mlflow is not installed (pip install 'reflectrl[trackers]')")

TRAIN = [
    "train", "corridor", "--policy", "tiny-random", "--no-reflection", "--episodes-per-iter", "2", "--eval-every", "2",
    "--eval-episodes", "2", "--horizon", "4", "--checkpoint-every", "1", "--quiet", "--threads", "1",
]


@contextlib.contextmanager
def _trackers_in(folder: Path) -> Iterator[str]:
    """W&B offline and MLflow in a SQLite file, both under `folder`, while the block runs; yields the MLflow URI."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {
            "WANDB_MODE": "offline", "WANDB_DIR": str(folder), "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
            "MLFLOW_TRACKING_URI": uri,
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
            monkeypatch.delenv(name, raising=False)
        try:
            yield uri
        finally:
            if "wandb" in INSTALLED:
                import wandb

                wandb.teardown()  # wandb reads its environment once per process: the next block's WANDB_DIR must count


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _numbers(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


# ------------------------------------------------------------------ reading the trackers' files back
def _wandb_runs(folder: Path) -> list[dict]:
    """Every offline W&B run under `folder`: its name, project, config and history rows by step.

    wandb ships no reader of its offline run files, so this reads their record log (a 7-byte header,
    then 32 KiB blocks of records, each a checksum, a length, a kind and a piece of one protobuf Record).
    """
    from wandb.proto import wandb_internal_pb2

    runs = []
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        data = path.read_bytes()
        assert data[:4] == b":W&B", path
        run: dict = {"config": {}, "history": {}}
        position, pieces = 7, b""
        while position + 7 <= len(data):
            left = 32768 - position % 32768
            _, length, kind = struct.unpack("<IHB", data[position : position + 7])
            if left < 7 or (kind == 0 and length == 0):  # a block's zero padding
                position += left
                continue
            pieces += data[position + 7 : position + 7 + length]
            position += 7 + length
            if kind in (1, 4):  # a whole record, or the last piece of one
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pieces)
                pieces = b""
                _take(run, record)
        runs.append(run)
    return runs


def _the_wandb_run(folder: Path, name: str) -> dict:
    """The one W&B run under `folder`, checked to be `name` in the project reflectrl."""
    (run,) = _wandb_runs(folder)
    assert run["name"] == name and run["project"] == "reflectrl"
    return run


def _take(run: dict, record) -> None:
    def items(entries):
        return {entry.key or "/".join(entry.nested_key): json.loads(entry.value_json) for entry in entries}

    kind = record.WhichOneof("record_type")
    if kind == "run":
        run.update(name=record.run.display_name, project=record.run.project)
        run["config"].update(items(record.run.config.update))
    elif kind == "config":
        run["config"].update(items(record.config.update))
    elif kind == "history":
        row = items(record.history.item)
        run["history"][row["_step"]] = row


def _mlflow_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("reflectrl")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return [(run, client) for run in runs]


def _mlflow_history(client, run, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}


# ------------------------------------------------------------------------------ names and settings
def test_report_to_names_are_checked_and_kept_in_order():
    assert parse_report_to("tensorboard") == ("tensorboard",)
    assert parse_report_to(" none ") == ()
    with pytest.raises(TrackerError, match="unknown tracker comet.*tensorboard, wandb, mlflow, trackio"):
        parse_report_to("tensorboard,comet")
    with pytest.raises(TrackerError, match="none means no tracker; it does not go with tensorboard"):
        parse_report_to("none,tensorboard")
    for name in INSTALLED:
        assert parse_report_to(f"{name}, tensorboard,{name}") == (name, "tensorboard")


def test_a_tracker_that_is_not_installed_names_what_to_install(monkeypatch, tmp_path):
    import accelerate.tracking
    from accelerate.utils import LoggerType

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [LoggerType.TENSORBOARD])
    with pytest.raises(TrackerError, match=r"wandb, mlflow: not installed; install it with pip install 'reflectrl\[trackers\]'"):
        parse_report_to("wandb,mlflow")
    with pytest.raises(TrackerError, match="pip install trackio"):
        parse_report_to("trackio")
    # The commands refuse before loading a model or touching --out.
    for command in (TRAIN + ["--out", str(tmp_path / "run")], ["sft", "--role", "plain", "--data", "x.jsonl", "--out", str(tmp_path / "sft")]):
        result = runner.invoke(app, [*command, "--report-to", "wandb"])
        assert result.exit_code == 2 and "Error: --report-to wandb: not installed" in result.output, result.output
        assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def test_settings_become_one_level_of_scalars():
    flat = flat_settings({"env": "corridor", "reflector": None, "config": {"lr": 2e-4, "levels": ["short"], "extra": {}}})
    assert flat == {"env": "corridor", "reflector": None, "config/lr": 2e-4, "config/levels": '["short"]', "config/extra": "{}"}


# ----------------------------------------------------------------------------------- an RL run
@pytest.fixture(scope="module")
def rl_run(tmp_path_factory):
    """A tiny `reflectrl train` run reporting to every installed tracker; (run folder, MLflow URI, tracker folder)."""
    if not INSTALLED:
        pytest.skip("neither wandb nor mlflow is installed (pip install 'reflectrl[trackers]')")
    folder = tmp_path_factory.mktemp("rl-trackers")
    with _trackers_in(folder) as uri:
        out = folder / "tiny-rl"
        result = runner.invoke(app, TRAIN + ["--iters", "2", "--out", str(out), "--report-to", ",".join(["tensorboard", *INSTALLED])])
    assert result.exit_code == 0, result.output
    return out, uri, folder


@pytest.mark.slow
@needs_wandb
def test_an_rl_run_logs_its_settings_and_every_iteration_to_wandb(rl_run):
    out, _, folder = rl_run
    run = _the_wandb_run(folder, "tiny-rl")
    settings = json.loads((out / "run.json").read_text())
    assert run["config"]["env"] == "corridor" and run["config"]["policy"] == "tiny-random"
    assert run["config"]["config/lr"] == settings["config"]["lr"] and run["config"]["config/algo"] == settings["config"]["algo"]
    records = _metrics(out)
    assert [r["iteration"] for r in records] == [0, 1, 2] == sorted(run["history"])
    for record in records:
        logged = run["history"][record["iteration"]]
        assert {k: logged[k] for k in _numbers(record)} == pytest.approx(_numbers(record))
        assert "level" not in logged  # text stays in metrics.jsonl


@pytest.mark.slow
@needs_mlflow
def test_an_rl_run_logs_its_settings_and_every_iteration_to_mlflow(rl_run):
    out, uri, _ = rl_run
    ((run, client),) = _mlflow_runs(uri)
    assert run.info.run_name == "tiny-rl" and run.info.status == "FINISHED"
    settings = json.loads((out / "run.json").read_text())
    assert run.data.params["env"] == "corridor" and run.data.params["policy"] == "tiny-random"
    assert float(run.data.params["config/lr"]) == settings["config"]["lr"]
    records = _metrics(out)
    for key in ("train/success", "train/return", "loss/total", "val/success", "episodes"):
        expected = {r["iteration"]: r[key] for r in records if key in r}
        assert expected and _mlflow_history(client, run, key) == pytest.approx(expected), key
    assert (out / "tensorboard").is_dir()  # the other trackers come on top of TensorBoard, not instead of it


@pytest.mark.slow
@needs_mlflow
def test_a_resumed_run_may_report_elsewhere_and_opens_a_new_tracker_run(tmp_path):
    out = tmp_path / "run"
    with _trackers_in(tmp_path) as uri:
        first = runner.invoke(app, TRAIN + ["--iters", "1", "--out", str(out), "--report-to", "none"])
        assert first.exit_code == 0, first.output
        assert (out / "metrics.jsonl").is_file() and not (out / "tensorboard").exists()
        resumed = runner.invoke(app, TRAIN + ["--iters", "2", "--out", str(out), "--resume", "--report-to", "mlflow"])
        assert resumed.exit_code == 0, resumed.output
    ((run, client),) = _mlflow_runs(uri)
    # Iterations before the checkpoint were reported (nowhere) by the first attempt; this run has the rest.
    assert _mlflow_history(client, run, "train/return") == pytest.approx({2: _metrics(out)[-1]["train/return"]})


# ---------------------------------------------------------------------------------- an SFT run
@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, taxi_reflector_data):
    """A tiny policy SFT run (labels evaluated at step 2 and at the end) reporting to every installed tracker."""
    from reflectrl.trainers.sft import run_warmup
    from reflectrl.trainers.sft_config import SFTConfig

    if not INSTALLED:
        pytest.skip("neither wandb nor mlflow is installed (pip install 'reflectrl[trackers]')")
    folder = tmp_path_factory.mktemp("sft-trackers")
    config = SFTConfig(
        role="policy", data=str(taxi_reflector_data / "policy.jsonl"), out=str(folder / "sft-policy"), model="tiny-random",
        max_steps=3, batch_size=2, save_steps=3, eval_steps=2, logging_steps=1, eval_fraction=0.25, max_eval_rows=4, bf16=False,
        seed=0, report_to=tuple(INSTALLED), run_name="tiny/sft-policy",
    )
    with _trackers_in(folder) as uri:
        metrics = run_warmup(config, show_progress=False).metrics
    return metrics, uri, folder


@pytest.mark.slow
@needs_mlflow
def test_an_sft_run_logs_its_config_losses_and_label_evaluations_to_one_mlflow_run(sft_run):
    metrics, uri, folder = sft_run
    ((run, client),) = _mlflow_runs(uri)  # transformers' integration logged into the run opened for it
    assert run.info.run_name == "tiny/sft-policy"
    assert run.data.params["sft/role"] == "policy" and run.data.params["sft/max_steps"] == "3"
    assert float(run.data.params["learning_rate"]) == 2e-4  # the Trainer's own arguments, from the integration
    assert sorted(_mlflow_history(client, run, "loss")) == [1, 2, 3]
    # The evaluation at step 2 and the final one after training, which comes after the Trainer closes its runs.
    history = {h["step"]: h["eval_label_accuracy"] for h in metrics["eval_history"]}
    assert sorted(history) == [2, 3]
    assert _mlflow_history(client, run, "eval_label_accuracy") == pytest.approx(history)
    assert not (folder / "sft-policy" / "logs").exists()  # tensorboard was not asked for


@pytest.mark.slow
@needs_wandb
def test_an_sft_run_logs_its_config_losses_and_label_evaluations_to_one_wandb_run(sft_run):
    metrics, _, folder = sft_run
    run = _the_wandb_run(folder, "tiny/sft-policy")
    assert run["config"]["sft/role"] == "policy" and run["config"]["learning_rate"] == 2e-4
    rows = list(run["history"].values())
    assert sorted(r["train/global_step"] for r in rows if "train/loss" in r) == [1, 2, 3]
    evaluations = {r["train/global_step"]: r["eval/label_accuracy"] for r in rows if "eval/label_accuracy" in r}
    assert evaluations == pytest.approx({h["step"]: h["eval_label_accuracy"] for h in metrics["eval_history"]})
