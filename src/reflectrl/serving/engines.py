"""Command lines of the inference servers reflectrl can manage, and how to tell whether one is installed.

* ``llamacpp``: llama-cpp-python's OpenAI-compatible server, in this Python
  (``pip install 'reflectrl[llamacpp]'``); it serves the merged GGUF.
* ``vllm``: vLLM's OpenAI-compatible server, usually in a virtual environment
  of its own (its pins clash with this project's), named by `engine_python` or
  ``$REFLECTRL_VLLM_PYTHON``; it serves the base checkpoint with the
  reflector as a LoRA module (``--enable-lora``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ENGINES = ("llamacpp", "vllm")
VLLM_PYTHON_ENV = "REFLECTRL_VLLM_PYTHON"


class EngineMissing(RuntimeError):
    """The engine is not installed where reflectrl looks for it (the message says how to install it)."""


def engine_python(engine: str, explicit: str | None = None) -> str:
    """The Python interpreter that runs `engine`'s server."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if explicit:
        return explicit
    if engine == "vllm":
        return os.environ.get(VLLM_PYTHON_ENV, "").strip() or sys.executable
    return sys.executable


def check_installed(engine: str, python: str) -> None:
    """Raise `EngineMissing` unless `python` can import the engine."""
    module = "llama_cpp.server" if engine == "llamacpp" else "vllm"
    if python == sys.executable and engine == "llamacpp":
        found = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("fastapi") is not None
    else:
        probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module.split('.')[0]!r}) else 1)"
        try:
            found = subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            found = False
    if not found:
        how = (
            "pip install 'reflectrl[llamacpp]' (llama-cpp-python with its server)"
            if engine == "llamacpp"
            else f"install vLLM in a virtual environment of its own and name its python with --engine-python or ${VLLM_PYTHON_ENV}"
        )
        raise EngineMissing(f"the {engine} engine is not installed for {python}: {how}")


def llamacpp_command(python: str, gguf: Path, *, port: int, host: str, alias: str, context: int, threads: int | None,
                     extra: Sequence[str] = ()) -> list[str]:
    command = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias, "--host", host,
               "--port", str(port), "--n_ctx", str(context)]
    if threads:
        command += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    return command + list(extra)


def vllm_command(python: str, model: Path, *, port: int, host: str, alias: str, context: int, adapter: Path | None,
                 lora_rank: int | None, dtype: str, extra: Sequence[str] = ()) -> list[str]:
    # `python -m` rather than the `vllm` script: the CPU build's script fails on its distribution name.
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", host, "--port", str(port),
               "--dtype", dtype, "--max-model-len", str(context), "--seed", "0"]
    if adapter is None:
        command += ["--served-model-name", alias]
    else:
        command += ["--served-model-name", f"{alias}-base", "--enable-lora", "--lora-modules", f"{alias}={adapter}"]
        if lora_rank:
            command += ["--max-lora-rank", str(max(8, lora_rank))]
    return command + list(extra)
