"""Data generation: files, validation, negative examples, determinism, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reflectrl.datagen import (
    OUTPUT_FILES,
    ConfigMismatch,
    GenConfig,
    InvalidRows,
    check_off_path,
    generate,
    load_rows,
    validate,
    validate_dataset,
)
from reflectrl.datagen.generate import PROGRESS_DIR, env_factory
from reflectrl.envs import make_env
from reflectrl.protocol import LabelSet, reflection_in
from reflectrl.teachers import OracleTeacher
from reflectrl.teachers.explainers import explainer_for


def _gen(tmp_path, tok, name="data", **kw):
    config = GenConfig(env="taxi", out=str(tmp_path / name), **{"episodes": 6, "negatives": 2, **kw})
    return generate(config, tokenizer=tok, show_progress=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUT_FILES}


def test_files_load_with_datasets_and_validate(tmp_path, smollm2_tokenizer):
    from datasets import load_dataset

    result = _gen(tmp_path, smollm2_tokenizer)
    out = result.out
    for name in OUTPUT_FILES:
        data = load_dataset("json", data_files=str(out / name), split="train")
        assert {"prompt", "completion"} <= set(data.column_names) and len(data) > 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"]["plain"] == stats["states"] and stats["negative_rows"] == 12
    assert 0 < stats["negative_share"] < 1
    assert sum(stats["label_distribution"].values()) == stats["states"]
    labels = LabelSet.for_tokenizer(smollm2_tokenizer).labels
    for row in load_rows(out / "policy.jsonl"):
        assert row["completion"] in row["labels"] and row["completion"] in labels
        assert row["labels"][row["action_index"]] == row["completion"]
        assert row["menu_actions"][row["action_index"]] == row["oracle_action"]
        assert row["prompt"].endswith("Action label:\n")
    for row in load_rows(out / "reflector.jsonl"):
        assert row["completion"].startswith(" ") and row["completion"].strip()
    positive = load_rows(out / "policy_positive.jsonl")
    assert positive and not any(r["negative"] for r in positive)
    validate_dataset(out, smollm2_tokenizer)


def test_negative_rows_follow_an_off_path_action(tmp_path, smollm2_tokenizer):
    out = _gen(tmp_path, smollm2_tokenizer).out
    explainer = explainer_for("taxi")
    env = make_env("taxi", max_actions=len(LabelSet.for_tokenizer(smollm2_tokenizer)))
    negatives = [r for r in load_rows(out / "reflector.jsonl") if r["negative"]]
    assert negatives
    for row in negatives:
        assert row["after_mistake"] and row["last_action"] == row["taken"][-1]
        assert check_off_path(env, explainer, row["seed"], row["taken"]) is None
        assert any(w in row["completion"].lower() for w in ("mistake", "detour", "did not help", "wrong"))
    # A row that claims a mistake where the oracle's own move was taken fails validation.
    row = dict(negatives[0])
    from reflectrl.datagen import replay

    replay(env, row["seed"], row["taken"][:-1])
    row["taken"] = row["taken"][:-1] + [env.oracle_action()]
    with pytest.raises(InvalidRows, match="optimal path"):
        validate({"reflector": [row]}, lambda: env, explainer)


def test_validation_rejects_bad_rows(tmp_path, smollm2_tokenizer):
    out = _gen(tmp_path, smollm2_tokenizer, episodes=2).out
    make = lambda: make_env("taxi")
    explainer = explainer_for("taxi")
    policy = load_rows(out / "policy.jsonl")[0]
    wrong_label = dict(policy, completion="Z")
    with pytest.raises(InvalidRows, match="not one of the prompt's labels"):
        validate({"policy": [wrong_label]}, make, explainer)
    other = next(lab for lab in policy["labels"] if lab != policy["completion"])
    with pytest.raises(InvalidRows, match="not the oracle action"):
        validate({"policy": [dict(policy, completion=other)]}, make, explainer)
    reflector = load_rows(out / "reflector.jsonl")[0]
    with pytest.raises(InvalidRows, match="empty reflection"):
        validate({"reflector": [dict(reflector, completion="  ")]}, make, explainer)


def test_same_settings_give_identical_files(tmp_path, smollm2_tokenizer):
    a = _gen(tmp_path, smollm2_tokenizer, name="a", episodes=3)
    b = _gen(tmp_path, smollm2_tokenizer, name="b", episodes=3)
    assert _files(a.out) == _files(b.out)
    c = _gen(tmp_path, smollm2_tokenizer, name="c", episodes=3, split="validation")
    seeds_a = {r["seed"] for r in load_rows(a.out / "plain.jsonl")}
    seeds_c = {r["seed"] for r in load_rows(c.out / "plain.jsonl")}
    assert not seeds_a & seeds_c


class _Dies(Exception):
    pass


class _DyingTeacher(OracleTeacher):
    """Stops the run (like a kill) when asked for the `after`-th batch."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after
        self.batches = 0

    def reflect(self, requests):
        self.batches += 1
        if self.batches == self.after:
            raise _Dies()
        return super().reflect(requests)


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, smollm2_tokenizer):
    reference = _gen(tmp_path, smollm2_tokenizer, name="ref")
    config = GenConfig(env="taxi", out=str(tmp_path / "run"), episodes=6, negatives=2)
    with pytest.raises(_Dies):
        generate(config, teacher=_DyingTeacher(after=4), tokenizer=smollm2_tokenizer, show_progress=False)
    journal = tmp_path / "run" / PROGRESS_DIR / "episodes.jsonl"
    assert len(journal.read_text().splitlines()) == 3
    # A kill in the middle of writing leaves a torn last line; it must be dropped.
    with open(journal, "a") as handle:
        handle.write('{"episode": 3, "rows": {"plain": [')
    resumed = generate(config, tokenizer=smollm2_tokenizer, show_progress=False)
    assert resumed.episodes_generated == 3
    assert _files(resumed.out) == _files(reference.out)
    keys = [(r["episode"], tuple(r["taken"])) for r in load_rows(resumed.out / "plain.jsonl")]
    assert len(keys) == len(set(keys))
    again = generate(config, tokenizer=smollm2_tokenizer, show_progress=False)
    assert again.episodes_generated == 0 and again.teacher_calls == 0
    assert _files(again.out) == _files(reference.out)


