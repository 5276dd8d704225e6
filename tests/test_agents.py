"""Agents: one interface, records that let a trainer recompute exactly what was acted on."""

import math

import pytest
import torch

from reflectrl.envs import make_env
from reflectrl.evaluation.prompted_agent import PromptedAgent
from reflectrl.models import add_lora, encode_prompt
from reflectrl.players import LabelPolicy, LocalReflector
from reflectrl.players.agents import PlainAgent, ReflectiveAgent, StepRecord
from reflectrl.protocol import ACTION_CUE, REFLECT_CUE, Menu, State, plain_prompt


def taxi_states(n=3):
    env = make_env("taxi")
    return [State.from_info(env.reset(seed=seed)[1]) for seed in range(n)]


def two_players(tiny_model, value_head=True):
    model, tokenizer = tiny_model
    model = add_lora(model, "reflector", r=2)
    model = add_lora(model, "policy", r=2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    reflector = LocalReflector(model, tokenizer, adapter="reflector", reflection_tokens=6)
    policy = LabelPolicy(model, tokenizer, adapter="policy", value_head=value_head)
    return reflector, policy


def test_reflective_agent_records_what_training_needs(tiny_model):
    reflector, policy = two_players(tiny_model)
    agent = ReflectiveAgent(reflector, policy, seed=0)
    states = taxi_states()
    actions, records = agent.act(states, generator=torch.Generator().manual_seed(0))
    assert len(actions) == len(records) == 3
    for state, action, record in zip(states, actions, records):
        assert isinstance(record, StepRecord)
        assert 0 <= action < len(state.actions) and record.action == action
        assert record.reflector_prompt.endswith(REFLECT_CUE)
        assert f"Reflection: {record.reflection}" in record.prompt
        assert record.prompt.endswith(ACTION_CUE)
        assert record.prompt_ids == encode_prompt(policy.tokenizer, record.prompt)
        assert record.label_ids == [policy.label_set.token_ids[policy.label_set.labels.index(l)] for l in record.labels]
        assert record.value is not None and math.isfinite(record.log_prob) and record.entropy > 0
        # The label shown next to the chosen action is the label the policy scored.
        assert f"{record.labels[action]}. {state.actions[action]}" in record.prompt
    # A trainer recomputes the same numbers from the records alone.
    out = policy.forward_ids([r.prompt_ids for r in records], [r.label_ids for r in records])
    for i, record in enumerate(records):
        assert out.log_probs[i, record.action].item() == pytest.approx(record.log_prob, abs=1e-5)
        assert out.entropy[i].item() == pytest.approx(record.entropy, abs=1e-5)
        assert out.values[i].item() == pytest.approx(record.value, abs=1e-6)


def test_greedy_picks_the_argmax_and_sampling_is_reproducible(tiny_model):
    _, policy = two_players(tiny_model, value_head=False)
    states = taxi_states()
    actions, records = PlainAgent(policy, seed=3).act(states, greedy=True)
    out = policy.forward_ids([r.prompt_ids for r in records], [r.label_ids for r in records])
    assert actions == out.logits.argmax(-1).tolist()
    assert all(r.reflection is None and "Reflection:" not in r.prompt and r.value is None for r in records)
    first = PlainAgent(policy, seed=3).act(states, generator=torch.Generator().manual_seed(1))
    second = PlainAgent(policy, seed=3).act(states, generator=torch.Generator().manual_seed(1))
    assert first[0] == second[0] and [r.labels for r in first[1]] == [r.labels for r in second[1]]


def test_repeated_decision_rows_run_once_and_keep_their_own_samples(tiny_model, monkeypatch):
    """States met by several episodes at once are scored once; each episode still draws its own action."""
    _, policy = two_players(tiny_model, value_head=True)
    states = taxi_states(2)
    batch = [states[0], states[1], states[0], states[0], states[1]]
    seen = []
    forward = policy.forward_ids
    monkeypatch.setattr(policy, "forward_ids", lambda ids, labels: seen.append(len(ids)) or forward(ids, labels))
    agent = PlainAgent(policy, shuffle_labels=False, seed=0)
    actions, records = agent.act(batch, generator=torch.Generator().manual_seed(0))
    assert seen == [2]
    alone = forward([r.prompt_ids for r in records[:2]], [r.label_ids for r in records[:2]])
    for i, record in enumerate(records):
        j = 0 if batch[i] is states[0] else 1
        assert record.log_prob == pytest.approx(alone.log_probs[j, actions[i]].item(), abs=1e-5)
        assert record.value == pytest.approx(alone.values[j].item(), abs=1e-5)
    # Greedy: the same argmax for the same row; sampled: many copies do not all draw one action.
    greedy, _ = agent.act(batch, greedy=True)
    assert greedy[0] == greedy[2] == greedy[3] and greedy[1] == greedy[4]
    draws, _ = agent.act([states[0]] * 32, generator=torch.Generator().manual_seed(1))
    assert len(set(draws)) > 1


def test_label_shuffling(tiny_model):
    _, policy = two_players(tiny_model, value_head=False)
    states = taxi_states(1) * 4
    _, fixed = PlainAgent(policy, shuffle_labels=False).act(states)
    assert all(r.labels == policy.label_set.labels[: len(states[0].actions)] for r in fixed)
    _, shuffled = PlainAgent(policy, shuffle_labels=True, seed=0).act(states)
    assert len({r.labels for r in shuffled}) > 1
    assert all(sorted(r.labels) == sorted(fixed[0].labels) for r in shuffled)


def test_agents_play_the_environment(tiny_model):
    reflector, policy = two_players(tiny_model)
    agent = ReflectiveAgent(reflector, policy)
    envs = [make_env("taxi", level="full") for _ in range(2)]
    infos = [env.reset(seed=10 + i)[1] for i, env in enumerate(envs)]
    for _ in range(3):
        running = [i for i, env in enumerate(envs) if infos[i]["actions"]]
        if not running:
            break
        actions, _ = agent.act([State.from_info(infos[i]) for i in running])
        for i, action in zip(running, actions):
            _, _, _, _, infos[i] = envs[i].step(action)  # a finished episode offers no actions
            assert not infos[i]["invalid_action"]


def test_long_prompts_are_shortened_to_the_budget(tiny_model):
    _, policy = two_players(tiny_model, value_head=False)
    state = taxi_states(1)[0]
    history = tuple(f"move north -> step {i}" for i in range(60))
    long_state = State(state.task, state.observation, state.actions, history)
    policy.max_prompt_tokens = 400
    _, records = PlainAgent(policy).act([long_state])
    assert len(records[0].prompt_ids) <= 400
    assert "(earlier steps omitted)" in records[0].prompt


def test_prompted_local_model(tiny_model):
    model, tokenizer = tiny_model
    agent = PromptedAgent(model, tokenizer, answer_tokens=3)
    states = taxi_states(2)
    actions, records = agent.act(states, greedy=True)
    assert len(actions) == 2
    for state, action, record in zip(states, actions, records):
        assert record.action == action and (action is None or 0 <= action < 6)
        # an instruct tokenizer: the enumerated prompt is the user message of its chat template
        user = plain_prompt(state, Menu.build(state.actions, agent.label_set))
        expected = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        assert record.prompt == expected and record.prompt.index(user) > 0
        assert record.prompt_ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
        assert record.answer is not None
        assert math.isfinite(record.log_prob) and record.log_prob <= 0 and record.entropy > 0
    again, _ = agent.act(states, greedy=True)
    assert again == actions
    with pytest.raises(ValueError, match="tokenizer"):
        PromptedAgent(model)
    with pytest.raises(TypeError):
        PromptedAgent(object())


def test_prompted_model_without_chat_template_reads_the_raw_prompt(tiny_model):
    model, tokenizer = tiny_model
    states = taxi_states(2)
    _, records = PromptedAgent(model, tokenizer, chat=False).act(states, greedy=True)
    assert all(r.prompt.endswith(ACTION_CUE) and r.prompt_ids == encode_prompt(tokenizer, r.prompt) for r in records)
    tokenizer.chat_template = None
    agent = PromptedAgent(model, tokenizer)
    assert agent.chat is False
    _, again = agent.act(states, greedy=True)
    assert [r.prompt for r in again] == [r.prompt for r in records]
    with pytest.raises(ValueError, match="chat template"):
        PromptedAgent(model, tokenizer, chat=True)


def test_prompted_chat_prompts_fit_the_budget_with_the_template(tiny_model):
    model, tokenizer = tiny_model
    state = taxi_states(1)[0]
    long_state = State(state.task, state.observation, state.actions, tuple(f"move north -> step {i}" for i in range(60)))
    _, records = PromptedAgent(model, tokenizer, max_prompt_tokens=400).act([long_state], greedy=True)
    assert 380 < len(records[0].prompt_ids) <= 400  # the template's own tokens count against the budget
    assert "(earlier steps omitted)" in records[0].prompt and records[0].prompt.startswith("<|im_start|>system")


def test_constrained_prompted_agent_takes_the_most_likely_menu_label(tiny_model):
    model, tokenizer = tiny_model
    agent = PromptedAgent(model, tokenizer, constrained=True)
    states = taxi_states(3)
    actions, records = agent.act(states, greedy=True)
    for state, action, record in zip(states, actions, records):
        assert action is not None and record.answer == record.labels[action]
        # the label with the highest next-token logit right after the assistant header, among this menu's labels
        with torch.no_grad():
            logits = model(torch.tensor([record.prompt_ids])).logits[0, -1].double()
        label_logits = logits[record.label_ids[: len(state.actions)]]
        assert action == int(label_logits.argmax())
        assert record.log_prob == pytest.approx(float(torch.log_softmax(label_logits, -1)[action]), abs=1e-4)
        assert 0 < record.entropy <= math.log(len(state.actions)) + 1e-6
    sampled = [agent.act(states, generator=torch.Generator().manual_seed(s))[0] for s in (1, 1)]
    assert sampled[0] == sampled[1] and None not in sampled[0]


def test_bad_batches(tiny_model):
    _, policy = two_players(tiny_model, value_head=False)
    agent = PlainAgent(policy)
    assert agent.act([]) == ([], [])
    done = State(task="t", observation="o", actions=())
    with pytest.raises(ValueError, match="no actions"):
        agent.act([done])
