"""Warm-up SFT: tokenization, held-out split, label accuracy, outputs, checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from reflectrl.datagen import GenConfig, generate, load_rows
from reflectrl.models import prefix
from reflectrl.models.prefix import shared_prefix_length
from reflectrl.protocol import LabelSet, MenuLayout, load_label_order
from reflectrl.trainers.sft import (
    CHECKPOINTS,
    WarmupError,
    complete_checkpoints,
    completion_loss,
    label_accuracy,
    pad_batch,
    run_warmup,
    split_rows,
    step_callback,
    tokenize_rows,
)
from reflectrl.trainers.sft_config import SFTConfig


@pytest.fixture(scope="module")
def taxi_data(tmp_path_factory, smollm2_tokenizer) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sftdata")
    # Pickup level: short episodes, so prompts stay short and the tiny model trains fast.
    config = GenConfig(env="taxi", out=str(out), episodes=8, negatives=1, level="pickup", horizon=6)
    generate(config, tokenizer=smollm2_tokenizer, show_progress=False)
    return out


def _config(folder: Path, out: Path, role="plain", **kw) -> SFTConfig:
    base = dict(
        role=role, data=str(folder / f"{role}.jsonl"), out=str(out), model="tiny-random", max_steps=4,
        batch_size=2, save_steps=2, eval_steps=2, eval_fraction=0.25, max_eval_rows=8, bf16=False, seed=0,
    )
    base.update(kw)
    return SFTConfig(**base)


def test_tokenized_rows_train_only_the_completion(taxi_data, smollm2_tokenizer):
    labels = LabelSet.for_tokenizer(smollm2_tokenizer)
    rows = load_rows(taxi_data / "policy.jsonl")[:5]
    examples, kept = tokenize_rows(rows, "policy", smollm2_tokenizer, labels, 4096)
    assert kept == rows
    for example, row in zip(examples, rows):
        assert sum(example["completion_mask"]) == 1 and example["completion_mask"][-1] == 1
        assert example["input_ids"][-1] == labels.token_ids[labels.labels.index(row["completion"])]
    reflector = load_rows(taxi_data / "reflector.jsonl")[:3]
    examples, _ = tokenize_rows(reflector, "reflector", smollm2_tokenizer, labels, 4096)
    for example in examples:
        assert example["input_ids"][-1] == smollm2_tokenizer.eos_token_id
        assert sum(example["completion_mask"]) > 5
    _, kept = tokenize_rows(rows, "policy", smollm2_tokenizer, labels, 50)
    assert kept == []
    batch = pad_batch(examples, pad_id=0)
    assert batch["input_ids"].shape == batch["labels"].shape
    assert ((batch["labels"] != -100) == (batch["attention_mask"].bool() & (batch["labels"] != -100))).all()


@pytest.mark.parametrize("role", ["plain", "reflector"])
def test_shared_prefix_loss_equals_the_plain_loss(taxi_data, role, monkeypatch):
    """Running the batch's common prefix once gives the same loss and gradients as running every row whole."""
    from reflectrl.models import add_lora, load_model

    model, tokenizer = load_model("tiny-random")
    model = add_lora(model, "default", r=4, alpha=8)
    labels = LabelSet.for_tokenizer(tokenizer)
    rows = load_rows(taxi_data / f"{role}.jsonl")[:4]
    examples, _ = tokenize_rows(rows, role, tokenizer, labels, 4096)
    batch = pad_batch(examples, pad_id=tokenizer.pad_token_id)
    completion_start = int((batch["labels"] != -100).float().argmax(dim=1).min())
    assert shared_prefix_length(batch["input_ids"], completion_start) >= prefix.MIN_SHARED_PREFIX

    def loss_and_grads():
        model.zero_grad()
        loss = completion_loss(model, batch)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    shared_loss, shared_grads = loss_and_grads()
    monkeypatch.setattr(prefix, "MIN_SHARED_PREFIX", 10**9)
    whole_loss, whole_grads = loss_and_grads()
    torch.testing.assert_close(shared_loss, whole_loss, rtol=1e-5, atol=1e-5)
    for a, b in zip(shared_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_focal_loss_weighs_tokens_by_how_wrong_they_are():
    from reflectrl.trainers.sft import token_loss

    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.1]])
    targets = torch.tensor([0, 0, 2])  # right and sure, wrong and sure, right and unsure
    plain = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert torch.equal(token_loss(logits, targets), torch.nn.functional.cross_entropy(logits, targets))
    p = torch.exp(-plain)
    torch.testing.assert_close(token_loss(logits, targets, 2.0), ((1 - p) ** 2 * plain).mean())
    # The sure and right token keeps almost nothing of its term, the sure and wrong one almost all of it.
    weights = (1 - p) ** 2
    assert weights[0] < 0.01 and weights[1] > 0.95 and weights[0] < weights[2] < weights[1]


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_completion_loss_equals_the_whole_rows_loss(taxi_data, gamma):
    """The shared-prefix loss and the one DDP runs (the model's forward over whole rows) agree, focal or not."""
    from reflectrl.models import add_lora, load_model
    from reflectrl.trainers.sft import whole_rows_loss

    model, tokenizer = load_model("tiny-random")
    model = add_lora(model, "default", r=4, alpha=8)
    rows = load_rows(taxi_data / "reflector.jsonl")[:4]
    examples, _ = tokenize_rows(rows, "reflector", tokenizer, LabelSet.for_tokenizer(tokenizer), 4096)
    batch = pad_batch(examples, pad_id=tokenizer.pad_token_id)
    torch.testing.assert_close(completion_loss(model, batch, gamma), whole_rows_loss(model, batch, gamma), rtol=1e-5, atol=1e-5)
    if gamma:
        assert completion_loss(model, batch, gamma) < completion_loss(model, batch)