@pytest.mark.slow
def test_killed_process_resumes(tmp_path, smollm2_tokenizer):
    """SIGKILL a real gen-data process part-way, re-run it, compare with an uninterrupted run."""
    out = tmp_path / "killed"
    args = ["gen-data", "taxi", "--episodes", "25", "--negatives", "2", "--out", str(out)]
    code = "import sys; from reflectrl.cli.main import app; app(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / PROGRESS_DIR / "episodes.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and len(journal.read_bytes().splitlines()) >= 3:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(journal.read_bytes().splitlines())
    config = GenConfig(env="taxi", out=str(out), episodes=25, negatives=2)
    resumed = generate(config, tokenizer=smollm2_tokenizer, show_progress=False)
    assert resumed.episodes_generated <= 25 - min(done_before, 25) + 1
    reference = generate(GenConfig(env="taxi", out=str(tmp_path / "ref"), episodes=25, negatives=2), tokenizer=smollm2_tokenizer, show_progress=False)
    assert _files(out) == _files(reference.out)


def test_other_settings_in_the_same_folder_are_refused(tmp_path, smollm2_tokenizer):
    _gen(tmp_path, smollm2_tokenizer, episodes=2)
    with pytest.raises(ConfigMismatch):
        _gen(tmp_path, smollm2_tokenizer, episodes=2, random_prob=0.5)
    result = generate(
        GenConfig(env="taxi", out=str(tmp_path / "data"), episodes=2, random_prob=0.5),
        tokenizer=smollm2_tokenizer, overwrite=True, show_progress=False,
    )
    assert result.episodes_generated == 2
    # More episodes extend the same run.
    more = _gen(tmp_path, smollm2_tokenizer, episodes=3, random_prob=0.5)
    assert more.episodes_generated == 1


def test_misleading_rows_argue_for_a_wrong_action_and_keep_the_oracles_label(tmp_path, smollm2_tokenizer):
    plain = _gen(tmp_path, smollm2_tokenizer, name="plain", episodes=3)
    mixed = _gen(tmp_path, smollm2_tokenizer, name="mixed", episodes=3, misleading=0.5)
    rows = load_rows(mixed.out / "policy.jsonl")
    misleading = [r for r in rows if r["misleading_hint"] is not None]
    assert 0 < len(misleading) < len(rows)
    # Every other row, and every reflector and plain row, is what the run without them wrote.
    assert [r for r in rows if r["misleading_hint"] is None] == load_rows(plain.out / "policy.jsonl")
    for name in ("reflector.jsonl", "plain.jsonl"):
        assert (mixed.out / name).read_bytes() == (plain.out / name).read_bytes()
    right = {(r["seed"], tuple(r["taken"])): r for r in load_rows(plain.out / "policy.jsonl")}
    explainer = explainer_for("taxi")
    for row in misleading:
        assert row["misleading_hint"] != row["oracle_action"]
        assert row["menu_actions"][row["action_index"]] == row["oracle_action"]
        assert row["completion"] == row["labels"][row["action_index"]]
        twin = right[(row["seed"], tuple(row["taken"]))]
        assert reflection_in(row["prompt"]) != reflection_in(twin["prompt"])
    validate({"policy": misleading}, lambda: make_env("taxi"), explainer)


