import numpy as np
import pytest

from reflectrl.envs import make_env
from reflectrl.envs.base import PAGE_ACTION_PREFIX, Outcome, TextEnv
from reflectrl.protocol import (
    ACTION_CUE,
    REFLECT_CUE,
    LabelSet,
    Menu,
    PromptTooLong,
    State,
    clean_reflection,
    parse_label,
    plain_prompt,
    policy_prompt,
    reflection_in,
    reflector_prompt,
    replace_reflection,
)


def taxi_state(seed=0, steps=0):
    env = make_env("taxi")
    _, info = env.reset(seed=seed)
    for _ in range(steps):
        _, _, _, _, info = env.step(env.oracle_action())
    return State.from_info(info)


def test_smollm2_labels_are_single_tokens_after_the_cue(smollm2_tokenizer):
    labels = LabelSet.for_tokenizer(smollm2_tokenizer)
    assert len(labels) == 62
    assert labels.labels[:10] == tuple("0123456789")
    state = taxi_state()
    menu = Menu.build(state.actions, labels)
    prompt = plain_prompt(state, menu)
    base = smollm2_tokenizer.encode(prompt, add_special_tokens=False)
    for label, token in zip(menu.labels, menu.token_ids):
        full = smollm2_tokenizer.encode(prompt + label, add_special_tokens=False)
        assert full == base + [token]
    # multi-digit numbers are several tokens in SmolLM2, so they are never labels
    assert len(smollm2_tokenizer.encode("10", add_special_tokens=False)) == 2


def test_label_after_menus_put_each_label_after_its_action_and_read_back(smollm2_tokenizer):
    from reflectrl.datagen.validate import menu_in_prompt

    state = taxi_state()
    labels = LabelSet.for_tokenizer(smollm2_tokenizer)
    first = Menu.build(state.actions, labels, np.random.default_rng(1))
    after = Menu.build(state.actions, labels, np.random.default_rng(1), label_after=True)
    assert after.labels == first.labels and after.token_ids == first.token_ids  # only the layout differs
    assert after.render().split("\n") == [f"{a} ({l})" for l, a in zip(after.labels, state.actions)]
    prompt = policy_prompt(state, "Next: go north.", after)
    assert prompt.endswith(after.render() + "\n" + ACTION_CUE)
    assert menu_in_prompt(prompt, label_after=True) == dict(zip(after.labels, state.actions))
    assert menu_in_prompt(policy_prompt(state, "Next: go north.", first)) == dict(zip(first.labels, state.actions))
    # The label token in the menu is the token the policy answers with.
    for label, token in zip(after.labels, after.token_ids):
        assert token in smollm2_tokenizer.encode(f"{state.actions[0]} ({label})", add_special_tokens=False)
    assert parse_label(after.labels[2], after) == 2


def test_labels_can_be_shuffled_and_parsed_back():
    state = taxi_state()
    labels = LabelSet.plain()
    menu = Menu.build(state.actions, labels, np.random.default_rng(1))
    assert sorted(menu.labels) == sorted(labels.labels[: len(state.actions)])
    assert menu.labels != tuple(labels.labels[: len(state.actions)])
    for i, label in enumerate(menu.labels):
        assert parse_label(label, menu) == i
        assert parse_label(f" {label}. {state.actions[i]}", menu) == i
        assert parse_label(f"Action {label}", menu) == i
    assert parse_label("z", menu) is None
    assert parse_label("", menu) is None
    assert parse_label("!!!", menu) is None


def test_prompts_end_with_their_cues_and_hold_the_parts():
    state = taxi_state(steps=2)
    menu = Menu.build(state.actions, LabelSet.plain())
    r = reflector_prompt(state)
    p = policy_prompt(state, "Head north, the passenger waits there.", menu)
    b = plain_prompt(state, menu)
    assert r.endswith(REFLECT_CUE) and p.endswith(ACTION_CUE) and b.endswith(ACTION_CUE)
    for text in (r, p, b):
        assert state.task in text and state.history[0] in text and state.observation in text
    assert "Head north" in p and "Reflection: Head north" not in b
    assert menu.render() in p and menu.render() in b


