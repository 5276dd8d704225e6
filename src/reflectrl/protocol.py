"""The prompt protocol: every piece of text the two players see is built here.

Data generation, SFT, rollouts and evaluation all call these functions, so the
text a model is trained on is byte-for-byte the text it acts on.

* `reflector_prompt(state)`: the state followed by the analyse cue. The
  reflector's completion is a short reflection.
* `policy_prompt(state, reflection, menu)`: the state, the reflection, the
  labelled action list and the action cue. The policy's completion is exactly
  one label token.
* `plain_prompt(state, menu)`: the same without a reflection (the baseline).

Labels are single tokens *of the tokenizer in use*: `LabelSet.for_tokenizer`
checks each candidate by encoding it right after the action cue. SmolLM2 splits
numbers into digits, so its labels are 0-9, A-Z, a-z (62). A state with more
actions than labels is handled by the environment's paging action (see
`reflectrl.envs.base`): build the environment with `max_actions=len(labels)`.

When a prompt would exceed a token budget, the oldest history entries go
first, then the middle of the current observation; the task, the reflection
and the action list are never cut. If they alone do not fit, `PromptTooLong`
says by how much.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

REFLECT_CUE = "Reflection:"
"""Ends every reflector prompt; the reflection follows after a space."""
ACTION_CUE = "Answer with the label of one action.\nAction label:\n"
"""Ends every policy prompt; the label token follows directly (no space)."""
LABEL_ORDER_FILE = "label_order.json"
"""Written next to a trained policy: whether it was trained with labels shuffled per step and where
its menus put the label (`Menu.label_after`), so that rollouts and evaluation present menus the way
the policy learned them."""

LABEL_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
HISTORY_CUT_NOTE = "(earlier steps omitted)"
OBSERVATION_CUT_NOTE = "\n[... observation shortened ...]\n"

TokenCounter = Callable[[str], int]


class PromptTooLong(ValueError):
    """The parts of a prompt that are never cut already exceed the token budget."""


@dataclass(frozen=True)
class State:
    """What the players know about the current step of an episode."""

    task: str
    observation: str
    actions: tuple[str, ...]
    history: tuple[str, ...] = ()

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> "State":
        """Build from the `info` dict of a `TextEnv` reset/step."""
        return cls(
            task=info["task"],
            observation=info["observation"],
            actions=tuple(info["actions"]),
            history=tuple(info.get("history", ())),
        )


@dataclass(frozen=True)
class LabelSet:
    """The ordered labels available to a tokenizer, with their token ids."""

    labels: tuple[str, ...]
    token_ids: tuple[int, ...] = ()
    """Empty for a tokenizer-free label set (terminal play, tests)."""

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def plain(cls, size: int = len(LABEL_ALPHABET)) -> "LabelSet":
        """Labels without a tokenizer (for people and for text-only backends)."""
        return cls(tuple(LABEL_ALPHABET[:size]))

    @classmethod
    def for_tokenizer(cls, tokenizer, alphabet: Sequence[str] = tuple(LABEL_ALPHABET), max_labels: int | None = None) -> "LabelSet":
        """Keep the candidates that are exactly one token right after `ACTION_CUE`.

        The check encodes the cue with and without the label appended, so it
        also rules out labels that would merge with the cue's last character.
        """
        probe = "Task: probe\n" + ACTION_CUE
        base = tokenizer.encode(probe, add_special_tokens=False)
        labels, ids = [], []
        for label in alphabet:
            full = tokenizer.encode(probe + label, add_special_tokens=False)
            if len(full) == len(base) + 1 and full[: len(base)] == base and full[-1] not in ids:
                labels.append(label)
                ids.append(full[-1])
            if max_labels is not None and len(labels) == max_labels:
                break
        if len(labels) < 2:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has fewer than 2 single-token labels after the action cue"
            )
        return cls(tuple(labels), tuple(ids))


@dataclass(frozen=True)
class Menu:
    """The labelled action list of one step: action i is shown with label `labels[i]`."""

    actions: tuple[str, ...]
    labels: tuple[str, ...]
    token_ids: tuple[int, ...] = field(default=())
    """Label token id of each action (empty for a tokenizer-free label set)."""
    label_after: bool = False
    """Write each entry as "go to drawer 1 (G)" instead of "G. go to drawer 1".

    A causal model reads an entry's label token before its action when the label comes first, so the
    label token cannot hold what it labels; written after the action, it can, and choosing becomes
    "copy the label token whose action matches the reflection" (on ALFWorld: 92% of held-out rows
    instead of 34%, experiments/alfworld_rl/README.md, "The menu layout"). Off by default: the
    paper's layout, and the one the taxi and AutoExplore results were measured with.
    """

    @classmethod
    def build(
        cls, actions: Sequence[str], label_set: LabelSet, rng: np.random.Generator | None = None, *, label_after: bool = False
    ) -> "Menu":
        """Assign labels to actions; with `rng`, the first len(actions) labels are shuffled.

        Shuffling per step keeps a policy from learning "the first action is
        usually right" instead of reading the actions.
        """
        n = len(actions)
        if n > len(label_set):
            raise ValueError(
                f"{n} actions but only {len(label_set)} labels: build the environment with max_actions={len(label_set)}"
            )
        order = rng.permutation(n) if rng is not None else np.arange(n)
        labels = tuple(label_set.labels[i] for i in order)
        ids = tuple(label_set.token_ids[i] for i in order) if label_set.token_ids else ()
        return cls(tuple(actions), labels, ids, bool(label_after))

    def label_of(self, action_index: int) -> str:
        return self.labels[action_index]

    def index_of(self, label: str) -> int | None:
        """Action index for a label, or None for a label that is not on the menu."""
        try:
            return self.labels.index(label)
        except ValueError:
            return None

    def render(self) -> str:
        if self.label_after:
            return "\n".join(f"{action} ({label})" for label, action in zip(self.labels, self.actions))
        return "\n".join(f"{label}. {action}" for label, action in zip(self.labels, self.actions))


_LABEL_RE = re.compile(r"^\s*(?:(?:action|label)\s*(?:label)?\s*[:#]?\s*)?([0-9A-Za-z]+)\b", re.IGNORECASE)


def parse_label(text: str, menu: Menu) -> int | None:
    """Map a model's answer back to an action index; None when it names no label on the menu.

    Accepts the bare label ("3"), a label followed by punctuation or the action
    ("3. move north"), or "Action 3".
    """
    match = _LABEL_RE.match(text or "")
    if not match:
        return None
    return menu.index_of(match.group(1))


def _section(title: str, body: str) -> str:
    return f"{title}\n{body}" if body else ""


def _state_text(state: State, history: Sequence[str], observation: str, cut_history: bool) -> str:
    lines = [f"Task: {state.task}"]
    if history or cut_history:
        entries = ([HISTORY_CUT_NOTE] if cut_history else []) + [f"- {h}" for h in history]
        lines.append(_section("History (oldest first):", "\n".join(entries)))
    lines.append(_section("Current observation:", observation))
    return "\n".join(line for line in lines if line)


def _fit(state: State, tail: str, count: TokenCounter | None, budget: int | None) -> str:
    """The state text plus `tail`, shortened to the budget as the module docstring says."""
    history = list(state.history)
    observation = state.observation
    text = _state_text(state, history, observation, False) + tail
    if count is None or budget is None or count(text) <= budget:
        return text
    dropped = False
    while history:
        history.pop(0)
        dropped = True
        text = _state_text(state, history, observation, dropped) + tail
        if count(text) <= budget:
            return text
    fixed = count(_state_text(state, [], "", dropped) + tail + OBSERVATION_CUT_NOTE)
    if fixed > budget:
        raise PromptTooLong(
            f"task, reflection and action list need {fixed} tokens but the budget is {budget}; "
            "raise the context length or shorten the task"
        )
    lo, hi = 0, len(observation)
    while lo < hi:  # the longest head+tail cut of the observation that fits
        keep = (lo + hi + 1) // 2
        cut = observation[: keep // 2] + OBSERVATION_CUT_NOTE + observation[len(observation) - (keep - keep // 2) :]
        if count(_state_text(state, [], cut, dropped) + tail) <= budget:
            lo = keep
        else:
            hi = keep - 1
    cut = observation[: lo // 2] + OBSERVATION_CUT_NOTE + observation[len(observation) - (lo - lo // 2) :]
    return _state_text(state, [], cut, dropped) + tail


def _actions_block(state: State) -> str:
    return "Admissible actions:\n" + "\n".join(f"- {a}" for a in state.actions)


def reflector_prompt(state: State, count: TokenCounter | None = None, budget: int | None = None) -> str:
    """State, the admissible actions (unlabelled), then `REFLECT_CUE`."""
    tail = "\n" + _actions_block(state) + "\nAnalyse the situation: what did the last action do, was it a good move, and what should be done next?\n" + REFLECT_CUE
    return _fit(state, tail, count, budget)


def policy_prompt(
    state: State, reflection: str, menu: Menu, count: TokenCounter | None = None, budget: int | None = None
) -> str:
    """State, the reflection, the labelled actions, then `ACTION_CUE`."""
    _check_menu(state, menu)
    tail = f"\nReflection: {reflection.strip()}\nActions:\n{menu.render()}\n{ACTION_CUE}"
    return _fit(state, tail, count, budget)


def _reflection_span(prompt: str) -> tuple[int, int]:
    marker = "\nReflection: "
    start = prompt.rfind(marker)
    end = prompt.find("\nActions:\n", start + len(marker)) if start != -1 else -1
    if end == -1:
        raise ValueError("not a policy prompt: no 'Reflection: ... Actions:' section")
    return start + len(marker), end


def reflection_in(prompt: str) -> str:
    """The reflection a `policy_prompt` shows."""
    start, end = _reflection_span(prompt)
    return prompt[start:end]


def replace_reflection(prompt: str, reflection: str) -> str:
    """`prompt` (a `policy_prompt`) with its reflection replaced by `reflection`; the rest is unchanged."""
    start, end = _reflection_span(prompt)
    return prompt[:start] + reflection.strip() + prompt[end:]


def plain_prompt(state: State, menu: Menu, count: TokenCounter | None = None, budget: int | None = None) -> str:
    """State, the labelled actions, then `ACTION_CUE` (no reflection: the baseline)."""
    _check_menu(state, menu)
    tail = f"\nActions:\n{menu.render()}\n{ACTION_CUE}"
    return _fit(state, tail, count, budget)


def _check_menu(state: State, menu: Menu) -> None:
    if tuple(menu.actions) != tuple(state.actions):
        raise ValueError("menu was built for a different action list than the state's")


def clean_reflection(text: str) -> str:
    """Cut a generated reflection at the first cue that would start another section.

    The action cue counts without its newline and from its first words: a reflection whose
    generation hit the token limit inside "Answer with the label of one action." still starts
    the policy's section, and kept it would read to the policy as part of the reflection.
    Replacement characters (undecodable bytes) are dropped.
    """
    action_cue = ACTION_CUE.split("\n")
    for stop in ("\nActions:", action_cue[1], " ".join(action_cue[0].split()[:4]), "\nTask:", REFLECT_CUE):
        pos = text.find(stop)
        if pos != -1:
            text = text[:pos]
    # Tokens that hold part of a character's UTF-8 bytes decode to U+FFFD in transformers, while
    # llama.cpp's server drops such bytes; neither is text, and without them both write the same reflection.
    return " ".join(text.replace("\ufffd", "").split())


@dataclass(frozen=True)
class MenuLayout:
    """How a policy's menus look (recorded in `LABEL_ORDER_FILE`)."""

    shuffle_labels: bool
    """Labels shuffled per step (else in menu order)."""
    label_after: bool = False
    """Labels written after their actions (`Menu.label_after`)."""


def save_label_order(folder, shuffle_labels: bool, label_after: bool = False) -> None:
    """Record in a policy folder how its menus looked (see `LABEL_ORDER_FILE`)."""
    import json
    from pathlib import Path

    from reflectrl.storage import atomic_write_bytes

    record = {"shuffle_labels": bool(shuffle_labels), "label_after": bool(label_after)}
    atomic_write_bytes(Path(folder, LABEL_ORDER_FILE), (json.dumps(record) + "\n").encode())


def load_label_order(folder) -> MenuLayout | None:
    """The menu layout a policy folder records, or None without a record.

    Records written before `label_after` existed hold only the label order: label first.
    """
    import json
    from pathlib import Path

    path = Path(folder, LABEL_ORDER_FILE)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return MenuLayout(bool(record["shuffle_labels"]), bool(record.get("label_after", False)))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not a label-order record: {error}") from None
