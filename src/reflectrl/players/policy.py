"""The label-head policy: one forward pass gives a categorical distribution over a step's actions.

The policy prompt ends with the action cue, and the answer is one label
token. Instead of the full next-token distribution, the final hidden state
is multiplied by the unembedding rows of the row's own label tokens (the
paper's "shrink head"), so the result is a proper distribution over the
admissible actions: exactly the full-vocabulary softmax restricted to the
label ids and renormalised. Log-probabilities, entropy and PPO ratios are
computed on it, and gradients reach the policy's LoRA weights.

Batches are left-padded with position ids counted over real tokens only, so
a row's distribution does not depend on what else is in the batch; rows with
fewer actions are masked. When the rows share a prefix of at least
`models.prefix.MIN_SHARED_PREFIX` tokens (the task text every prompt of an
environment starts with), it runs once and only the right-padded suffixes go
through the model: the same distributions and gradients up to float
rounding, for rollouts and for the RL update alike. With ``bf16=True`` the
transformer runs under bfloat16 autocast (the label head stays in float32). Token ids follow the BOS convention of
`reflectrl.models.tokens`.

The policy's adapter is active only while the forward pass runs; backward
uses the recorded autograd graph, so it is unaffected by later adapter
switches (gradient checkpointing, which re-runs the forward during backward,
would see whichever adapter is active then, so it is not supported here).

The language model is *not* a registered sub-module of `LabelPolicy`: it is
shared with the reflector, so `policy.train()` / `.eval()` / `.to()` touch
only the value head, and the model's own mode is left to its owner (eval by
default, which keeps rollout and update log-probabilities identical).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from reflectrl.models.adapters import (
    adapter_names,
    adapter_scope,
    is_peft_model,
    lora_parameters,
    save_adapter,
)
from reflectrl.models.loading import unreadable_weights
from reflectrl.models.precision import bf16_autocast
from reflectrl.models.prefix import bare_decoder, hidden_states, left_pad, prefix_to_run_once, right_pad
from reflectrl.models.tokens import encode_prompts
from reflectrl.protocol import LabelSet, Menu, PromptTooLong

VALUE_HEAD_FILE = "value_head.safetensors"

log = logging.getLogger(__name__)


@dataclass
class PolicyOutput:
    """The label distribution of a batch of policy prompts."""

    logits: Tensor
    """[B, L] label logits divided by the temperature; -inf where `mask` is False."""
    log_probs: Tensor
    """[B, L] log-softmax over each row's labels only (-inf where `mask` is False)."""
    entropy: Tensor
    """[B] entropy of each row's distribution (nats)."""
    mask: Tensor
    """[B, L] bool, True for the row's real labels (row i has len(label_ids[i]) of them)."""
    values: Tensor | None = None
    """[B] value estimates from the value head, when the policy has one."""

    @property
    def probs(self) -> Tensor:
        """[B, L] probabilities (0 where `mask` is False)."""
        return self.log_probs.exp()

    def menu_probs(self) -> list[list[float]]:
        """Each row's probabilities over its own labels, as lists (the padding of shorter rows left out)."""
        return [row[:n] for row, n in zip(self.probs.tolist(), self.mask.sum(-1).tolist())]

    def select(self, rows: Tensor) -> "PolicyOutput":
        """The distributions of the given row indices (repeats allowed), in that order."""
        values = self.values[rows] if self.values is not None else None
        return PolicyOutput(self.logits[rows], self.log_probs[rows], self.entropy[rows], self.mask[rows], values)


