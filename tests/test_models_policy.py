"""The label-head policy: exact restriction of the LM's next-token distribution, batching, gradients."""

import numpy as np
import pytest
import torch

from reflectrl.envs import make_env
from reflectrl.models import add_lora
from reflectrl.players import LabelPolicy
from reflectrl.protocol import LabelSet, Menu, PromptTooLong, State, plain_prompt


def taxi_states(n, actions_per_state=None):
    env = make_env("taxi")
    states = []
    for seed in range(n):
        _, info = env.reset(seed=seed)
        state = State.from_info(info)
        if actions_per_state is not None:
            state = State(state.task, state.observation, state.actions[: actions_per_state[seed]], state.history)
        states.append(state)
    return states


def prompts_and_menus(policy, states, seed=0):
    rng = np.random.default_rng(seed)
    menus = [Menu.build(s.actions, policy.label_set, rng) for s in states]
    return [plain_prompt(s, m) for s, m in zip(states, menus)], menus


def full_vocab_restricted(model, ids, label_ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].double()
    full = torch.log_softmax(logits, -1)
    picked = full[list(label_ids)]
    return picked - torch.logsumexp(picked, -1)


def tiny_gpt2(vocab_size):
    """A GPT-2 style model: it adds a learned position embedding, so wrong position ids would show."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=1024, initializer_range=0.2)
    return GPT2LMHeadModel(config).eval()


def randomise_lora(model):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


@pytest.mark.parametrize("with_adapter", [False, True])
def test_label_distribution_is_the_restricted_full_softmax(tiny_model, with_adapter):
    model, tokenizer = tiny_model
    if with_adapter:
        model = add_lora(model, "policy", r=4)
        randomise_lora(model)
    policy = LabelPolicy(model, tokenizer, adapter="policy" if with_adapter else None)
    states = taxi_states(4, actions_per_state=[6, 3, 5, 2])
    prompts, menus = prompts_and_menus(policy, states)
    with torch.no_grad():
        out = policy.distribution(prompts, menus)
    for i, (ids, menu) in enumerate(zip(policy.encode(prompts), menus)):
        expected = full_vocab_restricted(model, ids, menu.token_ids)
        n = len(menu.actions)
        torch.testing.assert_close(out.log_probs[i, :n].double(), expected, atol=1e-5, rtol=0)
        assert out.mask[i].sum() == n
        assert torch.isinf(out.log_probs[i, n:]).all() and torch.isinf(out.logits[i, n:]).all()
        assert float(out.probs[i].sum()) == pytest.approx(1.0, abs=1e-6)
        assert out.probs[i].max() < 0.999  # a degenerate distribution would make the check meaningless
    assert out.log_probs.shape == (4, 6)


def test_left_padded_batch_equals_each_prompt_alone(tiny_model):
    model, tokenizer = tiny_model
    policy = LabelPolicy(model, tokenizer)
    states = taxi_states(3)
    # Different histories make the prompts differ in length, so the batch really is padded.
    states[1] = State(states[1].task, states[1].observation, states[1].actions, ("move north -> moved", "move west -> moved"))
    prompts, menus = prompts_and_menus(policy, states)
    lengths = {len(ids) for ids in policy.encode(prompts)}
    assert len(lengths) > 1
    with torch.no_grad():
        batch = policy.distribution(prompts, menus)
        for i in range(3):
            alone = policy.distribution([prompts[i]], [menus[i]])
            torch.testing.assert_close(batch.log_probs[i], alone.log_probs[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batch.entropy[i], alone.entropy[0], atol=1e-5, rtol=0)


def test_padding_is_correct_for_learned_position_embeddings(tiny_model):
    """GPT-2 style models add a learned position embedding, so wrong position ids would show."""
    _, tokenizer = tiny_model
    model = tiny_gpt2(len(tokenizer))
    policy = LabelPolicy(model, tokenizer)
    short = [1, 2, 3, 4]
    long = list(range(5, 30))
    labels = list(policy.label_set.token_ids[:4])
    with torch.no_grad():
        batch = policy.forward_ids([short, long], [labels, labels])
        alone = policy.forward_ids([short], [labels])
        expected = full_vocab_restricted(model, short, labels)
    torch.testing.assert_close(batch.log_probs[0], alone.log_probs[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(alone.log_probs[0].double(), expected, atol=1e-5, rtol=0)


def test_shared_prefix_gives_the_same_distributions_and_gradients(tiny_model):
    """Running the batch's common task text once changes neither the outputs nor the gradients."""
    from reflectrl.models.prefix import MIN_SHARED_PREFIX, shared_prefix_length

    model, tokenizer = tiny_model
    model = add_lora(model, "policy", r=4)
    randomise_lora(model)
    states = taxi_states(3, actions_per_state=[6, 4, 5])
    states[1] = State(states[1].task, states[1].observation, states[1].actions, ("move north -> moved",))
    results = {}
    for reuse in (True, False):
        torch.manual_seed(0)
        policy = LabelPolicy(model, tokenizer, adapter="policy", value_head=True, prefix_reuse=reuse)
        policy.value_head.net[-1].weight.data.normal_()
        prompts, menus = prompts_and_menus(policy, states)
        ids = policy.encode(prompts)
        assert shared_prefix_length(ids) >= MIN_SHARED_PREFIX and len({len(r) for r in ids}) > 1
        params = policy.trainable_parameters()
        model.zero_grad()
        out = policy.distribution(prompts, menus)
        (out.log_probs[:, 1].sum() + out.values.sum() + out.entropy.sum()).backward()
        grads = [p.grad.clone() for p in params if p.grad is not None]
        assert len(grads) == len(params)
        results[reuse] = (out.log_probs.detach(), out.values.detach(), grads)
    # float32 rounding of the other summation order only: log-probs of this random model are ~5 nats.
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[True][1], results[False][1], atol=1e-5, rtol=1e-5)
    for a, b in zip(results[True][2], results[False][2]):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-2)


