"""Agents: turn a batch of states into actions, keeping what training needs.

Every agent has `act(states) -> (actions, records)`: one action index per
state (None for an invalid answer) and one `StepRecord` per state.

* `ReflectiveAgent(reflector, policy)`: Reflect-RL. The reflector writes a
  reflection for every state (one batch), then the label-head policy picks an
  action from the labelled menu (one forward pass).
* `PlainAgent(policy)`: the baseline without reflection.
* `PromptedAgent(model_or_client)`: a zero-shot baseline. Any causal LM or
  OpenAI-compatible model reads the enumerated prompt (as the user message of
  its chat template, when it has one) and answers in text;
  `protocol.parse_label` maps the answer to an action, and an unparseable
  answer is an invalid action (None). `constrained=True` is a second baseline
  that restricts decoding to the menu's labels.

All prompts come from `reflectrl.protocol`. With `shuffle_labels` the labels
are shuffled per state with the agent's own seeded RNG. Prompts are shortened
to the model's budget through the protocol's `count`/`budget` arguments.
Acting runs without gradients; a trainer recomputes log-probabilities from
the records with `LabelPolicy.forward_ids(prompt_ids, label_ids)`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from reflectrl.models.openai_backend import OpenAIChatClient
from reflectrl.models.policy import LabelPolicy
from reflectrl.models.prefix import left_pad
from reflectrl.models.reflector import Reflector
from reflectrl.models.seeding import seed_from, seeded
from reflectrl.models.tokens import encode_prompts, token_counter
from reflectrl.protocol import (
    ACTION_CUE,
    LabelSet,
    Menu,
    State,
    parse_label,
    plain_prompt,
    policy_prompt,
    reflector_prompt,
)


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


class PromptedAgent(SeededAgent):
    """Zero-shot baseline: a model answers the enumerated prompt in text (see the module docstring).

    A local model whose tokenizer has a chat template (an instruct model) gets
    the prompt as the user message of that template, as an OpenAI-compatible
    server does; a raw prompt makes an instruct model continue the document
    (the map, the history) instead of answering. The answer is generated
    freely and parsed with `protocol.parse_label`, so a model that does not
    follow the format scores invalid actions.

    With ``constrained=True`` (local models only) decoding is restricted to the
    menu's labels: the agent takes the label the model finds most likely at the
    start of its answer (or samples among the labels), in one forward pass. It
    never produces an invalid action, so it measures what the model knows about
    the task apart from whether it can keep to the answer format.
    """

    def __init__(
        self,
        model_or_client,
        tokenizer=None,
        *,
        max_new_tokens: int = 4,
        shuffle_labels: bool = False,
        seed: int = 0,
        max_prompt_tokens: int | None = None,
        chat: bool | None = None,
        constrained: bool = False,
    ):
        """
        Args:
            model_or_client: a causal LM with `generate` (needs `tokenizer`) or an `OpenAIChatClient`.
            tokenizer: the local model's tokenizer.
            max_new_tokens: answer length limit in tokens.
            shuffle_labels: shuffle labels per state (off by default for a zero-shot baseline).
            seed: seed of the label shuffling.
            max_prompt_tokens: prompt budget for a local model, chat formatting included
                (default: its context minus the answer).
            chat: wrap a local model's prompt in its tokenizer's chat template (None: when it has one).
            constrained: label-restricted decoding instead of a free answer (local models only).
        """
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        self.max_new_tokens = int(max_new_tokens)
        self.shuffle_labels = bool(shuffle_labels)
        self.constrained = bool(constrained)
        SeededAgent.__init__(self, seed)
        self._label_head: LabelPolicy | None = None
        if isinstance(model_or_client, OpenAIChatClient):
            if constrained:
                raise ValueError("constrained decoding needs a local model: a chat server only returns text")
            self.client, self.model, self.tokenizer = model_or_client, None, None
            self.label_set = LabelSet.plain()
            self.chat = True  # the server applies its own chat template
            self.max_prompt_tokens = None
            self._count = None
        elif hasattr(model_or_client, "generate"):
            if tokenizer is None:
                raise ValueError("a local model needs its tokenizer: PromptedAgent(model, tokenizer)")
            has_template = bool(getattr(tokenizer, "chat_template", None))
            if chat and not has_template:
                raise ValueError(f"chat=True but the tokenizer {type(tokenizer).__name__} has no chat template")
            self.client, self.model, self.tokenizer = None, model_or_client, tokenizer
            self.chat = has_template if chat is None else bool(chat)
            self.label_set = LabelSet.for_tokenizer(tokenizer)
            context = getattr(model_or_client.config, "max_position_embeddings", None)
            self.max_prompt_tokens = max_prompt_tokens or (context - self.max_new_tokens if context else None)
            self._count = self._count_chat_tokens if self.chat else token_counter(tokenizer)
            if self.constrained:
                self.label_set = self._labels_at_answer_start()
                self._label_head = LabelPolicy(model_or_client, tokenizer, self.label_set, max_prompt_tokens=None)
        else:
            raise TypeError(
                f"PromptedAgent needs a causal LM or an OpenAIChatClient, got {type(model_or_client).__name__}"
            )

    @property
    def deterministic(self) -> bool:
        """A local model (greedy decoding) and fixed menus; a server's answers may depend on what else it serves."""
        return self.client is None and not self.shuffle_labels

    def act(self, states, *, greedy: bool = False, generator: torch.Generator | None = None, envs=()):
        """Ask the model for a label per state; sampling at temperature 1 unless `greedy`."""
        states = list(states)
        if not states:
            return [], []
        if any(not state.actions for state in states):
            raise ValueError("a state has no actions (the episode is over); act only on running episodes")
        rng = self.rng if self.shuffle_labels else None
        menus = [Menu.build(state.actions, self.label_set, rng) for state in states]
        prompts = [plain_prompt(state, menu, self._count, self.max_prompt_tokens) for state, menu in zip(states, menus)]
        probs: list[list[float] | None] = [None] * len(prompts)
        if self.client is not None:
            answers = self.client.complete(prompts, max_tokens=self.max_new_tokens, temperature=0.0 if greedy else 1.0)
            prompt_ids = [[] for _ in prompts]
            log_probs = entropies = [math.nan] * len(prompts)
        else:
            prompts = [self._model_text(prompt) for prompt in prompts]
            prompt_ids = self._encode(prompts)
            if self.constrained:
                answers, log_probs, entropies, probs = self._choose_label(prompt_ids, menus, greedy, generator)
            else:
                answers, log_probs, entropies = self._generate(prompt_ids, greedy, generator)
        actions = [parse_label(answer, menu) for answer, menu in zip(answers, menus)]
        records = [
            StepRecord(
                prompt=prompts[i],
                prompt_ids=prompt_ids[i],
                label_ids=list(menus[i].token_ids),
                action=actions[i],
                log_prob=log_probs[i],
                entropy=entropies[i],
                value=None,
                reflection=None,
                labels=menus[i].labels,
                answer=answers[i],
                probs=probs[i],
            )
            for i in range(len(prompts))
        ]
        return actions, records

    def _model_text(self, prompt: str) -> str:
        """The text a local model reads: the prompt, or the chat template around it as the user message."""
        if not self.chat:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _count_chat_tokens(self, prompt: str) -> int:
        return len(self._encode([self._model_text(prompt)])[0])

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not self.chat:
            return encode_prompts(self.tokenizer, texts)
        # A chat template writes its own leading special tokens (a BOS) into the text.
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def _labels_at_answer_start(self) -> LabelSet:
        """The labels whose token is the same right where the model's answer starts (after a chat
        template's assistant header, not only after the action cue)."""
        probe = self._model_text("Task: probe\n" + ACTION_CUE)
        base = self._encode([probe])[0]
        kept = [
            (label, token)
            for label, token, ids in zip(
                self.label_set.labels, self.label_set.token_ids, self._encode([probe + label for label in self.label_set.labels])
            )
            if ids == base + [token]
        ]
        if len(kept) < 2:
            raise ValueError("constrained decoding needs at least 2 single-token labels where the model's answer starts")
        return LabelSet(tuple(label for label, _ in kept), tuple(token for _, token in kept))

    def _choose_label(self, prompt_ids: list[list[int]], menus: list[Menu], greedy: bool, generator: torch.Generator | None):
        head = self._label_head
        with torch.no_grad():
            output = head.forward_ids(prompt_ids, [list(menu.token_ids) for menu in menus])
            picks = head.choose(output, greedy=greedy, generator=generator).tolist()
        chosen = output.log_probs.gather(1, torch.as_tensor(picks, device=output.log_probs.device)[:, None])[:, 0]
        answers = [menu.labels[pick] for menu, pick in zip(menus, picks)]
        return answers, chosen.tolist(), output.entropy.tolist(), output.menu_probs()

    def _generate(self, prompt_ids: list[list[int]], greedy: bool, generator: torch.Generator | None):
        from transformers import GenerationConfig

        device = self.model.get_output_embeddings().weight.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        input_ids, attention_mask = left_pad(prompt_ids, pad, device)
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else 1.0,
            top_k=None,
            top_p=None,
            pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        with torch.no_grad(), seeded(None if greedy else seed_from(generator), device):
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
            )
        new = out.sequences[:, input_ids.shape[1] :]
        first = torch.log_softmax(out.logits[0].float(), dim=-1)
        chosen = first.gather(1, new[:, :1])[:, 0]
        entropy = -(first.exp() * first).nan_to_num().sum(-1)
        answers = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return answers, chosen.tolist(), entropy.tolist()
