"""The Hugging Face plumbing under the players: loading, LoRA adapters, tokens and the OpenAI client.

* `load_model` / `load_tokenizer`: the embedded default (``"smollm2-135m"``,
  offline, cached under ``$REFLECTRL_CACHE``), ``"tiny-random"`` for tests, any
  Hugging Face model or a PEFT adapter folder.
* `add_lora`, `load_adapter`, `save_adapter`, `adapter_scope`: named LoRA adapters on one base model.
* `encode_prompt`, `encode_prompts`, `token_counter`: the BOS convention of every prompt.
* `OpenAIChatClient`: chat and raw completions from an OpenAI-compatible server.

The players built on it (the label-head policy, the reflectors, the agents and
`TwoPlayerModel`) are `reflectrl.players`.
"""

from reflectrl.models.adapters import (
    adapter_names,
    adapter_scope,
    add_lora,
    load_adapter,
    lora_parameters,
    save_adapter,
)
from reflectrl.models.embedded import CACHE_ENV, EMBEDDED_DEFAULT, cache_root
from reflectrl.models.loading import (
    TINY_RANDOM,
    ModelLoadError,
    load_model,
    load_tokenizer,
)
from reflectrl.models.openai_backend import BackendError, OpenAIChatClient
from reflectrl.models.tokens import encode_prompt, encode_prompts, token_counter

__all__ = [
    "CACHE_ENV",
    "EMBEDDED_DEFAULT",
    "TINY_RANDOM",
    "BackendError",
    "ModelLoadError",
    "OpenAIChatClient",
    "adapter_names",
    "adapter_scope",
    "add_lora",
    "cache_root",
    "encode_prompt",
    "encode_prompts",
    "load_adapter",
    "load_model",
    "load_tokenizer",
    "lora_parameters",
    "save_adapter",
    "token_counter",
]