def test_shared_prefix_positions_with_learned_position_embeddings(tiny_model):
    _, tokenizer = tiny_model
    model = tiny_gpt2(len(tokenizer))
    policy = LabelPolicy(model, tokenizer)
    common = list(range(100, 140))
    rows = [common + [1, 2], common + list(range(5, 30))]
    labels = list(policy.label_set.token_ids[:4])
    with torch.no_grad():
        batch = policy.forward_ids(rows, [labels, labels])
    for i, row in enumerate(rows):
        expected = full_vocab_restricted(model, row, labels)
        torch.testing.assert_close(batch.log_probs[i].double(), expected, atol=1e-5, rtol=0)


def test_bf16_autocast_stays_close_to_float32(tiny_model):
    model, tokenizer = tiny_model
    prompts, menus = prompts_and_menus(LabelPolicy(model, tokenizer), taxi_states(2))
    with torch.no_grad():
        full = LabelPolicy(model, tokenizer).distribution(prompts, menus)
        half = LabelPolicy(model, tokenizer, bf16=True).distribution(prompts, menus)
    assert half.log_probs.dtype == torch.float32
    torch.testing.assert_close(half.probs, full.probs, atol=0.03, rtol=0)


def test_temperature_entropy_and_value_head(tiny_model):
    model, tokenizer = tiny_model
    policy = LabelPolicy(model, tokenizer, value_head=True)
    prompts, menus = prompts_and_menus(policy, taxi_states(2))
    with torch.no_grad():
        cold = policy.distribution(prompts, menus)
        hot = policy.distribution(prompts, menus, temperature=2.0)
    torch.testing.assert_close(hot.logits, cold.logits / 2.0)
    torch.testing.assert_close(hot.log_probs, torch.log_softmax(cold.logits / 2.0, -1))
    p = cold.probs
    torch.testing.assert_close(cold.entropy, -(p * cold.log_probs.nan_to_num(neginf=0.0)).sum(-1))
    assert (hot.entropy > cold.entropy).all()
    assert cold.values is not None and cold.values.shape == (2,)
    with pytest.raises(ValueError):
        policy.distribution(prompts, menus, temperature=0.0)


