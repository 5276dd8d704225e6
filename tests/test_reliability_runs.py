"""Run folders and inputs that a careful user or an accident produces: finished runs met again, moved folders,
deleted settings files, damaged adapters and mistyped options (issue 36, rows 5, 6, 7, 10, 11, 12 and 16).

Every CLI case ends in one ``Error:`` line and status 2, and nothing already written is changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.trainers.sft import CHECKPOINTS, CONFIG_FILE, WarmupError, run_warmup
from reflectrl.trainers.sft_config import SFTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


def _one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for text in expected:
        assert text in errors[0], result.output


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _sft(data: Path | str, out: Path | str, role: str = "plain", **kw) -> SFTConfig:
    settings = dict(
        role=role, data=str(data), out=str(out), model="tiny-random", max_steps=2, batch_size=2, save_steps=2,
        eval_steps=0, eval_fraction=0.25, max_eval_rows=4, bf16=False, seed=0,
    )
    return SFTConfig(**{**settings, **kw})


def _stopped_after_one_step(data: Path | str, out: Path | str, role: str = "plain") -> None:
    """An SFT run that its time limit stopped after its first step, with checkpoint-1 to resume from."""
    first = run_warmup(_sft(data, out, role, max_minutes=1e-9), show_progress=False)
    assert first.metrics["stopped_by_time_limit"] and first.metrics["global_step"] == 1


@pytest.fixture
def data(taxi_reflector_data, tmp_path) -> Path:
    """A private copy of the session's teacher data, which tests may move or change."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("plain.jsonl", "policy.jsonl", "reflector.jsonl"):
        shutil.copy(taxi_reflector_data / name, folder / name)
    return folder


# ---------------------------------------------------------------- row 5: a finished run is never overwritten
TRAIN = [
    "train", "corridor", "--policy", "tiny-random", "--no-reflection", "--episodes-per-iter", "2", "--eval-every", "2",
    "--eval-episodes", "2", "--horizon", "4", "--iters", "2", "--quiet",
]


