"""The local reflector: writes a short analysis of each state, in batches, with a model in this process.

`LocalReflector` runs `generate` on a local model (with its adapter active)
for a whole batch of reflector prompts at once, with the KV cache; decoding
stops at the end-of-sequence token or when the model starts writing the
policy's part of the prompt (the action list or the action cue), and
`protocol.clean_reflection` trims the text.

Memory: the prompt is prefilled in chunks of `prefill_chunk_size` tokens
per row (transformers' chunked prefill), so the layers' activations cover
one chunk instead of the whole padded batch; what stays is the KV cache,
which generation needs anyway. Only the last position is projected onto the
vocabulary: `generate` passes ``logits_to_keep=1`` to models that accept it
(every causal LM of transformers does), and the shared prefix below runs the
bare transformer without the head. For 8 SmolLM2 prompts of about 330
tokens, chunks of 64 took the reflection step's peak from about 205 MiB to
about 160 MiB above the resident weights; most of what is left is the KV
cache. The head receives the last position of each chunk as a strided slice
of the chunk's hidden states, and torch projects a non-contiguous 3-D input
through a batched product over the broadcast weight, 5x (12 rows) to 11x
(100 rows) slower than one matrix product for SmolLM2's 49152-entry
vocabulary; `_contiguous_head_input` hands the head a contiguous copy (the
same reflections; 7% off a 100-prompt prefill).

Prefix reuse: reflector prompts of one batch usually start with the same
tokens (the task and the start of the observation). When that shared prefix
is long enough it is run once, its KV cache is copied to every row, and only
the differing suffixes are processed per row. Rows are laid out as
``[prefix][padding][suffix]`` with the padding masked out and position ids
counted over real tokens, so the result equals generating each prompt from
scratch (up to float rounding). It pays whenever the batch has two or more
rows and the prefix is not tiny: it saves (rows - 1) x prefix positions of
prefill at the price of one batch-1 forward pass and a copy of the prefix's
cache, so the rule is only a minimum prefix length, `MIN_SHARED_PREFIX`.
For 8 DangerousTaxi prompts (330 tokens on average, 121 shared) it made a
32-token reflection 1.2x to 1.3x cheaper in CPU time over three runs of
`benchmarks/bench_decide.py` (one thread; with two threads on a busy
two-core machine the timings were too noisy to show either way).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from reflectrl.models.adapters import adapter_names, adapter_scope, is_peft_model
from reflectrl.models.precision import bf16_autocast
from reflectrl.models.prefix import bare_decoder, left_pad, prefix_cache, prefix_to_run_once, shared_prefix_length
from reflectrl.models.seeding import seeded
from reflectrl.models.tokens import encode_prompts
from reflectrl.players.reflector import STOP_STRINGS
from reflectrl.protocol import clean_reflection

PREFILL_CHUNK_SIZE = 64
"""Default prompt tokens per row per prefill forward pass (see the module docstring)."""

log = logging.getLogger(__name__)


class LocalReflector:
    """Batched reflection generation with a local model (see the module docstring)."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        adapter: str | None = None,
        reflection_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        prefix_reuse: bool | None = None,
        max_prompt_tokens: int | None = None,
        prefill_chunk_size: int | None = PREFILL_CHUNK_SIZE,
        bf16: bool = False,
    ):
        """
        Args:
            model: a causal LM (plain or `peft.PeftModel`), shared with the policy if you like.
            tokenizer: its tokenizer (pad token set, see `load_model`).
            adapter: adapter to activate while generating (see `adapter_scope`).
            reflection_tokens: length limit of a reflection in tokens.
            temperature: 0 decodes greedily; above 0 samples (seeded by `seed` and a call counter).
            seed: base seed for sampling.
            prefix_reuse: True always reuses a shared prefix, False never, None when it
                is at least `MIN_SHARED_PREFIX` tokens long.
            max_prompt_tokens: prompt budget for callers that shorten prompts
                (default: the model's context minus `reflection_tokens`).
            prefill_chunk_size: prompt tokens per row per forward pass while the prompt is
                read (bounds activation memory); None reads the whole prompt in one pass.
            bf16: generate under bfloat16 autocast (see `models.precision`).
        """
        from transformers import StoppingCriteriaList, StopStringCriteria

        if reflection_tokens < 1:
            raise ValueError("reflection_tokens must be >= 1")
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if prefill_chunk_size is not None and prefill_chunk_size < 1:
            raise ValueError("prefill_chunk_size must be >= 1 or None")
        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.reflection_tokens = int(reflection_tokens)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.prefix_reuse = prefix_reuse
        self.prefill_chunk_size = prefill_chunk_size
        self.bf16 = bool(bf16)
        context = getattr(model.config, "max_position_embeddings", None)
        self.max_prompt_tokens = max_prompt_tokens if max_prompt_tokens is not None else (
            context - self.reflection_tokens if context else None
        )
        if adapter is not None and is_peft_model(model) and adapter not in adapter_names(model):
            log.info("adapter %r is not loaded (loaded: %s): the reflector uses the base weights", adapter, adapter_names(model))
        self._stopping = StoppingCriteriaList([StopStringCriteria(tokenizer, list(STOP_STRINGS))])
        self._calls = 0
        self.last_stats: dict[str, int] = {}
        """Token counts of the last call: prompt_tokens, prefix_tokens, new_tokens."""

    @property
    def deterministic(self) -> bool:
        """Greedy decoding: the same prompt gets the same reflection."""
        return self.temperature == 0

    def reseed(self, seed: int) -> None:
        """Sample from `seed` on (no effect on greedy decoding)."""
        self.seed = int(seed)
        self._calls = 0

    def count_tokens(self, text: str) -> int:
        """Prompt length in tokens (the protocol's `count` for prompt budgets)."""
        return len(encode_prompts(self.tokenizer, [text])[0])

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        """One cleaned reflection per reflector prompt, generated as one batch."""
        if not prompts:
            return []
        return [clean_reflection(text) for text in self.generate_raw(prompts)]

    def generate_raw(self, prompts: Sequence[str]) -> list[str]:
        """The generated continuations before `clean_reflection`."""
        from transformers import GenerationConfig

        prompt_ids = encode_prompts(self.tokenizer, prompts)
        if any(not row for row in prompt_ids):
            raise ValueError("empty reflector prompt")
        sample = self.temperature > 0
        config = GenerationConfig(
            max_new_tokens=self.reflection_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_k=None,
            top_p=None,
            pad_token_id=self._pad_id(),
            eos_token_id=self._eos_ids(),
            prefill_chunk_size=self.prefill_chunk_size,
        )
        seed = self.seed + self._calls
        self._calls += 1
        device = self.model.get_output_embeddings().weight.device
        with (
            torch.no_grad(),
            adapter_scope(self.model, self.adapter),
            seeded(seed if sample else None, device),
            bf16_autocast(self.bf16, device),
            _contiguous_head_input(self.model),
        ):
            input_ids, attention_mask, cache, shared = self.prepare_inputs(prompt_ids)
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                cache=cache,
                generation_config=config,
                stopping_criteria=self._stopping,
            )
        new = output[:, input_ids.shape[1] :]
        self.last_stats = {
            "prompt_tokens": sum(len(row) for row in prompt_ids),
            "prefix_tokens": shared,
            "new_tokens": int(_generated_count(new, self._pad_id(), self._eos_ids())),
        }
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def prepare_inputs(self, prompt_ids: Sequence[Sequence[int]]):
        """Padded ids, attention mask, a prefilled cache (or None) and the shared-prefix length."""
        device = self.model.get_output_embeddings().weight.device
        if self.prefix_reuse is None:
            shared = prefix_to_run_once(prompt_ids)
        else:
            shared = shared_prefix_length(prompt_ids) if self.prefix_reuse and len(prompt_ids) > 1 else 0
        if not shared:
            input_ids, attention_mask = left_pad(prompt_ids, self._pad_id(), device)
            return input_ids, attention_mask, None, 0
        # Generation appends to the right, so rows are [prefix][left-padded suffix]: every row ends at the same column.
        suffix_ids, suffix_mask = left_pad([row[shared:] for row in prompt_ids], self._pad_id(), device)
        prefix = torch.as_tensor([list(prompt_ids[0][:shared])], dtype=torch.long, device=device)
        cache = prefix_cache(bare_decoder(self.model), prefix, len(prompt_ids))
        input_ids = torch.cat([prefix.expand(len(prompt_ids), -1), suffix_ids], dim=1)
        attention_mask = torch.cat([torch.ones_like(prefix).expand(len(prompt_ids), -1), suffix_mask], dim=1)
        return input_ids, attention_mask, cache, shared

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def _eos_ids(self) -> list[int]:
        ids = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return sorted(ids)


def _generated_count(new: torch.Tensor, pad_id: int, eos_ids: list[int]) -> int:
    """Generated tokens up to and including each row's first EOS/pad."""
    total = 0
    stops = set(eos_ids) | {pad_id}
    for row in new.tolist():
        count = 0
        for token in row:
            count += 1
            if token in stops:
                break
        total += count
    return total


@contextmanager
def _contiguous_head_input(model) -> Iterator[None]:
    """While generating, give the vocabulary projection a contiguous input (see the module docstring)."""
    head = model.get_output_embeddings()
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()
