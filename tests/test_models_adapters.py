"""LoRA adapters: standard PEFT folders, exact round trips, one shared base for both players."""

import json

import numpy as np
import pytest
import torch
from peft import PeftModel

from reflectrl.envs import make_env
from reflectrl.models import (
    adapter_scope,
    add_lora,
    load_model,
    lora_parameters,
    save_adapter,
)
from reflectrl.players import LabelPolicy, LocalReflector, TwoPlayerModel
from reflectrl.protocol import Menu, State, plain_prompt, reflector_prompt


def randomise_lora(model, adapter, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in lora_parameters(model, adapter):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def taxi_states(n=3):
    env = make_env("taxi")
    return [State.from_info(env.reset(seed=seed)[1]) for seed in range(n)]


def trained_adapters(tmp_path):
    """Two saved adapter folders with non-trivial weights, on the tiny base."""
    model, _ = load_model("tiny-random")
    model = add_lora(model, "reflector", r=4)
    model = add_lora(model, "policy", r=4)
    randomise_lora(model, "reflector", seed=1)
    randomise_lora(model, "policy", seed=2)
    save_adapter(model, "reflector", tmp_path / "reflector")
    save_adapter(model, "policy", tmp_path / "policy")
    return tmp_path / "reflector", tmp_path / "policy"


def test_lora_save_load_round_trip_is_exact(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    model = add_lora(model, "policy", r=4, alpha=8)
    randomise_lora(model, "policy", seed=3)
    save_adapter(model, "policy", tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random" and config["r"] == 4
    ids = torch.tensor([tokenizer.encode("Task: go north\nAction label:\n")])
    with torch.no_grad():
        expected = model(ids).logits
    # The standard PEFT way, on a freshly loaded base.
    base, _ = load_model("tiny-random")
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "ckpt"))
    saved = {n.replace(".policy.", "."): p for n, p in model.named_parameters() if "lora_" in n}
    again = {n.replace(".default.", "."): p for n, p in loaded.named_parameters() if "lora_" in n}
    assert saved.keys() == again.keys() and saved
    assert all(torch.equal(saved[n], again[n]) for n in saved)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, expected)
    # And through our loader, which finds the base from the adapter config.
    by_spec, _ = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(by_spec(ids).logits, expected)


def test_fresh_adapter_is_identity_and_base_is_not_copied(tiny_model):
    model, tokenizer = tiny_model
    ids = torch.tensor([tokenizer.encode("hello there")])
    with torch.no_grad():
        before = model(ids).logits
    embedding = model.get_input_embeddings().weight.data_ptr()
    peft_model = add_lora(model, "policy")
    peft_model = add_lora(peft_model, "reflector")
    with torch.no_grad():
        assert torch.equal(peft_model(ids).logits, before)
    assert peft_model.get_input_embeddings().weight.data_ptr() == embedding
    with pytest.raises(ValueError, match="already"):
        add_lora(peft_model, "policy")


