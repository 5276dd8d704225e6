"""Write a Llama-architecture causal LM (SmolLM2, Llama, the tiny test model) as a GGUF file for llama.cpp.

Only unquantised types are written (float32, float16); quantise further with
llama.cpp's own tools if you want a smaller file. Two details decide whether
llama.cpp computes what transformers computes:

* Rotary embeddings. transformers rotates the two halves of each head
  (``rotate_half``); llama.cpp's Llama kernels rotate adjacent pairs. The rows
  of the query and key projections are reordered so that the pair llama.cpp
  rotates together holds the two values transformers rotates together.
* Tokenizer. When the model's tokenizer came from a GGUF file (the embedded
  SmolLM2 and the tiny test model) its ``tokenizer.*`` entries are copied
  verbatim, pre-tokenizer name included, so llama.cpp splits text as before.
  Otherwise a byte-level BPE tokenizer is described from its ``tokenizer.json``
  with llama.cpp's default pre-tokenizer, which can split unusual text
  differently (a warning says so).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

GGUF_TYPES = ("f32", "f16")
"""Tensor types `write_gguf` can write."""

log = logging.getLogger(__name__)


class GGUFExportError(ValueError):
    """The model cannot be written as GGUF (the message says why)."""


def write_gguf(model, tokenizer, path: str | os.PathLike, *, tensor_type: str = "f32", tokenizer_source: Path | None = None) -> Path:
    """Write `model` (a plain Llama-architecture causal LM, no adapters) to `path`; returns the path.

    `tokenizer_source` is a GGUF file whose tokenizer entries are copied (see the module docstring).
    """
    import gguf

    config = _checked_config(model, tensor_type)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(str(getattr(config, "name_or_path", "") or "reflectrl export"))
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.num_key_value_heads or heads))
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if tensor_type == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    if tokenizer_source is not None:
        _copy_tokenizer(writer, tokenizer_source)
    else:
        _describe_tokenizer(writer, tokenizer, int(config.vocab_size))
    tensors = _GGUFTensors(config, writer, tensor_type)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # llama.cpp reads the output head from the token embedding when the file has none
        tensors.add(name, tensor)
    return _finish(writer, path)


def write_gguf_lora(model, path: str | os.PathLike, *, adapter_name: str = "default", tensor_type: str = "f32") -> Path:
    """Write the LoRA `adapter_name` of the peft `model` as a llama.cpp LoRA GGUF (``--lora``); returns the path.

    llama.cpp's adapter format: ``general.type = "adapter"``, ``adapter.type = "lora"``,
    ``adapter.lora.alpha``, and for each adapted weight ``W`` (named as in the base
    GGUF) the tensors ``W.lora_a`` (rank x inputs) and ``W.lora_b`` (outputs x rank).
    llama.cpp scales ``B A x`` by alpha / rank, so every adapted layer must share
    peft's rank and scaling (true for reflectrl's adapters); the query and key
    rows of B get the base file's rotary order.
    """
    import gguf

    config = _checked_config(model, tensor_type)
    layers = [(name, module) for name, module in model.named_modules() if adapter_name in getattr(module, "lora_A", {})]
    if not layers:
        raise GGUFExportError(f"the model has no LoRA layers of the adapter {adapter_name!r}")
    settings = {(int(m.r[adapter_name]), float(m.scaling[adapter_name]), bool(m.use_dora.get(adapter_name, False))) for _, m in layers}
    if len(settings) != 1 or next(iter(settings))[2]:
        raise GGUFExportError(
            "a llama.cpp LoRA file has one alpha / rank for all layers; this adapter's layers differ (or use DoRA): export it with --merge"
        )
    rank, scaling, _ = settings.pop()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scaling * rank)
    tensors = _GGUFTensors(config, writer, tensor_type)
    for name, module in layers:
        # peft names the wrapped layer base_model.model.<the plain model's name>
        base = name.removeprefix("base_model.model.") + ".weight"
        tensors.add(base, module.lora_A[adapter_name].weight, suffix=".lora_a", rotary=False)
        tensors.add(base, module.lora_B[adapter_name].weight, suffix=".lora_b")
    return _finish(writer, path)


def _checked_config(model, tensor_type: str):
    """`model`'s config, after checking that `write_gguf` can describe it."""
    if tensor_type not in GGUF_TYPES:
        raise GGUFExportError(f"unknown GGUF tensor type {tensor_type!r}; choose from {', '.join(GGUF_TYPES)}")
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        raise GGUFExportError(
            f"GGUF export covers Llama-architecture models (SmolLM2, Llama); this one is {config.model_type!r}. "
            "Serve it with vLLM from the Hugging Face export instead"
        )
    if _rope_settings(config).get("rope_type", "default") != "default":
        raise GGUFExportError("GGUF export does not write rotary scaling settings; serve this model with vLLM instead")
    return config


class _GGUFTensors:
    """Adds transformers tensors to a GGUF writer under llama.cpp's names, in its rotary row order and tensor type."""

    def __init__(self, config, writer, tensor_type: str):
        import gguf

        self.names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(config.num_hidden_layers))
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads or config.num_attention_heads)
        self.writer, self.tensor_type = writer, tensor_type

    def add(self, name: str, tensor, *, suffix: str = "", rotary: bool = True) -> None:
        target = self.names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise GGUFExportError(f"no GGUF name for the tensor {name!r}; is this a plain Llama model?")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if rotary and name.endswith("self_attn.q_proj.weight"):
            array = _pair_rotary_rows(array, self.heads)
        elif rotary and name.endswith("self_attn.k_proj.weight"):
            array = _pair_rotary_rows(array, self.kv_heads)
        # llama.cpp keeps 1-D tensors (norms) in float32 whatever the file type.
        self.writer.add_tensor(target + suffix, array.astype(np.float16) if self.tensor_type == "f16" and array.ndim > 1 else array)


def _finish(writer, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _rope_settings(config) -> dict:
    # transformers 5 keeps rotary settings in `rope_parameters` (type and theta); older configs had `rope_scaling`.
    return dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})


def _rope_theta(config) -> float:
    theta = getattr(config, "rope_theta", None)
    return theta if theta is not None else _rope_settings(config).get("rope_theta", 10000.0)


def _pair_rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows from (first half, second half) to interleaved pairs (see the module docstring)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _copy_tokenizer(writer, source: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(source))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), kind)


def _describe_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    import gguf

    from reflectrl.models.tokens import leading_special_ids

    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise GGUFExportError(
            "GGUF export describes byte-level BPE tokenizers only (this one is "
            f"{model.get('type') or type(tokenizer).__name__}); serve this model with vLLM instead"
        )
    log.warning("no GGUF tokenizer to copy: llama.cpp will use its default pre-tokenizer, which may split some text differently")
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    added = {t["id"] for t in spec.get("added_tokens", [])}
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[index])
        types.append(gguf.TokenType.CONTROL if index in special else gguf.TokenType.USER_DEFINED if index in added else gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id), ("pad", writer.add_pad_token_id), ("unk", writer.add_unk_token_id)):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            add(int(token_id))
    writer.add_add_bos_token(bool(leading_special_ids(tokenizer)))
