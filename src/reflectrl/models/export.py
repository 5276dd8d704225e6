"""`export_model`: turn a trained player (or any model spec) into files that inference servers load.

Layout of the export folder:

* ``model/``: a Hugging Face checkpoint (config, generation config, float
  safetensors with every tied tensor present, tokenizer): the base model, or
  with ``merge`` the base with the LoRA folded in. vLLM and
  ``AutoModelForCausalLM.from_pretrained`` read it as it is.
* ``adapter/`` (an adapter spec without ``merge``): the PEFT adapter, its base
  recorded as ``model/`` of this folder, for vLLM's ``--lora-modules``.
* ``model.gguf`` (with ``gguf_type``): what ``model/`` holds, for llama.cpp
  (see `models.gguf_writer`): the merged model with ``merge``, else the base.
* ``adapter.gguf`` (with ``gguf_type``, an adapter spec without ``merge``): the
  LoRA as a llama.cpp adapter file, for ``--lora`` on top of ``model.gguf``.
* ``export.json``: what was exported from where, read by `reflectrl serve-reflector`.

The folder is written atomically: a killed export leaves the previous one (or nothing).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reflectrl.models.atomic import atomic_folder
from reflectrl.models.loading import ADAPTER_CONFIG, gguf_source, is_adapter_folder, load_model
from reflectrl.models.standalone import save_standalone

MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
GGUF_FILE = "model.gguf"
GGUF_ADAPTER_FILE = "adapter.gguf"
EXPORT_FILE = "export.json"


@dataclass(frozen=True)
class ExportRecord:
    """Contents of ``export.json``."""

    source: str
    """The spec that was exported (an adapter folder, or a model spec)."""
    merged: bool
    """``model/`` holds the adapter folded into the base."""
    adapter: bool
    """``adapter/`` is present."""
    gguf: str | None
    """Tensor type of ``model.gguf`` (and ``adapter.gguf``), or None when none was written."""
    dtype: str
    gguf_adapter: bool = False
    """``adapter.gguf`` is present (``model.gguf`` is then the base model)."""

    @classmethod
    def read(cls, folder: str | os.PathLike) -> ExportRecord:
        path = Path(folder) / EXPORT_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"{folder} is not a reflectrl export (cannot read {path}: {err}); make one with `reflectrl export`") from err


def export_model(
    spec: str | os.PathLike,
    out: str | os.PathLike,
    *,
    merge: bool = False,
    gguf_type: str | None = None,
    dtype: str = "float32",
) -> ExportRecord:
    """Export `spec` into the folder `out` (see the module docstring); returns what ``export.json`` says."""
    from reflectrl.models.gguf_writer import GGUF_TYPES, write_gguf, write_gguf_lora

    spec = os.fspath(spec)
    out = Path(out)
    if gguf_type is not None and gguf_type not in GGUF_TYPES:
        raise ValueError(f"unknown GGUF type {gguf_type!r}; choose from {', '.join(GGUF_TYPES)}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / EXPORT_FILE).is_file())):
        raise FileExistsError(f"{out} exists and is not an earlier export; choose an empty or new folder")
    from_adapter = is_adapter_folder(spec)
    model, tokenizer = load_model(spec, dtype=dtype, device="cpu")
    record = ExportRecord(source=spec, merged=from_adapter and merge, adapter=from_adapter and not merge, gguf=gguf_type,
                          dtype=str(dtype), gguf_adapter=bool(gguf_type) and from_adapter and not merge)
    with atomic_folder(out) as tmp, torch.no_grad():
        if record.gguf_adapter:
            write_gguf_lora(model, tmp / GGUF_ADAPTER_FILE, tensor_type=gguf_type)
        # peft's unload() takes the LoRA layers out without folding them in.
        plain = model if not from_adapter else model.merge_and_unload() if merge else model.unload()
        _save_checkpoint(plain, tokenizer, tmp / MODEL_DIR)
        if record.adapter:
            _copy_adapter(Path(spec), tmp / ADAPTER_DIR, (out / MODEL_DIR).resolve())
        if gguf_type:
            write_gguf(plain, tokenizer, tmp / GGUF_FILE, tensor_type=gguf_type, tokenizer_source=gguf_source(spec))
        (tmp / EXPORT_FILE).write_text(json.dumps(asdict(record), indent=1) + "\n", encoding="utf-8")
    return record


def _save_checkpoint(model, tokenizer, folder: Path) -> None:
    # The spec the model was loaded by ("tiny-random", an adapter path) means nothing to other tools.
    model.config.name_or_path = ""
    save_standalone(model, folder)
    tokenizer.save_pretrained(folder)


def _copy_adapter(source: Path, target: Path, base_folder: Path) -> None:
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    config_path = target / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(base_folder)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
