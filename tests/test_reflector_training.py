"""Training the reflector from returns (`RLConfig.train_reflector`, `trainers.reflector_update`) on the tiny model."""

import json

import pytest
import torch
from safetensors.torch import load_file

from reflectrl.models import add_lora, load_model, save_adapter
from reflectrl.models.adapters import adapter_scope, lora_parameters
from reflectrl.players.two_players import REFLECTOR_REFERENCE
from reflectrl.rollout.episode import Episode, Step
from reflectrl.trainers.algorithms import algorithm_for
from reflectrl.trainers.metrics_log import WeightedMeans
from reflectrl.trainers.online import TIME_PREFIX, TRAINED_REFLECTOR
from reflectrl.trainers.recipe import build_rl_run
from reflectrl.trainers.reflector_update import (
    ReflectorUpdate,
    completion_log_probs,
    reflection_rows,
)
from reflectrl.trainers.rl_config import RLConfig

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "Task: drive the passenger home.\nObservation: the taxi is at row 2, column 3.\nReflection:"


def _step(reflection: str, reward: float, prompt: str = PROMPT) -> Step:
    return Step(
        prompt_ids=[1, 2], label_ids=[3, 4], action=0, log_prob=-0.7, entropy=0.7, value=None, reward=reward, done=True,
        state_key="s", reflection=reflection, reflector_prompt=prompt,
    )


def _episodes() -> list[Episode]:
    """One GRPO group of two episodes from one state: the one whose reflection said "move south" won."""
    return [
        Episode(seed=0, level="l", group=0, steps=[_step("Next: move south.", 1.0)], success=True),
        Episode(seed=0, level="l", group=0, steps=[_step("Next: move north.", 0.0)]),
    ]


def _players():
    model, tokenizer = load_model("tiny-random", device="cpu")
    torch.manual_seed(0)
    model = add_lora(model, "reflector", r=4)
    model = add_lora(model, "policy", r=4)
    model = add_lora(model, REFLECTOR_REFERENCE, r=4)
    with torch.no_grad():  # a reference that differs from the starting reflector would not show the penalty's pull
        for mine, ref in zip(lora_parameters(model, "reflector"), lora_parameters(model, REFLECTOR_REFERENCE)):
            ref.copy_(mine)
    return model, tokenizer


def _log_prob(model, tokenizer, reflection: str, temperature: float) -> float:
    rows, _ = reflection_rows(tokenizer, [Episode(0, "l", 0, [_step(reflection, 0.0)])], [1.0])
    with torch.no_grad(), adapter_scope(model, "reflector"):
        log_probs, _ = completion_log_probs(model, rows, temperature, tokenizer.eos_token_id)
    return float(log_probs.sum())


def test_the_update_raises_the_rewarded_reflection_and_lowers_the_other_on_the_reflector_s_weights_alone():
    model, tokenizer = _players()
    config = RLConfig(algo="grpo", group_size=2, episodes_per_iter=2, train_reflector=True, reflection_temperature=1.0,
                      reflector_lr=1e-2, reflector_kl_coef=0.0)
    update = ReflectorUpdate(config, algorithm_for(config), model, tokenizer, adapter="reflector", reference=None)
    others = {name: [p.detach().clone() for p in lora_parameters(model, name)] for name in ("policy", REFLECTOR_REFERENCE)}
    before = {text: _log_prob(model, tokenizer, text, 1.0) for text in ("Next: move south.", "Next: move north.")}
    for iteration in range(3):
        stats = update.update(_episodes(), iteration)
    after = {text: _log_prob(model, tokenizer, text, 1.0) for text in before}
    assert stats["reflector/rows"] == 2 and stats["reflector/tokens"] > 2 and stats["reflector/grad_norm"] > 0
    assert after["Next: move south."] > before["Next: move south."]
    assert after["Next: move north."] < before["Next: move north."]
    for name, saved in others.items():
        assert all(torch.equal(a, b) for a, b in zip(saved, lora_parameters(model, name))), name


