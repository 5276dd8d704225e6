"""Serve a trained reflector: export it for the engine, start a `ManagedServer`, hand out its ``served:`` spec.

The export lives in ``FOLDER/export`` and is reused while the reflector's
weights stay the same (their hash is recorded). The model name on the server
is ``reflector-<hash>``, so the ``served:`` spec names these exact weights and
reflection caches stay valid across restarts on other ports.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reflectrl.models.served_spec import ServedSpec
from reflectrl.serving.engines import check_installed, engine_python, llamacpp_command, vllm_command
from reflectrl.serving.managed import LOOPBACK, ManagedServer, free_port
from reflectrl.storage import atomic_write_bytes

EXPORT_DIR = "export"
SERVED_FILE = "served.json"
LOG_FILE = "server.log"


@dataclass
class ReflectorServer:
    """A started server and the reflector spec that reaches it."""

    server: ManagedServer
    spec: ServedSpec

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> ReflectorServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def served_name(reflector: str | os.PathLike) -> str:
    """The model name a reflector gets on the server: its weights' hash for an adapter, else its spec made safe."""
    from reflectrl.players.reflection_cache import reflector_identity

    source = reflector_identity(os.fspath(reflector), 0)["reflector"]
    if source.startswith("adapter sha256:"):
        return "reflector-" + source.split(":", 1)[1]
    return "reflector-" + re.sub(r"[^A-Za-z0-9._-]+", "-", Path(os.fspath(reflector)).name or "model").strip("-")


def start_reflector_server(
    reflector: str | os.PathLike,
    engine: str,
    folder: str | os.PathLike,
    *,
    port: int | None = None,
    threads: int | None = None,
    context: int = 4096,
    engine_python_path: str | None = None,
    engine_args: Sequence[str] = (),
    startup_timeout: float = 300.0,
    dtype: str = "float32",
) -> ReflectorServer:
    """Export `reflector` for `engine` into `folder`, start the server there and wait until it answers."""
    python = engine_python(engine, engine_python_path)
    check_installed(engine, python)
    folder = Path(folder)
    name = served_name(reflector)
    export = _exported(reflector, engine, folder / EXPORT_DIR, name)
    port = int(port) if port else free_port()
    if engine == "llamacpp":
        command = llamacpp_command(python, export / "model.gguf", port=port, host=LOOPBACK, alias=name, context=context,
                                   threads=threads, extra=engine_args)
    else:
        adapter = export / "adapter"
        command = vllm_command(python, export / "model", port=port, host=LOOPBACK, alias=name, context=context,
                               adapter=adapter if adapter.is_dir() else None, lora_rank=_lora_rank(adapter), dtype=dtype,
                               extra=engine_args)
    server = ManagedServer(engine, command, port=port, log_path=folder / LOG_FILE, startup_timeout=startup_timeout)
    server.start()
    return ReflectorServer(server, ServedSpec(server.url, name))


def _exported(reflector, engine: str, target: Path, name: str) -> Path:
    """The export `engine` serves, made unless `target` already holds it for these weights."""
    from reflectrl.models.export import export_model

    wanted = {"name": name, "engine": engine}
    record = target / SERVED_FILE
    try:
        if json.loads(record.read_text(encoding="utf-8")) == wanted:
            return target
    except (OSError, ValueError):
        pass
    # llama.cpp gets the merged GGUF (no LoRA work per token); vLLM applies the LoRA itself.
    llamacpp = engine == "llamacpp"
    export_model(reflector, target, merge=llamacpp, gguf_type="f32" if llamacpp else None)
    atomic_write_bytes(record, (json.dumps(wanted) + "\n").encode("utf-8"))
    return target


def _lora_rank(adapter: Path) -> int | None:
    try:
        return int(json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
