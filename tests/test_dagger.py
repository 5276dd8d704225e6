"""The reflector's DAgger round: visited states rebuilt exactly, labelled by the teacher, a further SFT round that
starts from the first round's adapter, and the pipeline stages that use it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from reflectrl.datagen.dagger import VISITED, Visit, mix_rows, teacher_rows, visited_states
from reflectrl.evaluation.harness import EvalConfig, evaluate, plan_episodes
from reflectrl.evaluation.scripted_agents import RandomAgent
from reflectrl.pipeline.plan import stage_names
from reflectrl.pipeline.presets import DaggerSettings, preset
from reflectrl.pipeline.run import run_pipeline
from reflectrl.pipeline.stages import DONE
from reflectrl.protocol import LabelSet
from reflectrl.teachers.base import ReflectionRequest
from reflectrl.teachers.registry import make_teacher
from reflectrl.trainers.sft import WarmupError, run_warmup
from reflectrl.trainers.sft_config import SFTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def random_play():
    """Random-agent episodes on taxi pickup (wrong moves, crashes and wins), with the keywords they were played with."""
    config = EvalConfig(env="taxi", split="train", episodes=12, level="pickup", horizon=6, batch_size=4, seed=3)
    result = evaluate(RandomAgent(3), config, judge=False)
    return result.episodes, plan_episodes(config).env_kwargs


def test_visited_states_are_the_states_the_agent_saw(random_play):
    episodes, kwargs = random_play
    visits = visited_states("taxi", episodes, kwargs)
    samples = [visit.sample for visit in visits]
    seen = [step.state_key for e in episodes for step in e.steps]
    assert all(visit.reflection is None for visit in visits)  # the random agent reads no reflection
    assert len(samples) == len(seen) and all(s.source == VISITED for s in samples)
    # The replay reaches each recorded state: its task and observation are the step's.
    assert [f"{s.state.task}\n{s.state.observation}" for s in samples] == seen
    # Each sample's history is the agent's own moves, and its judgement is of the agent's last move.
    by_episode = [(e, i) for e in episodes for i in range(len(e.steps))]
    for sample, (episode, i) in zip(samples, by_episode):
        assert sample.taken == [step.action_text for step in episode.steps[:i]]
        assert (sample.last is None) == (i == 0)
        if sample.last is not None:
            assert sample.last.action == episode.steps[i - 1].action_text


def test_teacher_rows_write_the_teachers_reflection_once_per_state(random_play, smollm2_tokenizer):
    episodes, kwargs = random_play
    visits = visited_states("taxi", episodes, kwargs)
    samples = [visit.sample for visit in visits]
    teacher = make_teacher("oracle:reasoned", seed=0)
    # The agent "read" the teacher's own reflection in the first state, something else in the others.
    first = samples[0]
    own = teacher.reflect([ReflectionRequest("taxi", first.state, first.best_action, first.last, first.facts)])[0]
    read = [Visit(visits[0].sample, own)] + [Visit(v.sample, "Next: move north.") for v in visits[1:]]
    rows = teacher_rows("taxi", read + read, teacher, level="pickup", label_set=LabelSet.for_tokenizer(smollm2_tokenizer))
    prompts = [row["prompt"] for row in rows]
    assert len(prompts) == len(set(prompts)) and 0 < len(rows) <= len(samples)
    for row in rows:
        sample = next(s for s in samples if row["taken"] == s.taken and row["seed"] == s.seed)
        request = ReflectionRequest("taxi", sample.state, sample.best_action, sample.last, sample.facts)
        assert row["completion"] == " " + teacher.reflect([request])[0].strip()
        assert row["source"] == VISITED and row["oracle_action"] == sample.best_action
        assert row["agreed"] == (row["prompt"] == rows[0]["prompt"]) or row["completion"].strip() == "Next: move north."
    assert rows[0]["agreed"] and rows[0]["agent_reflection"] == own.strip()
    # The teacher judges the agent's own moves, the random ones among them: some were mistakes.
    assert any("was a mistake" in row["completion"] for row in rows)


def test_mixing_adds_the_asked_share_of_first_round_rows_deterministically():
    visited = [{"prompt": f"v{i}"} for i in range(10)]
    first = [{"prompt": f"f{i}"} for i in range(30)]
    mixed = mix_rows(visited, first, 0.5, seed=1)
    assert mixed[:10] == visited and len(mixed) == 15 and all(r in first for r in mixed[10:])
    assert mix_rows(visited, first, 0.5, seed=1) == mixed and mix_rows(visited, first, 0.5, seed=2) != mixed
    assert len(mix_rows(visited, first, 9.0, seed=1)) == 40  # all of them, no repeats
    assert mix_rows(visited, first, 0.0, seed=1) == visited
    with pytest.raises(ValueError):
        mix_rows(visited, first, -1.0, seed=1)


def _lora(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_a_further_round_starts_from_the_given_adapter(taxi_reflector_data, tiny_sft_reflector, tmp_path):
    data = str(taxi_reflector_data / "reflector.jsonl")
    common = dict(
        role="reflector", data=data, model="tiny-random", max_steps=1, batch_size=2, save_steps=1, eval_steps=0,
        eval_fraction=0.25, max_eval_rows=4, bf16=False, seed=5,
    )
    # A learning rate too small to move anything: the round's weights are the first round's.
    still = run_warmup(SFTConfig(out=str(tmp_path / "still"), learning_rate=1e-12, init_adapter=str(tiny_sft_reflector), **common), show_progress=False)
    first, after = _lora(tiny_sft_reflector), _lora(still.out)
    assert first.keys() == after.keys()
    assert all(torch.allclose(first[k], after[k], atol=1e-6) for k in first)
    assert any(first[k].abs().sum() > 0 for k in first if "lora_B" in k)  # the first round had moved away from LoRA's zero start
    moved = run_warmup(SFTConfig(out=str(tmp_path / "moved"), learning_rate=2e-2, init_adapter=str(tiny_sft_reflector), **common), show_progress=False)
    assert any(not torch.allclose(first[k], _lora(moved.out)[k]) for k in first)
    with pytest.raises(WarmupError, match="not a LoRA adapter"):
        run_warmup(SFTConfig(out=str(tmp_path / "bad"), init_adapter=str(tmp_path), **common), show_progress=False)


@pytest.mark.slow  # about 20 s: the tiny pipeline with its DAgger stages
def test_the_pipeline_trains_and_evaluates_reflect_rl_with_the_dagger_reflector(tmp_path):
    chosen = replace(preset("tiny", "taxi"), dagger=DaggerSettings(episodes=6, steps=2, disagreements_only=True))
    out = tmp_path / "run"
    run_pipeline("taxi", chosen, out, log=lambda message: None, progress=False)
    names = stage_names("core", dagger=True)
    assert {"dagger-data", "sft-reflector-dagger", "eval-sft-reflect-dagger"} <= set(names)
    assert all((out / name / DONE).is_file() for name in names)
    stats = json.loads((out / "dagger-data" / "stats.json").read_text())
    visited = (out / "dagger-data" / "visited.jsonl").read_text().splitlines()
    assert stats["rows"] == stats["distinct"] - stats["agreed"] == len(visited) > 0 and stats["episodes"] == 6
    assert not any(json.loads(line)["agreed"] for line in visited)
    rl_settings = (out / "rl-reflect" / "run").rglob("hparams.yml")
    assert any("sft-reflector-dagger" in p.read_text() for p in rl_settings)
    done = {name: json.loads((out / name / DONE).read_text())["summary"] for name in ("eval-rl-reflect", "eval-sft-reflect")}
    assert done["eval-rl-reflect"]["agent"]["reflector"] == "sft-reflector-dagger"
    assert done["eval-sft-reflect"]["agent"]["reflector"] == "sft-reflector"
    assert "reflector after its DAgger round" in (out / "report.md").read_text()
    # A preset without the round makes none of its stages.
    assert not {"dagger-data", "sft-reflector-dagger"} & set(stage_names("core"))
