"""Padding and shared prompt prefixes: run the tokens every row of a batch starts with once.

Prompts of one environment start with the same task text (for DangerousTaxi
about 120 of 330 tokens). The reflector's prefill, the policy's label head
and the SFT loss all run that prefix once at batch size 1, copy its KV cache
to every row and process only the rows' own suffixes: the same outputs and
gradients up to float rounding, with (rows - 1) x prefix positions less work.
`hidden_states` is that forward pass for right-padded rows (policy and SFT);
the reflector, which generates and so needs left-padded suffixes, uses
`prefix_cache` directly.

Without gradients the batch-1 pass is also kept across batches, keyed by the
prefix's tokens, for as long as the weights it ran with are unchanged: the
frozen reflector's for a whole run, the policy's rollouts until the next
optimizer step. A kept pass is the very tensors a new pass would compute
(the same tokens through the same weights at batch size 1). The weights
count as unchanged while the same parameter tensors (the same objects, with
the same storage) are in place with the same version counters, which every
in-place write (an optimizer step, a ``load_state_dict``) advances, and while
the same adapters are active; writes through ``param.data``, which bypass
the counter, would go unseen (nothing in this project writes weights that way).
"""

from __future__ import annotations

import copy
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from reflectrl.models.adapters import is_peft_model

MIN_SHARED_PREFIX = 32
"""Below this many shared tokens the saved work is too small to pay for the extra batch-1 pass."""
KEPT_PREFIXES = 8
"""Batch-1 prefix passes kept per model (the most recently used): one environment's batches share one or two
prefixes per player, and a pass of SmolLM2 over DangerousTaxi's 120-token prefix holds about 5 MiB."""

_kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""decoder -> OrderedDict of (prefix tokens, autocast, weights) -> (its batch-1 KV cache, weak references to the
tensors it read), oldest first."""


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

    Gradients flow back through the copies into the single prefix pass. Without
    gradients (and with `decoder` in eval mode, so no dropout draws) the pass is
    kept for later batches with the same prefix (see the module docstring).
    """
    if torch.is_grad_enabled() or decoder.training:
        cache = decoder(input_ids=prefix_ids, use_cache=True).cache
    else:
        # A copy: generation appends to the cache it is given.
        cache = copy.deepcopy(_kept_prefix(decoder, prefix_ids))
    cache.batch_repeat_interleave(rows)
    return cache


def _kept_prefix(decoder, prefix_ids: Tensor):
    """The batch-1 cache of `prefix_ids` under the current weights, computed only when none is kept."""
    kind = prefix_ids.device.type
    autocast = (torch.get_autocast_dtype(kind),) if torch.is_autocast_enabled(kind) else ()
    adapters, tensors = _weights_state(decoder)
    key = (tuple(prefix_ids[0].tolist()), autocast, adapters, tuple((t.data_ptr(), t._version) for t in tensors))
    kept = _kept.setdefault(decoder, OrderedDict())
    # The same objects too: a freed tensor's storage and version could come back in a new one.
    if key in kept and all(ref() is tensor for ref, tensor in zip(kept[key][1], tensors)):
        kept.move_to_end(key)
        return kept[key][0]
    kept[key] = (decoder(input_ids=prefix_ids, use_cache=True).cache, [weakref.ref(t) for t in tensors])
    kept.move_to_end(key)
    while len(kept) > KEPT_PREFIXES:
        kept.popitem(last=False)
    return kept[key][0]


def _weights_state(decoder) -> tuple[tuple, list[Tensor]]:
    """What the decoder's output depends on besides its input: the active adapters of each LoRA layer, and every
    tensor they read (base weights, buffers and the active adapters' LoRA weights).

    Inactive adapters' weights are left out, so that training the policy's adapter leaves the reflector's kept
    passes valid on a base model the two share.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    active: set[str] = set()
    layers = []
    for module in decoder.modules():
        if isinstance(module, BaseTunerLayer):
            names = () if module.disable_adapters else tuple(module.active_adapters)
            active.update(names)
            layers.append((names, tuple(module.merged_adapters), tuple(sorted(getattr(module, "scaling", {}).items()))))
    tensors = [
        param
        for name, param in decoder.named_parameters()
        if "lora_" not in name or any(f".{adapter}." in name or name.endswith(f".{adapter}") for adapter in active)
    ]
    return tuple(layers), tensors + list(decoder.buffers())


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