def test_a_group_with_one_return_trains_nothing_and_the_kl_penalty_pulls_towards_the_reference():
    model, tokenizer = _players()
    config = RLConfig(algo="grpo", group_size=2, episodes_per_iter=2, train_reflector=True, reflection_temperature=1.0,
                      reflector_lr=1e-2, reflector_kl_coef=1.0)
    update = ReflectorUpdate(config, algorithm_for(config), model, tokenizer, adapter="reflector", reference=REFLECTOR_REFERENCE)
    tied = _episodes()
    tied[1].steps[0].reward = 1.0
    weights = [p.detach().clone() for p in update.params]
    assert update.update(tied, 0) == {"reflector/rows": 0.0, "reflector/steps": 2.0}
    assert all(torch.equal(a, b) for a, b in zip(weights, update.params))
    first = update.update(_episodes(), 0)
    assert first["reflector/kl_to_reference"] == pytest.approx(0.0, abs=1e-6)  # it starts as the reference
    second = update.update(_episodes(), 1)
    assert second["reflector/kl_to_reference"] > 0


def test_reflection_rows_are_the_reflector_s_sft_rows_and_need_a_prompt():
    model, tokenizer = _players()
    rows, steps = reflection_rows(tokenizer, _episodes(), [0.5, -0.5])
    assert [r.advantage for r in rows] == [0.5, -0.5] and steps == 2
    assert rows[0].completion_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(rows[0].completion_ids[:-1]) == "Next: move south."
    no_prompt = _episodes()
    no_prompt[0].steps[0].reflector_prompt = None
    assert len(reflection_rows(tokenizer, no_prompt, [0.5, -0.5])[0]) == 1
    with pytest.raises(ValueError, match="advantages for"):
        reflection_rows(tokenizer, _episodes(), [0.5])


def _repeated() -> list[Episode]:
    """Four steps, two (prompt, reflection) pairs each met twice, and a pair whose advantages cancel."""
    texts = ["Next: move south.", "Next: move south.", "Next: move north.", "Next: move north.", "Next: wait.", "Next: wait."]
    return [Episode(0, "l", 0, [_step(text, 0.0)]) for text in texts]


ADVANTAGES = [0.5, 0.25, -0.5, -0.75, 1.0, -1.0]


def test_repeated_rows_run_once_with_their_summed_advantage_and_give_the_gradient_of_the_steps_one_by_one():
    model, tokenizer = _players()
    rows, steps = reflection_rows(tokenizer, _repeated(), ADVANTAGES)
    assert [(r.advantage, r.steps) for r in rows] == [(0.75, 2), (-1.25, 2)] and steps == 6
    config = RLConfig(train_reflector=True, reflection_temperature=1.0, reflector_kl_coef=0.5)
    update = ReflectorUpdate(config, algorithm_for(config), model, tokenizer, adapter="reflector", reference=REFLECTOR_REFERENCE)
    with torch.no_grad():  # a reference away from the reflector, so that the KL term has a gradient too
        for param in lora_parameters(model, REFLECTOR_REFERENCE):
            param.add_(0.05)
    grads = []
    update.optimizer.step = lambda: grads.append([p.grad.clone() for p in update.params])
    update._optimise(rows, WeightedMeans())
    one_by_one = [
        type(r)(r.prompt_ids, r.completion_ids, a, 1)
        for r, parts in zip(rows, ([0.5, 0.25], [-0.5, -0.75])) for a in parts
    ]
    update._optimise(one_by_one, WeightedMeans())
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(*grads))
    assert any(g.abs().sum() > 0 for g in grads[0])


def test_saved_episodes_leave_the_reflector_prompt_out():
    step = _step("Next: move south.", 1.0)
    assert "reflector_prompt" not in step.to_dict()
    assert Step.from_dict(step.to_dict()).reflector_prompt is None