def test_negative_focal_gamma_is_refused(taxi_data, tmp_path):
    with pytest.raises(WarmupError, match="focal_gamma"):
        SFTConfig(role="reflector", data=str(taxi_data / "reflector.jsonl"), out=str(tmp_path), focal_gamma=-1).check()


def test_held_out_split_keeps_episodes_whole(taxi_data):
    rows = load_rows(taxi_data / "plain.jsonl")
    train, held = split_rows(rows, 0.25, seed=0)
    assert train and held and len(train) + len(held) == len(rows)
    assert not {r["seed"] for r in train} & {r["seed"] for r in held}


def test_label_accuracy_counts_argmax_over_the_menu(taxi_data):
    from reflectrl.models import load_model
    from reflectrl.players import LabelPolicy
    from reflectrl.protocol import Menu

    model, tokenizer = load_model("tiny-random")
    labels = LabelSet.for_tokenizer(tokenizer)
    rows = load_rows(taxi_data / "plain.jsonl")[:6]
    policy = LabelPolicy(model, tokenizer, labels)
    ids = dict(zip(labels.labels, labels.token_ids))
    menus = [Menu(tuple(r["menu_actions"]), tuple(r["labels"]), tuple(ids[x] for x in r["labels"])) for r in rows]
    best = policy.distribution([r["prompt"] for r in rows], menus).logits.argmax(-1).tolist()
    right = [dict(r, completion=m.labels[b]) for r, m, b in zip(rows, menus, best)]
    wrong = [dict(r, completion=m.labels[(b + 1) % len(m.labels)]) for r, m, b in zip(rows, menus, best)]
    assert label_accuracy(model, tokenizer, labels, right) == 1.0
    assert label_accuracy(model, tokenizer, labels, wrong) == 0.0


