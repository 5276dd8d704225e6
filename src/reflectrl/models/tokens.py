"""How prompt text becomes token ids, the same way in SFT, rollouts and evaluation.

BOS convention: a prompt is encoded without the tokenizer's special tokens and
then prefixed with the special tokens the tokenizer would put *in front* of a
text by default (a BOS for Llama-2, Mistral or Gemma tokenizers; nothing for
SmolLM2 or GPT-2). Trailing special tokens (an EOS that some tokenizers append)
are never added, because the policy reads the next-token distribution right
after the last prompt token and the reflector continues the prompt.
Completions (a reflection, a label) are encoded without any special tokens and
appended to these ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

_PROBE = "x"


def leading_special_ids(tokenizer) -> list[int]:
    """The ids the tokenizer puts before a text by default (e.g. [bos_id]), possibly empty."""
    with_special = tokenizer.encode(_PROBE, add_special_tokens=True)
    plain = tokenizer.encode(_PROBE, add_special_tokens=False)
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return list(with_special[:start])
    return []


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt under the BOS convention of this module."""
    return leading_special_ids(tokenizer) + list(tokenizer.encode(text, add_special_tokens=False))


def encode_prompts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """`encode_prompt` for a batch (one tokenizer call for all texts)."""
    prefix = leading_special_ids(tokenizer)
    batch = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [prefix + list(ids) for ids in batch]


def token_counter(tokenizer) -> Callable[[str], int]:
    """A `count(text) -> tokens` function for the protocol's prompt budgets."""
    prefix_len = len(leading_special_ids(tokenizer))
    return lambda text: prefix_len + len(tokenizer.encode(text, add_special_tokens=False))
