"""Batched reflection generation: stopping at the policy cue, prefix reuse, chunked prefill, seeding."""

import pytest
import torch

from reflectrl.envs import make_env
from reflectrl.models import encode_prompt
from reflectrl.models.prefix import shared_prefix_length
from reflectrl.players import LocalReflector, Reflector
from reflectrl.protocol import State, reflector_prompt


def reflector_prompts(n=3):
    env = make_env("taxi")
    return [reflector_prompt(State.from_info(env.reset(seed=seed)[1])) for seed in range(n)]


def teach(model, tokenizer, prompts, completion, steps=40):
    """Fine-tune the tiny model until it continues every prompt with `completion`."""
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    target = tokenizer.encode(completion, add_special_tokens=False)
    for _ in range(steps):
        for prompt in prompts:
            ids = encode_prompt(tokenizer, prompt)
            inputs = torch.tensor([ids + target])
            labels = torch.tensor([[-100] * len(ids) + target])
            loss = model(input_ids=inputs, labels=labels).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()


def test_generation_stops_at_the_policy_cue(tiny_model):
    model, tokenizer = tiny_model
    # Short prompts keep the fine-tuning quick; the stop logic does not depend on the prompt.
    prompts = ["Task: reach the exit.\nReflection:", "Task: find the key.\nReflection:"]
    teach(model, tokenizer, prompts, " Good move, go north.\nActions:\n0. move north\n1. move south")
    reflector = LocalReflector(model, tokenizer, reflection_tokens=40)
    assert isinstance(reflector, Reflector)
    assert reflector.reflect(prompts) == ["Good move, go north."] * 2
    # It stopped at the cue instead of writing the whole menu.
    assert reflector.last_stats["new_tokens"] < 2 * 20
    raw = reflector.generate_raw(prompts)
    assert all(text.rstrip().endswith("Actions:") for text in raw)


def test_prefix_reuse_matches_generation_from_scratch(tiny_model):
    model, tokenizer = tiny_model
    prompts = reflector_prompts(4)
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    assert shared_prefix_length(ids) >= 32
    plain = LocalReflector(model, tokenizer, reflection_tokens=12, prefix_reuse=False)
    reused = LocalReflector(model, tokenizer, reflection_tokens=12, prefix_reuse=True)
    assert reused.generate_raw(prompts) == plain.generate_raw(prompts)
    assert reused.last_stats["prefix_tokens"] == shared_prefix_length(ids)
    assert plain.last_stats["prefix_tokens"] == 0
    # Next-token logits after the prefilled prefix equal those of a full forward pass.
    input_ids, mask, cache, shared = reused.prepare_inputs(ids)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=input_ids[:, shared:], attention_mask=mask, position_ids=position_ids[:, shared:], cache=cache)
        for i, row in enumerate(ids):
            alone = model(torch.tensor([row])).logits[0, -1]
            torch.testing.assert_close(out.logits[i, -1], alone, atol=1e-4, rtol=0)


def test_batch_equals_single_prompts(tiny_model):
    model, tokenizer = tiny_model
    prompts = reflector_prompts(3)
    reflector = LocalReflector(model, tokenizer, reflection_tokens=10)
    batch = reflector.generate_raw(prompts)
    assert batch == [reflector.generate_raw([p])[0] for p in prompts]
    assert reflector.reflect([]) == []


def test_sampling_is_seeded_and_greedy_is_deterministic(tiny_model):
    model, tokenizer = tiny_model
    prompts = reflector_prompts(2)
    first = LocalReflector(model, tokenizer, reflection_tokens=10, temperature=1.0, seed=5)
    second = LocalReflector(model, tokenizer, reflection_tokens=10, temperature=1.0, seed=5)
    a1, a2 = first.generate_raw(prompts), first.generate_raw(prompts)
    assert a1 == second.generate_raw(prompts) and a2 == second.generate_raw(prompts)
    assert a1 != a2  # each call draws fresh samples
    state = torch.get_rng_state()
    greedy = LocalReflector(model, tokenizer, reflection_tokens=10)
    assert greedy.generate_raw(prompts) == greedy.generate_raw(prompts)
    assert torch.equal(torch.get_rng_state(), state)


def test_reflection_tokens_is_respected(tiny_model):
    model, tokenizer = tiny_model
    reflector = LocalReflector(model, tokenizer, reflection_tokens=3)
    texts = reflector.generate_raw(reflector_prompts(2))
    assert all(len(tokenizer.encode(t, add_special_tokens=False)) <= 4 for t in texts)
    assert reflector.last_stats["new_tokens"] <= 6


def test_chunked_prefill_gives_the_same_reflections(tiny_model):
    model, tokenizer = tiny_model
    prompts = reflector_prompts(3)
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    assert len({len(row) for row in ids}) > 1  # left padding is exercised, chunks of only padding included
    whole = LocalReflector(model, tokenizer, reflection_tokens=12, prefix_reuse=False, prefill_chunk_size=None)
    expected = whole.generate_raw(prompts)
    prefill_passes = []
    hook = model.model.register_forward_hook(
        lambda module, args, kwargs, out: prefill_passes.append(kwargs["input_ids"].shape[1])
        if kwargs.get("input_ids") is not None and kwargs["input_ids"].shape[1] > 1 else None,
        with_kwargs=True,
    )
    try:
        for reuse in (False, True):
            prefill_passes.clear()
            chunked = LocalReflector(model, tokenizer, reflection_tokens=12, prefix_reuse=reuse, prefill_chunk_size=8)
            assert chunked.generate_raw(prompts) == expected
            # The prompt (or, with reuse, the part after the shared prefix) was read 8 tokens at a time.
            read = max(len(row) for row in ids) - chunked.last_stats["prefix_tokens"]
            chunks = [n for n in prefill_passes if n != chunked.last_stats["prefix_tokens"]]
            assert chunks == [8] * (read // 8) + ([read % 8] if read % 8 else [])
    finally:
        hook.remove()


def test_generation_projects_only_the_last_position(tiny_model):
    from reflectrl.models import add_lora

    model, tokenizer = tiny_model
    model = add_lora(model, "reflector")
    widths, contiguous = [], []
    head = model.get_output_embeddings()

    def record(module, args, out):
        widths.append(out.shape[1])
        contiguous.append(args[0].is_contiguous())

    hook = head.register_forward_hook(record)
    try:
        for chunk in (None, 16):
            reflector = LocalReflector(model, tokenizer, adapter="reflector", reflection_tokens=5, prefill_chunk_size=chunk)
            reflector.generate_raw(reflector_prompts(3))
    finally:
        hook.remove()
    # Full-vocabulary logits for every prompt position would be [batch, prompt length, vocabulary].
    assert widths and set(widths) == {1}
    # A chunk's last position reached the head as a contiguous tensor (a strided slice takes torch's slow path),
    # and the hook that makes it so is gone after generation.
    assert all(contiguous) and not head._forward_pre_hooks


def test_prefill_chunk_size_is_checked(tiny_model):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError, match="prefill_chunk_size"):
        LocalReflector(model, tokenizer, prefill_chunk_size=0)