def test_plain_sft_writes_adapter_config_metrics_and_logs(taxi_data, tmp_path):
    from peft import PeftModel

    from reflectrl.models import load_model

    out = tmp_path / "plain"
    result = run_warmup(_config(taxi_data, out, learning_rate=5e-3), show_progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["global_step"] == 4 and 0.0 <= metrics["label_accuracy"] <= 1.0
    assert metrics["tokens_per_row"] > 1 and metrics["rows_per_second"] > 0
    assert metrics["eval_rows"] > 0 and "eval_loss" in metrics and "chance_accuracy" in metrics
    assert any("eval_label_accuracy" in h for h in metrics["eval_history"])
    saved = json.loads((out / "warmup_config.json").read_text())
    assert saved["role"] == "plain" and saved["learning_rate"] == 5e-3
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert list((out / "logs").glob("events.out.tfevents.*"))
    assert load_label_order(out) == MenuLayout(shuffle_labels=True, label_after=False)  # as the fixture's data
    model, _ = load_model(out)
    assert isinstance(model, PeftModel)
    # The adapter changed the model: its LoRA B matrices are no longer zero.
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_a_run_without_progress_prints_nothing_and_reports_every_step_to_its_callback(taxi_data, tmp_path, capfd):
    reports: list[tuple[int, int, dict]] = []
    run_warmup(
        _config(taxi_data, tmp_path / "plain", logging_steps=2), show_progress=False,
        callbacks=[step_callback(lambda step, steps, logs: reports.append((step, steps, logs)))],
    )
    assert capfd.readouterr().out == ""  # transformers printed each logged dict in place of the bar
    assert [r[:2] for r in reports if not r[2]] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    logged = [r for r in reports if r[2]]
    assert [r[0] for r in logged if "loss" in r[2]] == [2, 4] and "train_loss" in logged[-1][2]


def test_training_lowers_the_eval_loss(taxi_data, tmp_path):
    first = run_warmup(_config(taxi_data, tmp_path / "a", max_steps=1, learning_rate=1e-2), show_progress=False)
    longer = run_warmup(_config(taxi_data, tmp_path / "b", max_steps=12, learning_rate=1e-2, eval_steps=0), show_progress=False)
    assert longer.metrics["eval_loss"] < first.metrics["eval_loss"]


def test_reflector_sft_runs(taxi_data, tmp_path):
    result = run_warmup(_config(taxi_data, tmp_path / "r", role="reflector", max_steps=2), show_progress=False)
    assert "label_accuracy" not in result.metrics and result.metrics["eval_loss"] > 0


class _Killed(Exception):
    pass


class _KillAfter(TrainerCallback):
    """Stops the process-like run right after the checkpoint of step `step` was written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise _Killed()


def test_resume_continues_from_the_last_checkpoint(taxi_data, tmp_path):
    out = tmp_path / "resume"
    with pytest.raises(_Killed):
        run_warmup(_config(taxi_data, out, max_steps=6, eval_steps=0), show_progress=False, callbacks=[_KillAfter(2)])
    assert [p.name for p in complete_checkpoints(out / CHECKPOINTS)] == ["checkpoint-2"]
    # A checkpoint torn by a kill while it was being written is ignored.
    (out / CHECKPOINTS / "checkpoint-4").mkdir()
    with pytest.raises(WarmupError, match="--resume"):
        run_warmup(_config(taxi_data, out, max_steps=6, eval_steps=0), show_progress=False)
    with pytest.raises(WarmupError, match="different settings"):
        run_warmup(_config(taxi_data, out, max_steps=6, eval_steps=0, learning_rate=1.0, resume=True), show_progress=False)
    result = run_warmup(_config(taxi_data, out, max_steps=6, eval_steps=0, resume=True), show_progress=False)
    assert result.metrics["resumed_from"] == "checkpoint-2"
    assert result.metrics["global_step"] == 6
    assert not (out / CHECKPOINTS / "checkpoint-4").exists() or complete_checkpoints(out / CHECKPOINTS)[-1].name == "checkpoint-6"
    state = json.loads((out / CHECKPOINTS / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


def _same_adapter(a: Path, b: Path) -> bool:
    first, second = _adapter(a), _adapter(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("role", ["plain", "reflector"])
def test_a_run_killed_after_its_last_checkpoint_resumes_to_the_straight_result(taxi_data, tmp_path, role):
    straight = run_warmup(_config(taxi_data, tmp_path / "straight", role=role, eval_steps=0), show_progress=False)
    killed = tmp_path / "killed"
    with pytest.raises(_Killed):  # checkpoint-4 written, final adapter and metrics not yet
        run_warmup(_config(taxi_data, killed, role=role, eval_steps=0), show_progress=False, callbacks=[_KillAfter(4)])
    assert not (killed / "adapter_model.safetensors").exists()
    resumed = run_warmup(_config(taxi_data, killed, role=role, eval_steps=0, resume=True), show_progress=False)
    # transformers' loop would take a fifth step here before looking at max_steps.
    assert resumed.metrics["resumed_from"] == "checkpoint-4" and resumed.metrics["global_step"] == 4
    assert _same_adapter(tmp_path / "straight", killed)
    assert resumed.metrics["eval_loss"] == straight.metrics["eval_loss"]
    assert resumed.metrics["eval_history"] == straight.metrics["eval_history"]


def test_a_run_killed_mid_way_resumes_bit_for_bit(taxi_data, tmp_path):
    run_warmup(_config(taxi_data, tmp_path / "straight", max_steps=6, eval_steps=0), show_progress=False)
    with pytest.raises(_Killed):
        run_warmup(_config(taxi_data, tmp_path / "killed", max_steps=6, eval_steps=0), show_progress=False, callbacks=[_KillAfter(2)])
    run_warmup(_config(taxi_data, tmp_path / "killed", max_steps=6, eval_steps=0, resume=True), show_progress=False)
    assert _same_adapter(tmp_path / "straight", tmp_path / "killed")


def test_the_adapter_does_not_depend_on_what_ran_before_in_the_process(taxi_data, tmp_path):
    # A pipeline runs data generation and other SFT runs first, each leaving torch's generator elsewhere.
    torch.manual_seed(1)
    run_warmup(_config(taxi_data, tmp_path / "a", max_steps=1, eval_steps=0), show_progress=False)
    torch.manual_seed(2)
    torch.rand(3)
    run_warmup(_config(taxi_data, tmp_path / "b", max_steps=1, eval_steps=0), show_progress=False)
    assert _same_adapter(tmp_path / "a", tmp_path / "b")


def test_bad_inputs_are_clear_errors(taxi_data, tmp_path):
    with pytest.raises(WarmupError, match="unknown role"):
        run_warmup(_config(taxi_data, tmp_path / "x", role="critic", data=str(taxi_data / "plain.jsonl")))
    with pytest.raises(WarmupError, match="lacks the columns"):
        run_warmup(_config(taxi_data, tmp_path / "y", role="policy", data=str(taxi_data / "reflector.jsonl")))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(WarmupError, match="cannot read"):
        run_warmup(_config(taxi_data, tmp_path / "z", data=str(broken)))


def test_sft_cli_reports_errors_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from reflectrl.cli.main import app

    result = CliRunner().invoke(app, ["sft", "--role", "plain", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output


def test_a_policy_trained_on_label_after_menus_records_it_and_plays_with_it(smollm2_tokenizer, tmp_path):
    from reflectrl.envs import make_env
    from reflectrl.players.load import load_rl_players
    from reflectrl.protocol import State

    data = tmp_path / "data"
    generate(
        GenConfig(env="taxi", out=str(data), episodes=4, negatives=0, level="pickup", horizon=6, label_after=True),
        tokenizer=smollm2_tokenizer, show_progress=False,
    )
    out = tmp_path / "policy"
    run_warmup(_config(data, out, role="policy", max_steps=1, eval_steps=0), show_progress=False)
    assert load_label_order(out) == MenuLayout(shuffle_labels=True, label_after=True)
    players = load_rl_players(str(out), None)
    assert players.agent.label_after is True
    env = make_env("taxi", level="pickup")
    _, info = env.reset(seed=0)
    _, records = players.agent.act([State.from_info(info)], greedy=True)
    assert f"{info['actions'][0]} ({records[0].labels[0]})" in records[0].prompt
    # A file that mixes both layouts is refused before any training.
    rows = [json.loads(line) for line in (data / "policy.jsonl").read_text().splitlines()]
    rows[0]["label_after"] = False
    (data / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(WarmupError, match="mixes"):
        run_warmup(_config(data, tmp_path / "mixed", role="policy", data=str(data / "mixed.jsonl")), show_progress=False)