def test_train_refuses_to_replace_a_finished_run_without_overwrite(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, TRAIN + ["--out", str(out)]).exit_code == 0
    shutil.rmtree(out / "checkpoints")  # a finished run whose checkpoints were cleaned up to save space
    before = _snapshot(out)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3

    again = runner.invoke(app, TRAIN + ["--out", str(out), "--iters", "1", "--eval-every", "0"])
    _one_line_error(again, str(out), "--overwrite")
    # --resume has no checkpoint to continue from: it would start afresh over the finished run just the same.
    resumed = runner.invoke(app, TRAIN + ["--out", str(out), "--resume"])
    _one_line_error(resumed, str(out), "--overwrite")
    assert _snapshot(out) == before

    replaced = runner.invoke(app, TRAIN + ["--out", str(out), "--iters", "1", "--eval-every", "0", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((out / "run.json").read_text())["config"]["iterations"] == 1


def test_train_overwrite_clears_the_old_checkpoints_so_runs_never_mix(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, TRAIN + ["--out", str(out), "--iters", "3", "--eval-every", "0"]).exit_code == 0
    both = runner.invoke(app, TRAIN + ["--out", str(out), "--overwrite", "--resume"])
    _one_line_error(both, "--overwrite", "--resume")
    replaced = runner.invoke(app, TRAIN + ["--out", str(out), "--iters", "1", "--eval-every", "0", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["iter-000001"]


def test_sft_refuses_to_replace_a_finished_run_without_overwrite(data, tmp_path):
    out = tmp_path / "sft"
    command = ["sft", "--role", "plain", "--data", str(data / "plain.jsonl"), "--out", str(out), "--model", "tiny-random",
               "--max-steps", "1", "--batch-size", "2", "--eval-steps", "0", "--eval-fraction", "0.25", "--no-bf16"]
    assert runner.invoke(app, command).exit_code == 0
    shutil.rmtree(out / CHECKPOINTS)
    before = _snapshot(out)

    _one_line_error(runner.invoke(app, command), str(out), "--overwrite")
    resumed = runner.invoke(app, command + ["--resume"])  # nothing left to continue: the run's own result
    assert resumed.exit_code == 0 and "global_step=1" in resumed.output, resumed.output
    assert _snapshot(out) == before

    replaced = runner.invoke(app, command + ["--overwrite", "--learning-rate", "1e-2"])
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / CONFIG_FILE).read_text())["learning_rate"] == 1e-2
    assert (out / "adapter_model.safetensors").read_bytes() != before["adapter_model.safetensors"]


# ---------------------------------------------- row 6: SFT resume compares paths and data by what they mean
def test_sft_resumes_the_same_run_through_another_path_and_moved_data(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _stopped_after_one_step("data/plain.jsonl", "run")
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    data.rename(moved)  # a pipeline folder moved to another disk: the same rows at another path

    resumed = run_warmup(_sft(moved / "plain.jsonl", tmp_path / "run", resume=True), show_progress=False)
    assert resumed.metrics["resumed_from"] == "checkpoint-1" and resumed.metrics["global_step"] == 2


def test_sft_resume_refusal_names_exactly_the_changed_settings(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _stopped_after_one_step(data / "plain.jsonl", "run")
    out = tmp_path / "run"  # the same folder spelled another way is no change
    with pytest.raises(WarmupError, match=r"\(learning_rate\)"):
        run_warmup(_sft(data / "plain.jsonl", out, resume=True, learning_rate=1.0), show_progress=False)
    rows = (data / "plain.jsonl").read_text().splitlines()
    (data / "fewer.jsonl").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(WarmupError, match=r"\(data\)"):
        run_warmup(_sft(data / "fewer.jsonl", out, resume=True), show_progress=False)


# -------------------------------------------- row 7: checkpoints know which run they belong to
def test_sft_checkpoints_refuse_another_run_without_the_config_file(data, tmp_path):
    out = tmp_path / "run"
    _stopped_after_one_step(data / "policy.jsonl", out, role="policy")
    (out / CONFIG_FILE).unlink()
    with pytest.raises(WarmupError, match=r"\(data, role\)"):
        run_warmup(_sft(data / "reflector.jsonl", out, role="reflector", resume=True), show_progress=False)
    with pytest.raises(WarmupError, match=r"\(lora_r\)"):
        run_warmup(_sft(data / "policy.jsonl", out, role="policy", resume=True, lora_r=4), show_progress=False)
    resumed = run_warmup(_sft(data / "policy.jsonl", out, role="policy", resume=True), show_progress=False)
    assert resumed.metrics["resumed_from"] == "checkpoint-1"


def test_sft_refuses_checkpoints_whose_run_it_cannot_tell(data, tmp_path):
    out = tmp_path / "run"
    _stopped_after_one_step(data / "plain.jsonl", out)
    (out / CONFIG_FILE).unlink()
    for identity in (out / CHECKPOINTS).glob("checkpoint-*/run_identity.json"):
        identity.unlink()  # checkpoints written before they carried their run's identity
    with pytest.raises(WarmupError, match="cannot tell"):
        run_warmup(_sft(data / "plain.jsonl", out, resume=True), show_progress=False)


# --------------------------------------------------- row 10: a damaged adapter file is a clear error
@pytest.fixture
def truncated_adapter(tmp_path) -> Path:
    from reflectrl.models import add_lora, load_model, save_adapter

    model, _ = load_model("tiny-random", device="cpu")
    model = add_lora(model, "policy", r=4)
    folder = tmp_path / "adapter"
    save_adapter(model, "policy", folder)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    return folder


def test_a_truncated_adapter_is_a_model_load_error_naming_the_file(truncated_adapter):
    from reflectrl.models import ModelLoadError, load_model
    from reflectrl.players import TwoPlayerModel

    weights = str(truncated_adapter / "adapter_model.safetensors")
    with pytest.raises(ModelLoadError, match="adapter_model.safetensors") as loaded:
        load_model(truncated_adapter, device="cpu")
    assert weights in str(loaded.value)
    with pytest.raises(ModelLoadError) as shared:
        TwoPlayerModel.load("tiny-random", policy=truncated_adapter, device="cpu")
    assert weights in str(shared.value)


def test_truncated_weights_in_a_checkpoint_are_a_model_load_error_naming_the_file(truncated_adapter):
    from reflectrl.models import ModelLoadError
    from reflectrl.players.load import load_rl_players
    from reflectrl.trainers.checkpoint import load_policy_weights

    players = load_rl_players("tiny-random", None, shuffle_labels=False, device="cpu")
    with pytest.raises(ModelLoadError) as damaged:
        load_policy_weights(players.policy, truncated_adapter)
    assert str(truncated_adapter / "adapter_model.safetensors") in str(damaged.value)


@pytest.mark.parametrize(
    "command",
    [
        ["train", "corridor", "--no-reflection", "--iters", "1", "--quiet", "--policy"],
        ["train", "corridor", "--policy", "tiny-random", "--iters", "1", "--quiet", "--reflector"],
        ["eval", "corridor", "--agent", "plain", "--episodes", "1", "--quiet", "--policy"],
        ["export", "--out", "exported"],
    ],
    ids=["train-policy", "train-reflector", "eval", "export"],
)
def test_commands_given_a_truncated_adapter_end_in_one_line(truncated_adapter, tmp_path, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = ["--out", str(tmp_path / "run")] if command[0] == "train" else []
    _one_line_error(runner.invoke(app, command + [str(truncated_adapter)] + extra), "adapter_model.safetensors")


# ------------------------------------------------------------ row 11: one line instead of a traceback
def test_sft_rejects_an_unknown_learning_rate_schedule_before_training(data, tmp_path):
    out = tmp_path / "sft"
    result = runner.invoke(app, ["sft", "--role", "plain", "--data", str(data / "plain.jsonl"), "--out", str(out),
                                 "--model", "tiny-random", "--lr-scheduler", "bogus"])
    _one_line_error(result, "bogus", "cosine")
    assert not out.exists()


def test_gen_data_rejects_an_argument_the_environment_does_not_take(tmp_path):
    out = tmp_path / "x"
    result = runner.invoke(app, ["gen-data", "taxi", "--episodes", "1", "--model", "tiny-random", "--env-arg", "foo=1", "--out", str(out)])
    _one_line_error(result, "foo")
    assert not out.exists()


def test_sft_rows_whose_label_is_not_on_their_menu_fail_before_training(data, tmp_path):
    rows = [json.loads(line) for line in (data / "policy.jsonl").read_text().splitlines()]
    rows[3]["labels"] = [label for label in rows[3]["labels"] if label != rows[3]["completion"]]
    bad = data / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sft"
    with pytest.raises(WarmupError, match=r"bad\.jsonl row 4: label .* is not on its menu"):
        run_warmup(_sft(bad, out, role="policy"), show_progress=False)
    assert not (out / CHECKPOINTS).exists()


@pytest.mark.parametrize("saved", ["[]", '"settings"', "3"])
def test_train_resume_rejects_a_run_file_that_holds_no_settings(tmp_path, saved):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(saved)
    result = runner.invoke(app, TRAIN + ["--out", str(out), "--resume"])
    _one_line_error(result, str(out / "run.json"))


def test_a_done_record_that_is_no_object_is_a_clear_error(tmp_path):
    from reflectrl.pipeline.stages import Stage, StageRunner
    from reflectrl.run_settings import ConfigMismatch, read_saved

    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "DONE.json").write_text("[]")
    with pytest.raises(ConfigMismatch, match="DONE.json"):
        read_saved(tmp_path / "stage" / "DONE.json")
    with pytest.raises(ConfigMismatch, match="DONE.json"):
        StageRunner(tmp_path, {}, log=lambda _: None).run(Stage("stage", lambda folder: {}))
    assert read_saved(tmp_path / "missing.json") is None  # missing or torn files still read as "nothing saved"


# ------------------------------------------------------------- row 12: gen-data checks before it writes
def test_gen_data_with_a_bad_level_writes_nothing_and_the_corrected_command_runs(tmp_path):
    out = tmp_path / "x"
    command = ["gen-data", "taxi", "--episodes", "1", "--model", "tiny-random", "--horizon", "4", "--out", str(out)]
    _one_line_error(runner.invoke(app, command + ["--level", "nope"]), "nope")
    assert not out.exists()
    corrected = runner.invoke(app, command + ["--level", "pickup"])
    assert corrected.exit_code == 0, corrected.output


# ------------------------------------------- row 16: what a resume or a later stage trusts is written as one
class _Killed(BaseException):
    """Stands for SIGKILL inside this process: no handler of the code under test catches it."""


def _os_call_dying_at(monkeypatch, call: str, folder: Path, name: str, *, after: bool) -> None:
    """Make `os.<call>` onto `folder/name` end the run, just before or just after it takes effect."""
    real = getattr(os, call)

    def cut(src, dst, *args, **kwargs):
        dying = Path(dst) == folder / name
        if dying and not after:
            raise _Killed(dst)
        result = real(src, dst, *args, **kwargs)
        if dying:
            raise _Killed(dst)
        return result

    monkeypatch.setattr(os, call, cut)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names descriptors through /proc")
def test_train_replaces_its_run_file_with_a_synced_copy(tmp_path, monkeypatch):
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = (tmp_path / "run").resolve()
    assert runner.invoke(app, TRAIN + ["--out", str(out), "--iters", "0"]).exit_code == 0
    # A kill while --resume rewrites run.json would otherwise leave a torn file, and the run could never resume.
    arrived = [i for i, event in enumerate(events) if event[0] == "replace" and event[2] == str(out / "run.json")]
    assert arrived, "run.json was written in place"
    temporary = events[arrived[0]][1]
    assert ("fsync", temporary) in events[: arrived[0]] and ("fsync", str(out)) in events[arrived[0]:]


def test_a_kill_while_sft_saves_its_adapter_never_leaves_it_without_its_label_order(data, tmp_path, monkeypatch):
    from reflectrl.models.loading import is_adapter_folder
    from reflectrl.protocol import load_label_order

    out = tmp_path / "run"
    # Killed just after the file that marks the folder as an adapter went in.
    _os_call_dying_at(monkeypatch, "replace", out, "adapter_config.json", after=True)
    with pytest.raises(_Killed):
        run_warmup(_sft(data / "policy.jsonl", out, role="policy"), show_progress=False)
    monkeypatch.undo()
    assert is_adapter_folder(out)
    # Without its record, a policy would be given menus in the default layout, not the one it was trained on.
    assert load_label_order(out) is not None and json.loads((out / "metrics.json").read_text())["global_step"] == 2


def test_a_kill_while_full_sft_saves_never_leaves_weights_without_their_tokenizer(data, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    out = tmp_path / "run"

    def killed(*args, **kwargs):
        raise _Killed("tokenizer")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", killed)
    with pytest.raises(_Killed):
        run_warmup(_sft(data / "plain.jsonl", out, full=True), show_progress=False)
    assert not [name for name in ("model.safetensors", "config.json", "metrics.json") if (out / name).exists()]


def test_an_sft_result_committed_before_a_kill_counts_as_the_finished_run(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = _sft(data / "plain.jsonl", out)
    # Killed once the result is complete on disk, before the first of its files is in place.
    _os_call_dying_at(monkeypatch, "replace", out, "README.md", after=False)
    with pytest.raises(_Killed):
        run_warmup(config, show_progress=False)
    monkeypatch.undo()
    shutil.rmtree(out / CHECKPOINTS)  # a finished run whose checkpoints were cleaned up to save space
    with pytest.raises(WarmupError, match="finished run"):
        run_warmup(config, show_progress=False)
    result = {"adapter_config.json", "adapter_model.safetensors", "label_order.json", "metrics.json"}
    assert result <= {p.name for p in out.iterdir()}


def test_resuming_a_finished_sft_run_whose_checkpoint_a_kill_cut_returns_its_result(data, tmp_path):
    out = tmp_path / "run"
    finished = run_warmup(_sft(data / "plain.jsonl", out), show_progress=False)
    # Killed after the result was written and before a pipeline recorded the stage as done, the
    # checkpoint's state cut since: a resume has nothing left to continue, and nothing to refuse.
    state = out / CHECKPOINTS / "checkpoint-2" / "trainer_state.json"
    state.write_bytes(state.read_bytes()[:-10])
    before = {name: (out / name).read_bytes() for name in ("adapter_model.safetensors", "metrics.json", "label_order.json")}
    resumed = run_warmup(_sft(data / "plain.jsonl", out, resume=True), show_progress=False)
    assert resumed.metrics == json.loads(json.dumps(finished.metrics))
    assert {name: (out / name).read_bytes() for name in before} == before
    with pytest.raises(WarmupError, match=r"\(learning_rate\)"):
        run_warmup(_sft(data / "plain.jsonl", out, resume=True, learning_rate=1.0), show_progress=False)


def test_a_resume_puts_back_the_metrics_lines_its_checkpoint_covers(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, TRAIN + ["--out", str(out), "--checkpoint-every", "1"]).exit_code == 0
    metrics = out / "metrics.jsonl"
    written = metrics.read_bytes()
    # Its last line cut inside a character, though the last checkpoint covers it (a power cut, a damaged disk):
    # resuming used to pad the file with zero bytes up to the size the checkpoint recorded.
    metrics.write_bytes(written[:-20] + "é".encode()[:1])
    resumed = runner.invoke(app, TRAIN + ["--out", str(out), "--checkpoint-every", "1", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert metrics.read_bytes() == written


def test_learning_curves_skip_a_line_cut_inside_a_character(tmp_path):
    from reflectrl.pipeline.report import read_curve

    path = tmp_path / "metrics.jsonl"
    cut = '{"iteration": 2, "train/success": 0.7, "note": "é'.encode()[:-1]
    path.write_bytes(b'{"iteration": 1, "train/success": 0.5}\n' + cut + b'\n{"iteration": 3, "train/success": 1.0}\n')
    assert read_curve(path, "train/success") == [(1.0, 0.5), (3.0, 1.0)]


@pytest.fixture
def truncated_value_head(tmp_path) -> Path:
    from reflectrl.players.load import load_rl_players
    from reflectrl.players.policy import VALUE_HEAD_FILE

    folder = tmp_path / "ppo-final"
    load_rl_players("tiny-random", None, value_head=True, shuffle_labels=False, device="cpu").policy.save(folder)
    head = folder / VALUE_HEAD_FILE
    head.write_bytes(head.read_bytes()[: head.stat().st_size // 2])  # a copy cut short
    return folder


def test_a_truncated_value_head_is_a_model_load_error_naming_the_file(truncated_value_head, tmp_path):
    from reflectrl.models import ModelLoadError
    from reflectrl.players.load import load_rl_players

    head = str(truncated_value_head / "value_head.safetensors")
    with pytest.raises(ModelLoadError) as damaged:
        load_rl_players(str(truncated_value_head), None, value_head=True, device="cpu")
    assert head in str(damaged.value)
    command = ["train", "corridor", "--no-reflection", "--algo", "ppo", "--iters", "1", "--quiet"]
    result = runner.invoke(app, command + ["--policy", str(truncated_value_head), "--out", str(tmp_path / "run")])
    _one_line_error(result, head)
