"""Kept shared-prefix passes: reused across batches while the weights are unchanged, with the same numbers."""

import pytest
import torch

from reflectrl.envs import make_env
from reflectrl.models import add_lora
from reflectrl.models import prefix as prefix_module
from reflectrl.models.prefix import bare_decoder
from reflectrl.players import LabelPolicy, LocalReflector
from reflectrl.protocol import Menu, State, plain_prompt, reflector_prompt

pytestmark = pytest.mark.usefixtures("one_thread")


def taxi_states(seeds):
    env = make_env("taxi", level="dropoff")
    return [State.from_info(env.reset(seed=seed)[1]) for seed in seeds]


def kept(model) -> dict:
    return dict(prefix_module._kept.get(bare_decoder(model), {}))


def randomise(model, adapter, seed=1):
    """Non-zero LoRA weights, so that an adapter changes what the model computes."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name and f".{adapter}." in name:
                param.normal_(0, 0.2)


@pytest.fixture
def players(tiny_model):
    model, tokenizer = tiny_model
    model = add_lora(model, "reflector", r=4)
    model = add_lora(model, "policy", r=4)
    randomise(model, "reflector")
    randomise(model, "policy")
    model.eval()
    return model, tokenizer


def decide(policy, states):
    prompts = [plain_prompt(s, Menu.build(s.actions, policy.label_set)) for s in states]
    menus = [list(Menu.build(s.actions, policy.label_set).token_ids) for s in states]
    return policy.forward_ids(policy.encode(prompts), menus)


def test_policy_passes_are_kept_until_an_optimizer_step_and_give_the_same_numbers(players):
    model, tokenizer = players
    policy = LabelPolicy(model, tokenizer, adapter="policy")
    first, second = taxi_states(range(0, 4)), taxi_states(range(4, 9))
    with torch.no_grad():
        fresh = decide(policy, first)
        entries = kept(model)
        assert len(entries) == 1
        again, other = decide(policy, first), decide(policy, second)  # another batch with the same task text
        assert kept(model) == entries  # no new pass: the kept one served both batches
    assert torch.equal(again.log_probs, fresh.log_probs)
    prefix_module._kept.clear()
    with torch.no_grad():
        assert torch.equal(decide(policy, second).log_probs, other.log_probs)  # as if computed for its own batch
    # With gradients (the update's forward pass) the prefix runs every time, and keeps nothing.
    prefix_module._kept.clear()
    with_grad = decide(policy, first)
    assert not kept(model) and torch.equal(with_grad.log_probs.detach(), fresh.log_probs)

    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=0.1)
    (-with_grad.log_probs[:, 0].sum()).backward()
    optimizer.step()
    with torch.no_grad():
        after = decide(policy, first)
        assert len(kept(model)) == 1  # the step made the old pass stale: computed again
        prefix_module._kept.clear()
        assert torch.equal(decide(policy, first).log_probs, after.log_probs)
    assert not torch.equal(after.log_probs, fresh.log_probs)


def test_the_reflector_keeps_its_pass_while_the_policy_trains_on_the_same_base(players):
    model, tokenizer = players
    reflector = LocalReflector(model, tokenizer, adapter="reflector", reflection_tokens=6)
    policy = LabelPolicy(model, tokenizer, adapter="policy")
    prompts = [reflector_prompt(s) for s in taxi_states(range(3))]
    fresh = reflector.generate_raw(prompts)
    assert reflector.last_stats["prefix_tokens"] > 0
    entries = kept(model)
    assert len(entries) == 1

    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=0.1)
    (-decide(policy, taxi_states(range(2))).log_probs[:, 0].sum()).backward()
    optimizer.step()
    assert reflector.generate_raw(prompts) == fresh
    assert kept(model) == entries  # the policy's weights are not the reflector's: its pass is still valid

    with torch.no_grad():
        decide(policy, taxi_states(range(2)))
    assert len(kept(model)) == 2  # the policy's adapter makes another pass of the same tokens
    base = LocalReflector(model, tokenizer, adapter="none loaded", reflection_tokens=6)  # the base weights
    unadapted = base.generate_raw(prompts)
    assert len(kept(model)) == 3
    prefix_module._kept.clear()
    assert base.generate_raw(prompts) == unadapted and reflector.generate_raw(prompts) == fresh


def test_a_loaded_state_dict_makes_kept_passes_stale(players):
    model, tokenizer = players
    policy = LabelPolicy(model, tokenizer, adapter="policy")
    states = taxi_states(range(3))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = decide(policy, states)
        randomise(model, "policy", seed=2)  # other LoRA weights, written in place
        changed = decide(policy, states)
        model.load_state_dict(saved)
        restored = decide(policy, states)
    assert not torch.equal(changed.log_probs, before.log_probs)
    assert torch.equal(restored.log_probs, before.log_probs)
    assert len(kept(model)) == 3
