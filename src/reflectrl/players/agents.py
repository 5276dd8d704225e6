"""Agents: turn a batch of states into actions, keeping what training needs.

Every agent has `act(states) -> (actions, records)`: one action index per
state (None for an invalid answer) and one `StepRecord` per state.

* `ReflectiveAgent(reflector, policy)`: Reflect-RL. The reflector writes a
  reflection for every state (one batch), then the label-head policy picks an
  action from the labelled menu (one forward pass).
* `PlainAgent(policy)`: the baseline without reflection.

The zero-shot baseline that answers in text, `PromptedAgent`, is an
evaluation baseline and lives in `reflectrl.evaluation.prompted_agent`; the
scripted players are in `reflectrl.evaluation.scripted_agents`.

All prompts come from `reflectrl.protocol`. With `shuffle_labels` the labels
are shuffled per state with the agent's own seeded RNG. Prompts are shortened
to the model's budget through the protocol's `count`/`budget` arguments.
Acting runs without gradients; a trainer recomputes log-probabilities from
the records with `LabelPolicy.forward_ids(prompt_ids, label_ids)`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from reflectrl.players.policy import LabelPolicy
from reflectrl.players.reflector import Reflector
from reflectrl.protocol import Menu, State, plain_prompt, policy_prompt, reflector_prompt


@dataclass
class StepRecord:
    """One decision, with what RL and SFT need to reuse it."""

    prompt: str
    """The policy's prompt text (a prompted local model: the text it read, chat template included)."""
    prompt_ids: list[int]
    """Its token ids (BOS convention of `reflectrl.models.tokens`); empty for a remote model."""
    label_ids: list[int]
    """Menu label token ids in action order (`Menu.token_ids`); empty for a remote model."""
    action: int | None
    """Chosen action index into the state's actions; None for an invalid (unparseable) answer."""
    log_prob: float
    """Log-probability of the choice under the label distribution (prompted local models:
    of the first answer token under the full vocabulary; remote models: nan)."""
    entropy: float
    """Entropy of that distribution in nats (nan for remote models)."""
    value: float | None
    """Value-head estimate, when the policy has one."""
    reflection: str | None
    """The reflection shown to the policy (None for agents without a reflector)."""
    labels: tuple[str, ...] = ()
    """Menu labels in action order."""
    answer: str | None = None
    """Raw text answer of a prompted model (None for label-head agents)."""
    reflector_prompt: str | None = None
    """The reflector's prompt (None for agents without a reflector)."""
    probs: list[float] | None = None
    """The probability of each menu entry in action order, where the agent decides from a distribution over
    the labels (label-head policies, label-restricted decoding); None for the others. For inspection only."""


class Agent(Protocol):
    """What the rollout engine (`reflectrl.rollout.LocalRolloutEngine`) and the RL trainer call on an agent."""

    shuffle_labels: bool
    """Whether menus are shuffled per state; a trained policy is saved with it, so evaluation presents menus alike."""
    label_after: bool
    """Whether menu entries read "action (label)" (`protocol.Menu.label_after`); saved with a trained policy too."""
    reflect_seconds: float
    """Seconds spent writing reflections so far (0 without a reflector), to split rollout time into reflect/decide."""
    deterministic: bool
    """Whether greedy play is a function of the states alone (see `SeededAgent.deterministic`)."""

    def reseed(self, seed: int) -> None:
        """Restart the agent's own random choices (label shuffling, random actions) from `seed`."""
        ...

    def act(
        self, states: Sequence[State], *, greedy: bool = False, generator: torch.Generator | None = None, envs: Sequence[Any] = ()
    ) -> tuple[list[int | None], list[StepRecord]]:
        """One action index (or None) and one record per state; `envs` are the running environments
        (read by scripted oracles only)."""
        ...


