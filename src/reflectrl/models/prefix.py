"""Shared prompt prefixes: run the tokens every row of a batch starts with once.

Prompts of one environment start with the same task text (for DangerousTaxi
about 120 of 330 tokens). The reflector's prefill, the policy's label head
and the SFT loss all run that prefix once at batch size 1, copy its KV cache
to every row and process only the rows' own suffixes: the same outputs and
gradients up to float rounding, with (rows - 1) x prefix positions less work.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_SHARED_PREFIX = 32
"""Below this many shared tokens the saved work is too small to pay for the extra batch-1 pass."""


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens shared by the start of every row, leaving each row at least one token of its own."""
    if not rows:
        return 0
    first = rows[0]
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return max(length, 0)


def prefix_cache(decoder, prefix_ids, rows: int):
    """The KV cache of `prefix_ids` ([1, P]) run once through `decoder`, repeated for `rows` rows.

    Gradients flow back through the copies into the single prefix pass.
    """
    cache = decoder(input_ids=prefix_ids, use_cache=True).cache
    cache.batch_repeat_interleave(rows)
    return cache