class ValueHead(nn.Module):
    """Value estimate from the final hidden state: a small MLP (or a linear map with `hidden=0`)."""

    def __init__(self, hidden_size: int, hidden: int = 128):
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(hidden_size, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        else:
            self.net = nn.Sequential(nn.Linear(hidden_size, 1))
        # A zero last layer starts every value at 0, so early PPO updates are not
        # driven by a random critic.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.net(hidden).squeeze(-1)


class LabelPolicy(nn.Module):
    """Categorical policy over labelled actions, computed in one batched forward pass."""

    def __init__(
        self,
        model,
        tokenizer,
        label_set: LabelSet | None = None,
        *,
        adapter: str | None = None,
        value_head: bool = False,
        max_prompt_tokens: int | None = None,
        value_hidden: int = 128,
        prefix_reuse: bool = True,
        bf16: bool = False,
    ):
        """
        Args:
            model: a causal LM (plain or `peft.PeftModel`).
            tokenizer: its tokenizer (pad token set, see `load_model`).
            label_set: labels with token ids; default `LabelSet.for_tokenizer(tokenizer)`.
            adapter: adapter to activate for every forward (None: the model as it is;
                a name that is not loaded: the base weights, see `adapter_scope`).
            value_head: add a value head for a PPO critic.
            max_prompt_tokens: prompts longer than this raise `PromptTooLong`; agents
                shorten prompts to it. Default: the model's maximum context.
            value_hidden: width of the value head's hidden layer (0 = linear head).
            prefix_reuse: run a shared prompt prefix once per batch (see the module docstring).
            bf16: run the transformer under bfloat16 autocast (see `models.precision`).
        """
        super().__init__()
        if getattr(model.config, "final_logit_softcapping", None):
            raise ValueError("models with logit soft-capping are not supported by the label head")
        # Kept out of the module tree on purpose (see the module docstring).
        self.__dict__["model"] = model
        self.tokenizer = tokenizer
        self.label_set = label_set if label_set is not None else LabelSet.for_tokenizer(tokenizer)
        if not self.label_set.token_ids:
            raise ValueError("the label set has no token ids: build it with LabelSet.for_tokenizer(tokenizer)")
        self.adapter = adapter
        self.prefix_reuse = bool(prefix_reuse)
        self.bf16 = bool(bf16)
        self.logit_scale = head_logit_scale(model.config)
        """What the model's own LM head multiplies its logits by (None: nothing), applied to the label logits too."""
        if adapter is not None and is_peft_model(model) and adapter not in adapter_names(model):
            log.info("adapter %r is not loaded (loaded: %s): the policy uses the base weights", adapter, adapter_names(model))
        context = getattr(model.config, "max_position_embeddings", None)
        self.max_prompt_tokens = max_prompt_tokens if max_prompt_tokens is not None else context
        if value_head:
            hidden_size = model.get_output_embeddings().weight.shape[1]
            self.value_head = ValueHead(hidden_size, value_hidden).to(self.device)
        else:
            self.value_head = None

    @property
    def device(self) -> torch.device:
        return self.model.get_output_embeddings().weight.device

    def count_tokens(self, text: str) -> int:
        """Prompt length in tokens (the protocol's `count` for prompt budgets)."""
        return len(encode_prompts(self.tokenizer, [text])[0])

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of policy prompts (BOS convention of `reflectrl.models.tokens`)."""
        ids = encode_prompts(self.tokenizer, prompts)
        self._check_lengths(ids)
        return ids

    def forward_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        label_ids: Sequence[Sequence[int]],
        temperature: float = 1.0,
    ) -> PolicyOutput:
        """Label distributions for token-id prompts; `label_ids[i]` is row i's `Menu.token_ids`.

        One forward pass of the transformer (without its full-vocabulary head).
        Gradients flow to the adapter and value head when grad mode is on.
        """
        if temperature <= 0:
            raise ValueError("temperature must be > 0 (use choose(..., greedy=True) for the argmax)")
        self._check_batch(prompt_ids, label_ids)
        with adapter_scope(self.model, self.adapter), bf16_autocast(self.bf16, self.device):
            hidden = self._final_hidden(prompt_ids)
        ids, mask = self._label_matrix(label_ids)
        head = self.model.get_output_embeddings()
        rows = head.weight[ids].float()  # [B, L, H]: the shrink head, one small matrix per row
        logits = torch.einsum("bh,blh->bl", hidden.float(), rows)
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[ids].float()
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
        logits = (logits / temperature).masked_fill(~mask, float("-inf"))
        log_probs = torch.log_softmax(logits, dim=-1)
        entropy = -(log_probs.exp() * log_probs.masked_fill(~mask, 0.0)).sum(-1)
        values = self.value_head(hidden.float()) if self.value_head is not None else None
        return PolicyOutput(logits=logits, log_probs=log_probs, entropy=entropy, mask=mask, values=values)

    def label_log_probs(self, prompt_ids: Sequence[Sequence[int]], label_ids: Sequence[Sequence[int]]) -> Tensor:
        """[B, L] log-probabilities of each row's label tokens under the model's full next-token distribution.

        What a language-model loss on the label token measures (SFT's held-out
        loss), where `forward_ids` renormalises over the row's labels; the
        argmax over a row is the same greedy choice. -inf past a row's labels.
        """
        self._check_batch(prompt_ids, label_ids)
        with adapter_scope(self.model, self.adapter), bf16_autocast(self.bf16, self.device):
            hidden = self._final_hidden(prompt_ids)
            logits = self.model.get_output_embeddings()(hidden).float()
            if self.logit_scale is not None:
                logits = logits * self.logit_scale
            log_probs = torch.log_softmax(logits, dim=-1)
        ids, mask = self._label_matrix(label_ids)
        return log_probs.gather(1, ids).masked_fill(~mask, float("-inf"))

    def distribution(self, prompts: Sequence[str], menus: Sequence[Menu], temperature: float = 1.0) -> PolicyOutput:
        """Label distributions for policy prompts built with the given menus."""
        if len(prompts) != len(menus):
            raise ValueError(f"{len(prompts)} prompts but {len(menus)} menus")
        for menu in menus:
            if len(menu.token_ids) != len(menu.actions):
                raise ValueError("menu has no label token ids: build it from LabelSet.for_tokenizer(tokenizer)")
        return self.forward_ids(self.encode(prompts), [m.token_ids for m in menus], temperature)

    forward = distribution

    def choose(self, output: PolicyOutput, *, greedy: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """[B] action indices: the argmax, or a sample (reproducible with `generator`)."""
        if greedy:
            return output.logits.argmax(-1)
        device = generator.device if generator is not None else output.log_probs.device
        probs = output.log_probs.detach().float().exp().to(device)
        picks = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return picks.to(output.log_probs.device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The policy adapter's LoRA parameters plus the value head (marked as requiring grad)."""
        params: list[nn.Parameter] = []
        if is_peft_model(self.model):
            name = self.adapter if self.adapter is not None else self.model.active_adapter
            if name not in adapter_names(self.model):
                raise ValueError(
                    f"adapter {name!r} is not loaded (loaded: {', '.join(adapter_names(self.model))}); "
                    f"add one with add_lora(model, {name!r})"
                )
            params += lora_parameters(self.model, name)
        elif self.adapter is not None:
            raise ValueError(f"the model has no adapters; add one with add_lora(model, {self.adapter!r}) before building the policy")
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        for param in params:
            param.requires_grad_(True)
        return params

    def save(self, folder: str | os.PathLike) -> None:
        """Save the policy adapter (PEFT folder) and, if any, the value head next to it."""
        from safetensors.torch import save

        from reflectrl.models.atomic import atomic_write_bytes

        name = self.adapter if self.adapter is not None else getattr(self.model, "active_adapter", None)
        if not is_peft_model(self.model) or name not in adapter_names(self.model):
            raise ValueError("the policy has no adapter to save")
        save_adapter(self.model, name, folder)
        if self.value_head is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
            atomic_write_bytes(Path(folder) / VALUE_HEAD_FILE, save(state))

    def load_value_head(self, folder: str | os.PathLike) -> None:
        """Load value-head weights written by `save`."""
        from safetensors.torch import load_file

        path = Path(folder) / VALUE_HEAD_FILE
        if self.value_head is None:
            raise ValueError("this policy was built without a value head")
        if not path.is_file():
            raise FileNotFoundError(f"no value head in {folder} ({VALUE_HEAD_FILE} missing)")
        try:
            state = load_file(str(path), device=str(self.device))
        except SafetensorError as err:
            raise unreadable_weights(path, err) from err
        self.value_head.load_state_dict(state)

    def _final_hidden(self, prompt_ids: Sequence[Sequence[int]]) -> Tensor:
        """[B, H] hidden state of each prompt's last token."""
        decoder = bare_decoder(self.model)
        device = self.device
        shared = prefix_to_run_once(prompt_ids) if self.prefix_reuse else 0
        if not shared:
            input_ids, attention_mask = left_pad(prompt_ids, self.tokenizer.pad_token_id, device)
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            outputs = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
            return outputs.last_hidden_state[:, -1]
        input_ids, attention_mask = right_pad(prompt_ids, self.tokenizer.pad_token_id, device)
        hidden = hidden_states(decoder, input_ids, attention_mask, shared)
        last = torch.as_tensor([len(row) - 1 - shared for row in prompt_ids], device=device)
        return hidden[torch.arange(len(prompt_ids), device=device), last]

    def _check_batch(self, prompt_ids: Sequence[Sequence[int]], label_ids: Sequence[Sequence[int]]) -> None:
        if len(prompt_ids) != len(label_ids):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(label_ids)} label lists")
        if not prompt_ids:
            raise ValueError("empty batch")
        if any(len(row) == 0 for row in label_ids):
            raise ValueError("every row needs at least one label (a state with no actions cannot be decided)")
        if any(len(row) == 0 for row in prompt_ids):
            raise ValueError("empty prompt")
        self._check_lengths(prompt_ids)

    def _label_matrix(self, label_ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """[B, L] label token ids (0-padded) and the mask of each row's real labels."""
        width = max(len(row) for row in label_ids)
        ids = torch.zeros(len(label_ids), width, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(label_ids), width, dtype=torch.bool, device=self.device)
        for i, row in enumerate(label_ids):
            ids[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, : len(row)] = True
        return ids, mask

    def _check_lengths(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        if self.max_prompt_tokens is None:
            return
        longest = max((len(row) for row in prompt_ids), default=0)
        if longest > self.max_prompt_tokens:
            raise PromptTooLong(
                f"a policy prompt has {longest} tokens but the limit is {self.max_prompt_tokens}; "
                "build prompts with the protocol's count/budget arguments"
            )


def head_logit_scale(config) -> float | None:
    """The factor some families' causal-LM head applies after the projection (None: none).

    Granite divides the logits by `logits_scaling` and Cohere multiplies them by
    `logit_scale`; the label head projects through the same weights but not
    through that code, so without the factor its distribution would be the
    model's at another temperature.
    """
    scale = 1.0
    if getattr(config, "logits_scaling", None) is not None:
        scale /= float(config.logits_scaling)
    if getattr(config, "logit_scale", None) is not None:
        scale *= float(config.logit_scale)
    if getattr(config, "final_logit_softcapping", None) is not None:
        raise ValueError(
            f"{type(config).__name__} soft-caps its logits (final_logit_softcapping); the label head does not support it"
        )
    return None if scale == 1.0 else scale