def test_a_folder_written_before_a_setting_existed_still_resumes(tmp_path, smollm2_tokenizer):
    _gen(tmp_path, smollm2_tokenizer, episodes=2)
    saved = tmp_path / "data" / PROGRESS_DIR / "config.json"
    identity = json.loads(saved.read_text())
    del identity["misleading"]  # as an older version wrote it
    saved.write_text(json.dumps(identity))
    assert _gen(tmp_path, smollm2_tokenizer, episodes=3).episodes_generated == 1
    identity["no_such_setting"] = 1
    saved.write_text(json.dumps(identity))
    with pytest.raises(ConfigMismatch):
        _gen(tmp_path, smollm2_tokenizer, episodes=3)


def test_env_factory_keeps_menus_within_the_labels(smollm2_tokenizer):
    labels = LabelSet.for_tokenizer(smollm2_tokenizer)
    env = env_factory(GenConfig(env="taxi", out="unused", level="pickup"), labels)()
    assert env.max_actions == len(labels) and env.level == "pickup"


def test_cli_errors_are_clean(tmp_path):
    from typer.testing import CliRunner

    from reflectrl.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["gen-data", "nosuchenv", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown environment" in result.output
    result = runner.invoke(app, ["gen-data", "taxi", "--teacher", "gpt", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown teacher" in result.output
    result = runner.invoke(app, ["gen-data", "taxi", "--split", "dev", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown split" in result.output
    assert "Traceback" not in result.output


def test_decoy_reads_put_reads_that_do_not_answer_into_autoexplore_data(tmp_path, smollm2_tokenizer):
    common = dict(env="autoexplore", episodes=4, negatives=0, random_prob=0.0, teacher="oracle:concise", level="depth1", horizon=10)
    plain = generate(GenConfig(out=str(tmp_path / "plain"), **common), tokenizer=smollm2_tokenizer, show_progress=False)
    decoys = generate(GenConfig(out=str(tmp_path / "decoy"), decoy_prob=1.0, **common), tokenizer=smollm2_tokenizer, show_progress=False)
    assert plain.stats["expert"]["decoy_actions"] == 0 and decoys.stats["expert"]["decoy_actions"] > 0
    validate_dataset(decoys.out, smollm2_tokenizer)

    def after_reads(folder):
        rows = load_rows(folder / "reflector.jsonl")
        return [r for r in rows if r["last_action"] and r["last_action"].startswith("cat ")]

    # Without decoys every read is the answer and is followed by "id"; with them, reads of other files are
    # followed by another read, and the reflection says the file read does not answer.
    assert after_reads(plain.out) and all(r["oracle_action"].startswith("id ") for r in after_reads(plain.out))
    others = [r for r in after_reads(decoys.out) if not r["oracle_action"].startswith("id ")]
    assert others and all("does not answer it" in r["completion"] for r in others)


def test_label_after_data_lists_labels_after_actions_and_leaves_reflector_rows_alone(tmp_path, smollm2_tokenizer):
    from reflectrl.datagen.validate import menu_in_prompt

    first = _gen(tmp_path, smollm2_tokenizer, name="first", episodes=3)
    after = _gen(tmp_path, smollm2_tokenizer, name="after", episodes=3, label_after=True)
    for name in ("policy.jsonl", "plain.jsonl"):
        rows, twins = load_rows(after.out / name), load_rows(first.out / name)
        assert len(rows) == len(twins) > 0
        for row, twin in zip(rows, twins):
            assert row["label_after"] is True and twin["label_after"] is False
            assert (row["labels"], row["completion"]) == (twin["labels"], twin["completion"])
            listed = menu_in_prompt(row["prompt"], label_after=True)
            assert listed == dict(zip(row["labels"], row["menu_actions"]))
            assert f"{row['oracle_action']} ({row['completion']})" in row["prompt"]
    # The reflector reads no labelled menu, so its rows do not change.
    assert (after.out / "reflector.jsonl").read_bytes() == (first.out / "reflector.jsonl").read_bytes()
