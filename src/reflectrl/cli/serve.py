"""`reflectrl serve-reflector`: a trained reflector behind an inference server until Ctrl-C (registered in `cli.main`)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Optional

import typer

from reflectrl.cli.errors import fail
from reflectrl.serving.engines import ENGINES


def serve_reflector(
    adapter: str = typer.Argument(..., metavar="ADAPTER", help="Reflector adapter folder (from `reflectrl sft --role reflector`) or a model spec."),
    engine: str = typer.Option("llamacpp", "--engine", help=f"Inference server: {', '.join(ENGINES)}."),
    out: Path = typer.Option(..., "--out", help="Folder for the export and server.log (e.g. the run folder)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Loopback port (default: a free one)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="llamacpp: CPU threads of the server."),
    context: int = typer.Option(4096, "--context", min=256, help="Context length the server allocates (prompt + reflection)."),
    engine_python: Optional[str] = typer.Option(None, "--engine-python", help="Python that runs the engine (vLLM: its own venv; default $REFLECTRL_VLLM_PYTHON or this one)."),
    engine_arg: list[str] = typer.Option([], "--engine-arg", help="Extra argument for the server command line (repeatable), e.g. --engine-arg=--gpu-memory-utilization=0.5."),
    dtype: str = typer.Option("float32", "--dtype", help="vllm: weight type (float32 on CPU; bfloat16 or auto on GPUs)."),
) -> None:
    """Start the reflector's server on loopback, print its served:URL#MODEL spec, and stop it on Ctrl-C or kill."""
    # A plain `kill` should stop the server too: turn SIGTERM into the same unwinding as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _serve(adapter, engine, out, port, threads, context, engine_python, engine_arg, dtype)
    finally:
        signal.signal(signal.SIGTERM, previous)  # called in-process (tests), the caller's handler comes back


def _serve(adapter, engine, out, port, threads, context, engine_python, engine_arg, dtype) -> None:
    from reflectrl.models import ModelLoadError
    from reflectrl.serving.engines import EngineMissing
    from reflectrl.serving.managed import ServerError
    from reflectrl.serving.reflector_server import start_reflector_server

    try:
        served = start_reflector_server(
            adapter, engine, out, port=port, threads=threads, context=context, engine_python_path=engine_python,
            engine_args=engine_arg, dtype=dtype,
        )
    except KeyboardInterrupt:
        fail("interrupted before the server was up", 130)
    except (ValueError, OSError, ModelLoadError, EngineMissing, ServerError) as err:
        fail(str(err))
    typer.echo(f"{engine} server for {adapter} is up; log {served.server.log_path}")
    typer.echo(f"Use it with --reflector {served.spec}")
    try:
        while served.server.alive():
            time.sleep(1.0)
        fail(f"the {engine} server {served.server.state()}; log {served.server.log_path}: {served.server.last_log_line()}", 1)
    except KeyboardInterrupt:
        typer.echo("Stopping the server.")
    finally:
        served.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
