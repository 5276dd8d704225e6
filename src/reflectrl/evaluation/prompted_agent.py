"""`PromptedAgent`: a zero-shot baseline that answers the enumerated prompt in text.

Any causal LM or OpenAI-compatible model reads the enumerated prompt (as the
user message of its chat template, when it has one) and answers in text;
`protocol.parse_label` maps the answer to an action, and an unparseable
answer is an invalid action (None). `constrained=True` is a second baseline
that restricts decoding to the menu's labels.

It keeps the `Agent` contract of the Reflect-RL players
(`reflectrl.players.agents`): `act(states) -> (actions, records)` with one
`StepRecord` per state. All prompts come from `reflectrl.protocol`; prompts
are shortened to the model's budget through the protocol's `count`/`budget`
arguments.
"""

from __future__ import annotations

import math

import torch

from reflectrl.models.openai_backend import OpenAIChatClient
from reflectrl.models.precision import bf16_autocast
from reflectrl.models.prefix import left_pad
from reflectrl.models.seeding import seed_from, seeded
from reflectrl.models.tokens import encode_prompts, token_counter
from reflectrl.players.agents import SeededAgent, StepRecord
from reflectrl.players.policy import LabelPolicy
from reflectrl.protocol import ACTION_CUE, LabelSet, Menu, parse_label, plain_prompt


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
        answer_tokens: int = 4,
        shuffle_labels: bool = False,
        seed: int = 0,
        max_prompt_tokens: int | None = None,
        chat: bool | None = None,
        constrained: bool = False,
        bf16: bool = False,
    ):
        """
        Args:
            model_or_client: a causal LM with `generate` (needs `tokenizer`) or an `OpenAIChatClient`.
            tokenizer: the local model's tokenizer.
            answer_tokens: answer length limit in tokens.
            shuffle_labels: shuffle labels per state (off by default for a zero-shot baseline).
            seed: seed of the label shuffling.
            max_prompt_tokens: prompt budget for a local model, chat formatting included
                (default: its context minus the answer).
            chat: wrap a local model's prompt in its tokenizer's chat template (None: when it has one).
            constrained: label-restricted decoding instead of a free answer (local models only).
            bf16: run a local model under bfloat16 autocast (see `models.precision`).
        """
        if answer_tokens < 1:
            raise ValueError("answer_tokens must be >= 1")
        self.answer_tokens = int(answer_tokens)
        self.shuffle_labels = bool(shuffle_labels)
        self.constrained = bool(constrained)
        self.bf16 = bool(bf16)
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
            self.max_prompt_tokens = max_prompt_tokens or (context - self.answer_tokens if context else None)
            self._count = self._count_chat_tokens if self.chat else token_counter(tokenizer)
            if self.constrained:
                self.label_set = self._labels_at_answer_start()
                self._label_head = LabelPolicy(model_or_client, tokenizer, self.label_set, max_prompt_tokens=None, bf16=self.bf16)
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
            answers = self.client.complete(prompts, max_tokens=self.answer_tokens, temperature=0.0 if greedy else 1.0)
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
            max_new_tokens=self.answer_tokens,
            do_sample=not greedy,
            temperature=None if greedy else 1.0,
            top_k=None,
            top_p=None,
            pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        with torch.no_grad(), seeded(None if greedy else seed_from(generator), device), bf16_autocast(self.bf16, device):
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