def test_shared_base_gives_the_same_outputs_as_two_separate_models(tmp_path):
    reflector_dir, policy_dir = trained_adapters(tmp_path)
    shared = TwoPlayerModel.load("tiny-random", reflector=reflector_dir, policy=policy_dir)
    assert shared.adapters == ("reflector", "policy")
    separate_reflector, tokenizer = load_model(reflector_dir)
    separate_policy, _ = load_model(policy_dir)

    states = taxi_states()
    r_prompts = [reflector_prompt(s) for s in states]
    texts_shared = shared.local_reflector(reflection_tokens=8).generate_raw(r_prompts)
    texts_separate = LocalReflector(separate_reflector, tokenizer, reflection_tokens=8).generate_raw(r_prompts)
    assert texts_shared == texts_separate

    policy_shared = shared.label_policy()
    policy_separate = LabelPolicy(separate_policy, tokenizer)
    rng = np.random.default_rng(0)
    menus = [Menu.build(s.actions, policy_shared.label_set, rng) for s in states]
    prompts = [plain_prompt(s, m) for s, m in zip(states, menus)]
    with torch.no_grad():
        a = policy_shared.distribution(prompts, menus)
        b = policy_separate.distribution(prompts, menus)
    torch.testing.assert_close(a.log_probs, b.log_probs, atol=1e-6, rtol=0)

    # The players really differ from each other and from the base.
    with torch.no_grad(), shared.use("policy"):
        as_policy = shared.model(torch.tensor([tokenizer.encode(r_prompts[0])])).logits
    with torch.no_grad(), shared.use("reflector"):
        as_reflector = shared.model(torch.tensor([tokenizer.encode(r_prompts[0])])).logits
    with torch.no_grad(), shared.use(None):
        as_base = shared.model(torch.tensor([tokenizer.encode(r_prompts[0])])).logits
    base, _ = load_model("tiny-random")
    with torch.no_grad():
        assert torch.equal(as_base, base(torch.tensor([tokenizer.encode(r_prompts[0])])).logits)
    assert not torch.allclose(as_policy, as_reflector) and not torch.allclose(as_policy, as_base)

    # One copy of the base weights: both players read the same tensors.
    base_ptrs = {p.data_ptr() for n, p in shared.model.named_parameters() if "lora_" not in n}
    assert len(base_ptrs) == len([n for n, _ in base.named_parameters()])


def test_switching_adapters_keeps_the_reflector_frozen(tmp_path):
    reflector_dir, policy_dir = trained_adapters(tmp_path)
    players = TwoPlayerModel.load("tiny-random", reflector=reflector_dir, policy=policy_dir)
    frozen = lora_parameters(players.model, "reflector")
    trainable = lora_parameters(players.model, "policy")
    assert frozen and trainable
    assert not any(p.requires_grad for p in frozen) and all(p.requires_grad for p in trainable)
    for adapter in ("reflector", "policy", None, "reflector"):
        with players.use(adapter):
            pass
        with adapter_scope(players.model, adapter):
            pass
    assert not any(p.requires_grad for p in frozen) and all(p.requires_grad for p in trainable)
    assert players.model.active_adapter == "reflector"  # the first loaded adapter, restored after each scope


def test_missing_player_uses_the_base_weights(tmp_path):
    _, policy_dir = trained_adapters(tmp_path)
    players = TwoPlayerModel.load("tiny-random", policy=policy_dir)
    base, tokenizer = load_model("tiny-random")
    ids = torch.tensor([tokenizer.encode("Task: something\nReflection:")])
    with torch.no_grad(), players.use("reflector"):
        reflector_logits = players.model(ids).logits
    with torch.no_grad():
        assert torch.equal(reflector_logits, base(ids).logits)
    players.add_adapter("reflector", r=2)
    assert players.has("reflector")


def test_save_adapter_is_atomic(tiny_model, tmp_path, monkeypatch):
    model, _ = tiny_model
    model = add_lora(model, "policy", r=2)
    target = tmp_path / "ckpt"
    save_adapter(model, "policy", target)
    before = sorted(p.name for p in target.iterdir())

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, "policy", target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folders left behind
    with pytest.raises(KeyError, match="no adapter"):
        save_adapter(model, "nope", tmp_path / "x")


def test_policy_save_includes_the_value_head(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    model = add_lora(model, "policy", r=2)
    policy = LabelPolicy(model, tokenizer, adapter="policy", value_head=True)
    with torch.no_grad():
        for p in policy.value_head.parameters():
            p.normal_()
    policy.save(tmp_path / "policy")
    other = LabelPolicy(model, tokenizer, adapter="policy", value_head=True)
    other.load_value_head(tmp_path / "policy")
    for a, b in zip(policy.value_head.parameters(), other.value_head.parameters()):
        assert torch.equal(a, b)
    assert (tmp_path / "policy" / "adapter_config.json").is_file()