def test_replacing_a_reflection_gives_the_prompt_built_with_it():
    state = taxi_state(steps=2)
    menu = Menu.build(state.actions, LabelSet.plain())
    teacher = policy_prompt(state, "Head north, the passenger waits there.", menu)
    student = "Go east. Reflection: not a section start"
    assert replace_reflection(teacher, student) == policy_prompt(state, student, menu)
    assert reflection_in(teacher) == "Head north, the passenger waits there."
    with pytest.raises(ValueError, match="not a policy prompt"):
        replace_reflection(plain_prompt(state, menu), student)


def words(text):
    return len(text.split())


def test_budget_drops_oldest_history_first_and_keeps_task_and_actions():
    state = taxi_state(seed=4, steps=6)
    # History entries with feedback long enough that dropping one saves more than the cut note costs.
    history = tuple(f"{h} -> the taxi moved one square and nothing else happened" for h in state.history)
    state = State(state.task, state.observation, state.actions, history)
    menu = Menu.build(state.actions, LabelSet.plain())
    full = plain_prompt(state, menu)
    budget = words(full) - 5
    cut = plain_prompt(state, menu, count=words, budget=budget)
    assert words(cut) <= budget
    assert state.task in cut and menu.render() in cut and state.observation in cut
    assert state.history[-1] in cut and state.history[0] not in cut


def test_budget_shortens_the_observation_when_history_is_not_enough():
    state = taxi_state(seed=4, steps=3)
    menu = Menu.build(state.actions, LabelSet.plain())
    no_obs = plain_prompt(State(state.task, "", state.actions), menu)
    budget = words(no_obs) + 12
    cut = plain_prompt(state, menu, count=words, budget=budget)
    assert words(cut) <= budget
    assert state.task in cut and menu.render() in cut
    assert "observation shortened" in cut
    with pytest.raises(PromptTooLong, match="budget"):
        plain_prompt(state, menu, count=words, budget=10)


def test_menu_refuses_more_actions_than_labels():
    with pytest.raises(ValueError, match="max_actions"):
        Menu.build([f"a{i}" for i in range(5)], LabelSet.plain(3))


class ManyActions(TextEnv):
    """A one-state environment with 150 actions; only 'pick 137' wins."""

    levels = ("only",)
    default_horizon = 50

    def _reset(self, options):
        pass

    def _task(self):
        return "Pick the right number."

    def _observation(self):
        return "Numbers everywhere."

    def _admissible(self):
        return [f"pick {i}" for i in range(150)]

    def _apply(self, action):
        win = action == "pick 137"
        return Outcome(10.0 if win else -1.0, terminated=True, success=win)

    def oracle_action(self):
        return "pick 137"


def test_paging_keeps_every_menu_within_the_label_count():
    labels = LabelSet.plain()
    env = ManyActions(max_actions=len(labels))
    _, info = env.reset(seed=0)
    pages = 0
    while True:
        assert len(info["actions"]) <= len(labels)
        Menu.build(info["actions"], labels)  # fits the labels
        choice = env.oracle_index()
        if not info["actions"][choice].startswith(PAGE_ACTION_PREFIX):
            break
        _, reward, terminated, _, info = env.step(choice)
        assert reward == 0 and not terminated and info["page_turn"]
        pages += 1
    assert pages == 2  # 137 is on the third page of 61
    _, reward, terminated, _, info = env.step(choice)
    assert terminated and info["success"] and reward == 10.0


def test_clean_reflection_cuts_at_the_action_cue_even_without_its_newline_or_its_end():
    # Generation that stopped inside the policy's cue must not pass the cue on as reflection text.
    assert clean_reflection(" Move north. Answer with the label") == "Move north."
    assert clean_reflection("Go east, the exit is there. Action label: b") == "Go east, the exit is there."
    assert clean_reflection("Pick up the key.\nAnswer with the label of one action.") == "Pick up the key."


def test_clean_reflection_drops_undecodable_bytes():
    from reflectrl.protocol import clean_reflection

    # transformers writes U+FFFD for a token holding part of a character; llama.cpp's server drops those bytes.
    assert clean_reflection(" Go\ufffd north\ufffd.\nActions:\n0. x") == "Go north."
