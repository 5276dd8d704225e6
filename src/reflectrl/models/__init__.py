"""The two players' language models: loading, LoRA adapters, the label-head policy and reflectors.

* `load_model` / `load_tokenizer`: the embedded default (``"smollm2-135m"``,
  offline, cached under ``$REFLECTRL_CACHE``), ``"tiny-random"`` for tests, any
  Hugging Face model or a PEFT adapter folder.
* `add_lora`, `save_adapter`, `TwoPlayerModel`: LoRA adapters for both
  players on one shared base.
* `LabelPolicy`: the categorical policy over labelled actions (one forward pass).
* `LocalReflector`, `OpenAIReflector`: batched reflections from a local model or
  an OpenAI-compatible server (`OpenAIChatClient`).
"""

from reflectrl.models.adapters import (
    POLICY,
    REFLECTOR,
    TwoPlayerModel,
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
from reflectrl.models.openai_backend import (
    BackendError,
    OpenAIChatClient,
    OpenAIReflector,
)
from reflectrl.models.policy import LabelPolicy, PolicyOutput, ValueHead
from reflectrl.models.reflector import LocalReflector, Reflector
from reflectrl.models.tokens import encode_prompt, encode_prompts, token_counter

__all__ = [
    "CACHE_ENV",
    "EMBEDDED_DEFAULT",
    "POLICY",
    "REFLECTOR",
    "TINY_RANDOM",
    "BackendError",
    "LabelPolicy",
    "LocalReflector",
    "ModelLoadError",
    "OpenAIChatClient",
    "OpenAIReflector",
    "PolicyOutput",
    "Reflector",
    "TwoPlayerModel",
    "ValueHead",
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
