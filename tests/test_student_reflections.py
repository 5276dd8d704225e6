"""`reflect-data`: policy rows rewritten with a trained reflector's own reflections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.datagen import ConfigMismatch, GenConfig, generate
from reflectrl.datagen.student_reflections import StudentReflectionConfig, rewrite_policy_rows
from reflectrl.protocol import reflection_in, replace_reflection


class ScriptedReflector:
    """Writes a reflection that depends on the prompt (so rows differ), and can fail on a given call."""

    def __init__(self, fail_on_call: int | None = None):
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.rows_reflected = 0

    def reflect(self, prompts):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # a kill between two batches
        self.rows_reflected += len(prompts)
        return [f"Student view of a {len(p)}-character prompt: go north." for p in prompts]


@pytest.fixture
def teacher_data(tmp_path, smollm2_tokenizer) -> Path:
    generate(GenConfig(env="taxi", out=str(tmp_path / "data"), episodes=5, negatives=1), tokenizer=smollm2_tokenizer, show_progress=False)
    return tmp_path / "data"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_only_the_reflection_changes_and_the_label_stays(teacher_data, tmp_path):
    config = StudentReflectionConfig(data=str(teacher_data), reflector="student", reflection_tokens=8)
    reflector = ScriptedReflector()
    stats = rewrite_policy_rows(config, reflector, tmp_path / "out", rows_per_batch=7)
    teacher = _rows(teacher_data / "policy.jsonl")
    student = _rows(tmp_path / "out" / "policy.jsonl")
    reflections = _rows(teacher_data / "reflector.jsonl")
    assert len(student) == len(teacher) == stats["rows"] == reflector.rows_reflected
    for old, new, ref in zip(teacher, student, reflections):
        expected = f"Student view of a {len(ref['prompt'])}-character prompt: go north."
        assert new["prompt"] == replace_reflection(old["prompt"], expected)
        assert reflection_in(new["prompt"]) == expected and new["teacher_reflection"] == reflection_in(old["prompt"])
        assert {k: v for k, v in new.items() if k not in ("prompt", "teacher_reflection", "reflection_source")} == {
            k: v for k, v in old.items() if k != "prompt"
        }
    assert stats["same_as_teacher"] == 0.0 and stats["negative_rows"] > 0


def test_a_killed_run_continues_without_redoing_rows_and_ends_identical(teacher_data, tmp_path):
    config = StudentReflectionConfig(data=str(teacher_data), reflector="student", reflection_tokens=8, max_episodes=4)
    rewrite_policy_rows(config, ScriptedReflector(), tmp_path / "straight", rows_per_batch=5)
    first = ScriptedReflector(fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        rewrite_policy_rows(config, first, tmp_path / "killed", rows_per_batch=5)
    assert not (tmp_path / "killed" / "policy.jsonl").exists()
    second = ScriptedReflector()
    rewrite_policy_rows(config, second, tmp_path / "killed", rows_per_batch=5)
    total = len(_rows(tmp_path / "straight" / "policy.jsonl"))
    assert first.rows_reflected > 0 and first.rows_reflected + second.rows_reflected == total
    assert (tmp_path / "killed" / "policy.jsonl").read_bytes() == (tmp_path / "straight" / "policy.jsonl").read_bytes()
    episodes = {row["episode"] for row in _rows(tmp_path / "straight" / "policy.jsonl")}
    assert len(episodes) == 4


def test_other_settings_and_mismatched_files_are_refused(teacher_data, tmp_path):
    config = StudentReflectionConfig(data=str(teacher_data), reflector="student", reflection_tokens=8, max_episodes=1)
    rewrite_policy_rows(config, ScriptedReflector(), tmp_path / "out")
    with pytest.raises(ConfigMismatch, match="other settings"):
        rewrite_policy_rows(
            StudentReflectionConfig(data=str(teacher_data), reflector="student", reflection_tokens=9, max_episodes=1),
            ScriptedReflector(), tmp_path / "out",
        )
    lines = (teacher_data / "policy.jsonl").read_text().splitlines()
    (teacher_data / "policy.jsonl").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match="different states"):
        rewrite_policy_rows(config, ScriptedReflector(), tmp_path / "other")
    (teacher_data / "policy.jsonl").write_text("\n".join(['{"episode": 0}', *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="not a gen-data row"):
        rewrite_policy_rows(config, ScriptedReflector(), tmp_path / "other")


def test_cli_with_a_tiny_reflector_adapter(teacher_data, tmp_path):
    from reflectrl.models import add_lora, load_model, save_adapter

    model, _ = load_model("tiny-random", device="cpu")
    save_adapter(add_lora(model, "reflector", r=2), "reflector", tmp_path / "reflector")
    args = ["reflect-data", "--data", str(teacher_data), "--out", str(tmp_path / "out"), "--reflection-tokens", "3",
            "--max-episodes", "1", "--threads", "1", "--no-bf16"]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--reflector", str(tmp_path / "reflector")])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out" / "policy.jsonl")
    assert rows and all(row["reflection_source"] == str(tmp_path / "reflector") for row in rows)
    refused = runner.invoke(app, [*args, "--reflector", str(teacher_data)])
    assert refused.exit_code != 0 and "not an adapter folder" in refused.output and "Traceback" not in refused.output


def test_the_reflector_adapter_is_known_by_its_files_not_its_path(teacher_data, tmp_path):
    def adapter(folder: Path, weights: bytes, config: str = '{"r": 2}') -> str:
        folder.mkdir(exist_ok=True)
        (folder / "adapter_model.safetensors").write_bytes(weights)
        (folder / "adapter_config.json").write_text(config)
        return str(folder)

    def rows_by(reflector: str) -> None:
        config = StudentReflectionConfig(data=str(teacher_data), reflector=reflector, reflection_tokens=8, max_episodes=1)
        rewrite_policy_rows(config, ScriptedReflector(), tmp_path / "out")

    rows_by(adapter(tmp_path / "trained", b"weights-1"))
    rows_by(adapter(tmp_path / "moved", b"weights-1"))  # the same adapter in another folder continues
    for weights, config in ((b"weights-2", '{"r": 2}'), (b"weights-1", '{"r": 4}')):
        with pytest.raises(ConfigMismatch, match=r"other settings \(changed: reflector;"):
            rows_by(adapter(tmp_path / "moved", weights, config))  # retrained in place: other rows