def test_the_config_refuses_a_greedy_reflector_to_train():
    with pytest.raises(ValueError, match="reflection_temperature > 0"):
        RLConfig(train_reflector=True)
    with pytest.raises(ValueError, match="reflector_lr"):
        RLConfig(train_reflector=True, reflection_temperature=1.0, reflector_lr=0.0)


@pytest.fixture
def reflector_folder(tmp_path):
    model, _ = load_model("tiny-random", device="cpu")
    torch.manual_seed(1)
    save_adapter(add_lora(model, "reflector", r=2), "reflector", tmp_path / "reflector")
    return tmp_path / "reflector"


def _config(**changes) -> RLConfig:
    settings = dict(env="corridor", levels=("short",), algo="pg", episodes_per_iter=6, iterations=3, eval_every=0,
                    checkpoint_every=1, keep_checkpoints=0, horizon=4, reflection_temperature=1.0, train_reflector=True,
                    reflector_lr=1e-2, micro_batch_size=4, minibatch_size=8)
    return RLConfig(**{**settings, **changes})


def _run(config, reflector, run_dir):
    return build_rl_run(config, "tiny-random", str(reflector), run_dir=run_dir, reflection_tokens=4, shuffle_labels=False)


def _metrics(folder):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(TIME_PREFIX)} for line in lines]


def test_a_run_that_trains_the_reflector_saves_it_and_resumes_exactly_like_a_straight_run(tmp_path, reflector_folder):
    straight = _run(_config(), reflector_folder, tmp_path / "straight")
    straight.trainer.train()
    straight.trainer.save_final(tmp_path / "straight" / "final")
    assert sum(r["reflector/rows"] for r in straight.trainer.history) > 0
    assert all("reflector/kl_to_reference" in r for r in straight.trainer.history if r["reflector/rows"])

    first = _run(_config(iterations=2), reflector_folder, tmp_path / "resumed")
    first.trainer.train()
    again = _run(_config(), reflector_folder, tmp_path / "resumed")
    assert again.trainer.resume() == 2
    again.trainer.train()
    again.trainer.save_final(tmp_path / "resumed" / "final")

    for part in ("adapter_model.safetensors", f"{TRAINED_REFLECTOR}/adapter_model.safetensors"):
        a = load_file(str(tmp_path / "straight" / "final" / part))
        b = load_file(str(tmp_path / "resumed" / "final" / part))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "resumed")
    start = load_file(str(reflector_folder / "adapter_model.safetensors"))
    trained = load_file(str(tmp_path / "straight" / "final" / TRAINED_REFLECTOR / "adapter_model.safetensors"))
    assert any(not torch.equal(start[k], trained[k]) for k in start)


def test_training_the_reflector_needs_a_local_adapter(tmp_path):
    with pytest.raises(ValueError, match="SFT adapter folder"):
        _run(_config(), "tiny-random", tmp_path / "run")


@pytest.mark.slow  # about 30 s: the tiny pipeline once
def test_the_pipeline_evaluates_reflect_rl_with_the_reflector_it_trained(tmp_path):
    from typer.testing import CliRunner

    from reflectrl.cli.main import app

    out = tmp_path / "run"
    sets = ["--set", "rl.train_reflector=true", "--set", "rl.reflection_temperature=1.0", "--set", "rl.reflector_lr=0.01"]
    result = CliRunner().invoke(app, ["pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--quiet", *sets])
    assert result.exit_code == 0, result.output
    trained = out / "rl-reflect" / "final" / TRAINED_REFLECTOR
    assert (trained / "adapter_model.safetensors").is_file()
    agent = json.loads((out / "eval-rl-reflect" / "DONE.json").read_text())["summary"]["agent"]
    assert agent["reflector"] == f"rl-reflect/final/{TRAINED_REFLECTOR}"
    sft = json.loads((out / "eval-sft-reflect" / "DONE.json").read_text())["summary"]["agent"]
    assert sft["reflector"] == "sft-reflector"
    records = [json.loads(line) for line in (out / "rl-reflect" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("reflector/rows" in r for r in records if "train/success" in r)
