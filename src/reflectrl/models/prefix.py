"""Padding and shared prompt prefixes: run the tokens every row of a batch starts with once.

Prompts of one environment start with the same task text (for DangerousTaxi
about 120 of 330 tokens). The reflector's prefill, the policy's label head
and the SFT loss all run that prefix once at batch size 1, copy its KV cache
to every row and process only the rows' own suffixes: the same outputs and
gradients up to float rounding, with (rows - 1) x prefix positions less work.
`hidden_states` is that forward pass for right-padded rows (policy and SFT);
the reflector, which generates and so needs left-padded suffixes, uses
`prefix_cache` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from reflectrl.models.adapters import is_peft_model

MIN_SHARED_PREFIX = 32
"""Below this many shared tokens the saved work is too small to pay for the extra batch-1 pass."""


def shared_prefix_length(rows: Sequence[Sequence[int]], first_target: int | None = None) -> int:
    """Tokens shared by the start of every row, leaving each row at least one token of its own.

    With `first_target` (the first position a loss is taken on) the prefix also
    stops before the position that predicts it, whose hidden state the loss needs.
    Accepts a [B, T] tensor too.
    """
    if isinstance(rows, Tensor):
        rows = rows.tolist()
    if not rows:
        return 0
    first = rows[0]
    limit = min(len(row) for row in rows) - 1
    if first_target is not None:
        limit = min(limit, first_target - 1)
    length = 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return max(length, 0)


def prefix_to_run_once(rows: Sequence[Sequence[int]], first_target: int | None = None) -> int:
    """`shared_prefix_length` when running it once pays (two or more rows, `MIN_SHARED_PREFIX` tokens), else 0."""
    if len(rows) < 2:
        return 0
    length = shared_prefix_length(rows, first_target)
    return length if length >= MIN_SHARED_PREFIX else 0


def bare_decoder(model):
    """The transformer under a causal LM's head (through a peft wrapper).

    Running it instead of the whole model skips the full-vocabulary projection
    of every position, which callers that need one position (or none) avoid.
    """
    causal_lm = model.get_base_model() if is_peft_model(model) else model
    return causal_lm.base_model


def prefix_cache(decoder, prefix_ids: Tensor, rows: int):
    """The KV cache of `prefix_ids` ([1, P]) run once through `decoder`, repeated for `rows` rows.

    Gradients flow back through the copies into the single prefix pass.
    """
    cache = decoder(input_ids=prefix_ids, use_cache=True).cache
    cache.batch_repeat_interleave(rows)
    return cache


def hidden_states(decoder, input_ids: Tensor, attention_mask: Tensor, prefix: int = 0) -> Tensor:
    """Last-layer hidden states of right-padded rows [B, T]: [B, T - prefix, H] for positions prefix..T-1.

    With `prefix` > 0 the rows' common first `prefix` tokens run once (see the
    module docstring); right padding keeps every row's positions continuous
    after the prefix, and causal attention keeps the padding after a row's
    last token out of its states.
    """
    if not prefix:
        return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    rows, width = input_ids.shape
    cache = prefix_cache(decoder, input_ids[:1, :prefix], rows)
    positions = torch.arange(prefix, width, device=input_ids.device).expand(rows, -1)
    return decoder(
        input_ids=input_ids[:, prefix:],
        attention_mask=attention_mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
    ).last_hidden_state


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    """Left-padded [B, T] ids and the matching attention mask."""
    return _pad(rows, pad_id, device, left=True)


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    """Right-padded [B, T] ids and the matching attention mask."""
    return _pad(rows, pad_id, device, left=False)


def _pad(rows, pad_id, device, *, left: bool) -> tuple[Tensor, Tensor]:
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if left else slice(0, len(row))
            input_ids[i, span] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, span] = 1
    return input_ids.to(device), mask.to(device)