class SeededAgent:
    """The `Agent` bookkeeping every agent here shares: its seeded `rng`, no reflection time."""

    shuffle_labels = False
    label_after = False
    reflect_seconds = 0.0
    deterministic = False
    """Whether greedy play is a function of the states alone (no draws from `rng`, a sampler or a server), so
    that a repeated start state plays out alike; evaluation then plays it once (`harness.evaluate`)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)


class _LabelHeadAgent(SeededAgent):
    """Shared menu building and label-head decision of `ReflectiveAgent` and `PlainAgent`."""

    def __init__(self, policy: LabelPolicy, *, shuffle_labels: bool, label_after: bool, seed: int):
        super().__init__(seed)
        self.policy = policy
        self.shuffle_labels = bool(shuffle_labels)
        self.label_after = bool(label_after)
        self._count = policy.count_tokens

    @property
    def deterministic(self) -> bool:
        """Fixed menus: a shuffled one comes from `rng`, drawn in the order the states are met."""
        return not self.shuffle_labels

    def _menus(self, states: Sequence[State]) -> list[Menu]:
        for state in states:
            if not state.actions:
                raise ValueError("a state has no actions (the episode is over); act only on running episodes")
        rng = self.rng if self.shuffle_labels else None
        return [Menu.build(state.actions, self.policy.label_set, rng, label_after=self.label_after) for state in states]

    def _decide(
        self,
        prompts: list[str],
        menus: list[Menu],
        reflections: Sequence[str | None],
        reflector_prompts: Sequence[str | None],
        greedy: bool,
        generator: torch.Generator | None,
    ) -> tuple[list[int | None], list[StepRecord]]:
        prompt_ids = self.policy.encode(prompts)
        label_ids = [list(menu.token_ids) for menu in menus]
        # Episodes in lockstep often stand in the same state with the same menu (a GRPO group's
        # first step, evaluation seeds that share a start, routes that merge): the label
        # distribution is a function of (prompt, labels), so each distinct row runs once.
        distinct: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        firsts: list[int] = []  # the first batch row of each distinct row
        row_of: list[int] = []  # each batch row's index among the distinct rows
        for i, key in enumerate(zip(map(tuple, prompt_ids), map(tuple, label_ids))):
            if key not in distinct:
                distinct[key] = len(firsts)
                firsts.append(i)
            row_of.append(distinct[key])
        with torch.no_grad():
            unique = self.policy.forward_ids([prompt_ids[i] for i in firsts], [label_ids[i] for i in firsts])
            output = unique.select(torch.as_tensor(row_of, device=unique.log_probs.device))
            picks = self.policy.choose(output, greedy=greedy, generator=generator).tolist()
        log_probs = output.log_probs.gather(1, torch.as_tensor(picks, device=output.log_probs.device)[:, None])[:, 0]
        values = output.values.tolist() if output.values is not None else [None] * len(prompts)
        probs = output.menu_probs()
        records = [
            StepRecord(
                prompt=prompts[i],
                prompt_ids=prompt_ids[i],
                label_ids=label_ids[i],
                action=int(picks[i]),
                log_prob=float(log_probs[i]),
                entropy=float(output.entropy[i]),
                value=values[i],
                reflection=reflections[i],
                labels=menus[i].labels,
                reflector_prompt=reflector_prompts[i],
                probs=probs[i],
            )
            for i in range(len(prompts))
        ]
        return [int(p) for p in picks], records


class ReflectiveAgent(_LabelHeadAgent):
    """Reflect-RL: reflector, then the label-head policy."""

    def __init__(
        self, reflector: Reflector, policy: LabelPolicy, *, shuffle_labels: bool = True, label_after: bool = False, seed: int = 0
    ):
        super().__init__(policy, shuffle_labels=shuffle_labels, label_after=label_after, seed=seed)
        self.reflector = reflector

    @property
    def deterministic(self) -> bool:
        """Fixed menus and a reflector that writes the same reflection for the same prompt."""
        return super().deterministic and bool(getattr(self.reflector, "deterministic", False))

    def act(self, states, *, greedy: bool = False, generator: torch.Generator | None = None, envs=()):
        """Reflect on every state (one batch), then pick one action per state (one forward pass)."""
        states = list(states)
        if not states:
            return [], []
        menus = self._menus(states)
        # The live teacher of the ceiling row (`reflectrl.teachers.live`) reads the environments, not a prompt.
        live = getattr(self.reflector, "reads_environment", False)
        # A reflector that cannot count its own tokens (a remote one, or a
        # wrapper) is held to the policy's tokenizer and budget.
        count = getattr(self.reflector, "count_tokens", self._count)
        budget = getattr(self.reflector, "max_prompt_tokens", self.policy.max_prompt_tokens)
        r_prompts = [None if live else reflector_prompt(state, count, budget) for state in states]
        start = time.perf_counter()
        try:
            reflections = list(self.reflector.reflect_live(states, envs) if live else self.reflector.reflect(r_prompts))
        finally:
            self.reflect_seconds += time.perf_counter() - start
        if len(reflections) != len(states):
            raise RuntimeError(f"the reflector returned {len(reflections)} reflections for {len(states)} prompts")
        budget = self.policy.max_prompt_tokens
        prompts = [
            policy_prompt(state, reflection, menu, self._count, budget)
            for state, reflection, menu in zip(states, reflections, menus)
        ]
        actions, records = self._decide(prompts, menus, reflections, r_prompts, greedy, generator)
        if live:
            self.reflector.observe(envs, [state.actions[a] for state, a in zip(states, actions)])
        return actions, records


class PlainAgent(_LabelHeadAgent):
    """The no-reflection baseline: the label-head policy reads state and menu only."""

    def __init__(self, policy: LabelPolicy, *, shuffle_labels: bool = True, label_after: bool = False, seed: int = 0):
        super().__init__(policy, shuffle_labels=shuffle_labels, label_after=label_after, seed=seed)

    def act(self, states, *, greedy: bool = False, generator: torch.Generator | None = None, envs=()):
        """Pick one action per state (one forward pass)."""
        states = list(states)
        if not states:
            return [], []
        menus = self._menus(states)
        budget = self.policy.max_prompt_tokens
        prompts = [plain_prompt(state, menu, self._count, budget) for state, menu in zip(states, menus)]
        return self._decide(prompts, menus, [None] * len(states), [None] * len(states), greedy, generator)
