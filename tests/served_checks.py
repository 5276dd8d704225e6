"""Checks shared by the tests against real inference servers (llama.cpp, vLLM): same reflections, kill and resume."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.models import load_model
from reflectrl.players import LocalReflector
from reflectrl.players.served_reflector import ServedReflector
from reflectrl.serving.reflector_server import ReflectorServer

AGREEMENT_PROMPTS = 64
REFLECTION_TOKENS = 24


def assert_same_reflections(reflector: Path, served: ReflectorServer, prompts: list[str]) -> str:
    """Item 4 of issue 19: the server writes the in-process greedy reflections for >= 95% of `prompts`; returns a summary."""
    prompts = prompts[:AGREEMENT_PROMPTS]
    assert len(prompts) >= 48
    model, tokenizer = load_model(reflector, device="cpu")
    local = LocalReflector(model, tokenizer, reflection_tokens=REFLECTION_TOKENS).reflect(prompts)
    client = ServedReflector(str(served.spec), reflection_tokens=REFLECTION_TOKENS)
    try:
        started = time.perf_counter()
        remote = client.reflect(prompts)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    differing = [(i, a, b) for i, (a, b) in enumerate(zip(local, remote)) if a != b]
    agreement = 1 - len(differing) / len(prompts)
    assert agreement >= 0.95, f"{agreement:.1%} of {len(prompts)} equal; differing (index, local, served): {differing[:5]}"
    assert len(set(remote)) > 1 and any(remote)  # real, prompt-dependent text, not one constant answer
    return f"{len(prompts) - len(differing)}/{len(prompts)} reflections equal, served in {seconds:.1f} s"


def train_args(reflector_spec: str, out: Path) -> list[str]:
    return [
        "train", "taxi", "--policy", "tiny-random", "--reflector", reflector_spec, "--out", str(out), "--iters", "3",
        "--episodes-per-iter", "2", "--checkpoint-every", "1", "--eval-every", "0", "--horizon", "4", "--levels", "pickup",
        "--reflection-tokens", "8", "--max-concurrent", "2", "--threads", "1", "--quiet", "--no-bf16", "--fixed-labels",
    ]


def assert_kill_gives_one_line_and_resume_continues(start: Callable[[], ReflectorServer], engine: str, out: Path) -> None:
    """A server killed after the first RL checkpoint stops `train` with one line; a restarted one lets `--resume` finish."""
    first = start()
    spec = str(first.spec)

    def kill_after_first_checkpoint():
        deadline = time.monotonic() + 600
        while not (out / "checkpoints" / "iter-000001").is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        first.server.kill()

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    try:
        failed = CliRunner().invoke(app, train_args(spec, out))
    finally:
        killer.join()
        first.stop()
    assert failed.exit_code == 2, failed.output
    error = [line for line in failed.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"reflector server {first.server.url} ({engine}) failed" in error[0], failed.output
    assert str(first.server.log_path) in error[0] and "--resume" in error[0]
    assert not (out / "final").exists()

    # A restarted server gets another free port; the run knows its reflector by the model name, which names the weights.
    with start() as again:
        assert again.spec.model == first.spec.model
        resumed = CliRunner().invoke(app, [*train_args(str(again.spec), out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "Resuming" in resumed.output and (out / "final" / "adapter_config.json").is_file()
    iterations = [json.loads(line).get("iteration") for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(i for i in iterations if i is not None) == 3