def test_gradients_reach_the_policy_adapter_and_value_head_only(tiny_model):
    model, tokenizer = tiny_model
    model = add_lora(model, "reflector", r=4)
    model = add_lora(model, "policy", r=4)
    policy = LabelPolicy(model, tokenizer, adapter="policy", value_head=True)
    params = policy.trainable_parameters()
    names = {id(p): n for n, p in model.named_parameters()}
    head = {id(p) for p in policy.value_head.parameters()}
    assert len(head) == 4 and len(params) > len(head)
    assert all(id(p) in head or ".policy." in names[id(p)] for p in params)
    prompts, menus = prompts_and_menus(policy, taxi_states(2))
    out = policy.distribution(prompts, menus)
    loss = -(out.log_probs[:, 0]).sum() + (out.values**2).sum() + out.entropy.sum()
    loss.backward()
    lora_grads = [p.grad for p in params if p.grad is not None]
    assert len(lora_grads) == len(params)
    assert any(g.abs().sum() > 0 for g in lora_grads)
    for name, param in model.named_parameters():
        if "lora_" not in name or ".policy." not in name:
            assert param.grad is None, name
    with torch.no_grad():
        assert not policy.distribution(prompts, menus).log_probs.requires_grad


def test_choose_greedy_sampled_and_reproducible(tiny_model):
    model, tokenizer = tiny_model
    policy = LabelPolicy(model, tokenizer)
    states = taxi_states(3, actions_per_state=[6, 2, 4])
    prompts, menus = prompts_and_menus(policy, states)
    with torch.no_grad():
        out = policy.distribution(prompts, menus, temperature=3.0)
    assert torch.equal(policy.choose(out, greedy=True), out.logits.argmax(-1))
    first = policy.choose(out, generator=torch.Generator().manual_seed(7))
    again = policy.choose(out, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([policy.choose(out, generator=generator) for _ in range(3000)])
    for i, n in enumerate([6, 2, 4]):
        assert int(draws[:, i].max()) < n  # masked labels are never drawn
        freq = torch.bincount(draws[:, i], minlength=out.mask.shape[1]).float() / len(draws)
        torch.testing.assert_close(freq, out.probs[i].float(), atol=0.035, rtol=0)


def test_prompt_budget_and_bad_inputs(tiny_model):
    model, tokenizer = tiny_model
    policy = LabelPolicy(model, tokenizer, max_prompt_tokens=50)
    prompts, menus = prompts_and_menus(policy, taxi_states(1))
    with pytest.raises(PromptTooLong):
        policy.distribution(prompts, menus)
    policy.max_prompt_tokens = None
    with pytest.raises(ValueError, match="label lists"):
        policy.forward_ids([[1, 2]], [])
    with pytest.raises(ValueError, match="at least one label"):
        policy.forward_ids([[1, 2]], [[]])
    plain_menu = Menu.build(taxi_states(1)[0].actions, LabelSet.plain())
    with pytest.raises(ValueError, match="token ids"):
        policy.distribution(prompts, [plain_menu])
    with pytest.raises(ValueError, match="token ids"):
        LabelPolicy(model, tokenizer, LabelSet.plain())


def test_trainable_parameters_need_an_adapter(tiny_model):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError, match="add_lora"):
        LabelPolicy(model, tokenizer, adapter="policy").trainable_parameters()
    model = add_lora(model, "reflector", r=2)
    with pytest.raises(ValueError, match="not loaded"):
        LabelPolicy(model, tokenizer, adapter="polcy").trainable_parameters()
    assert LabelPolicy(model, tokenizer, value_head=True).trainable_parameters()  # the active adapter


def _tiny_of_family(family, vocab_size):
    """A tiny random model whose LM head scales its logits: Granite divides them, Cohere multiplies them."""
    from transformers import CohereConfig, CohereForCausalLM, GraniteConfig, GraniteForCausalLM

    shape = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, initializer_range=0.2)
    torch.manual_seed(0)
    if family == "granite":
        return GraniteForCausalLM(GraniteConfig(**shape, logits_scaling=0.25)).eval()
    return CohereForCausalLM(CohereConfig(**shape, logit_scale=4.0, tie_word_embeddings=False)).eval()


@pytest.mark.parametrize("family", ["granite", "cohere"])
def test_label_head_applies_the_model_s_own_logit_scaling(tiny_model, family):
    _, tokenizer = tiny_model
    model = _tiny_of_family(family, len(tokenizer))
    policy = LabelPolicy(model, tokenizer)
    states = taxi_states(2)
    prompts, menus = prompts_and_menus(policy, states)
    with torch.no_grad():
        out = policy.distribution(prompts, menus)
    for i, (ids, menu) in enumerate(zip(policy.encode(prompts), menus)):
        expected = full_vocab_restricted(model, ids, menu.token_ids)
        torch.testing.assert_close(out.log_probs[i, : len(menu.actions)].double(), expected, atol=1e-5, rtol=0)
