"""A trained reflector behind a real llama.cpp server (llama-cpp-python), started and stopped by these tests.

Skipped with the reason when llama-cpp-python's server is not installed (``pip install 'reflectrl[llamacpp]'``).
Each server is the tiny SFT reflector exported as a float32 GGUF, one CPU thread.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("fastapi") is None:
    pytest.skip("llama-cpp-python's server is not installed: pip install 'reflectrl[llamacpp]'", allow_module_level=True)

from reflectrl.players.served_reflector import ServedReflector
from reflectrl.serving.reflector_server import start_reflector_server
from served_checks import assert_kill_gives_one_line_and_resume_continues, assert_same_reflections


@pytest.fixture(scope="module")
def served(tiny_sft_reflector, tmp_path_factory):
    with start_reflector_server(tiny_sft_reflector, "llamacpp", tmp_path_factory.mktemp("llamacpp"), threads=1, startup_timeout=120) as server:
        yield server


def test_served_reflections_equal_the_in_process_ones(one_thread, served, tiny_sft_reflector, taxi_reflector_prompts):
    """Item 4 of issue 19: a float32 engine writes the in-process reflections for >= 95% of the prompts."""
    assert_same_reflections(tiny_sft_reflector, served, taxi_reflector_prompts)


def test_a_server_killed_mid_run_is_one_line_and_resume_continues(one_thread, tiny_sft_reflector, tmp_path):
    assert_kill_gives_one_line_and_resume_continues(
        lambda: start_reflector_server(tiny_sft_reflector, "llamacpp", tmp_path / "server", threads=1, startup_timeout=120),
        "llamacpp", tmp_path / "run",
    )


PARENT = textwrap.dedent(
    """
    import sys, time
    from reflectrl.serving.reflector_server import start_reflector_server
    served = start_reflector_server(sys.argv[1], "llamacpp", sys.argv[2], threads=1, startup_timeout=120)
    print(served.server.process.pid, flush=True)
    time.sleep(600)
    """
)


def test_the_server_dies_with_its_parent(tiny_sft_reflector, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")) if p)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tiny_sft_reflector), str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        server_pid = int(parent.stdout.readline())
        os.kill(server_pid, 0)  # running
        parent.send_signal(signal.SIGKILL)  # no Python clean-up runs in the parent
        parent.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _running(server_pid):
            time.sleep(0.1)
        assert not _running(server_pid)
    finally:
        parent.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has exited; only its entry is left
    except FileNotFoundError:
        return False


def test_the_pipeline_serves_its_reflector_with_one_flag(tmp_path):
    from reflectrl.pipeline.presets import preset
    from reflectrl.pipeline.plan import REFLECTION_CACHE, REFLECTOR_SERVERS
    from reflectrl.pipeline.run import run_pipeline
    from reflectrl.serving.managed import started_here

    out = tmp_path / "run"
    messages: list[str] = []
    result = run_pipeline("taxi", preset("tiny", "taxi"), out, log=messages.append, progress=False, serve_reflector="llamacpp",
                          server_options={"threads": 1, "startup_timeout": 120})
    log = out / REFLECTOR_SERVERS / "sft-reflector" / "server.log"
    assert result.report.is_file() and log.is_file() and "llama_cpp.server" in log.read_text()
    served_cache = out / REFLECTION_CACHE / "sft-reflector.served.jsonl"
    assert served_cache.is_file() and "served model reflector-" in served_cache.read_text().splitlines()[0]
    assert not (out / REFLECTION_CACHE / "sft-reflector.jsonl").exists()  # nothing was generated in-process
    port = int(log.read_text().split("--port ")[1].split()[0])
    assert started_here(f"http://127.0.0.1:{port}/v1") is None  # stopped when the run ended


def test_serve_reflector_prints_the_spec_and_stops_the_server_on_kill(tiny_sft_reflector, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "reflectrl.cli.main", "serve-reflector", str(tiny_sft_reflector), "--engine", "llamacpp",
               "--out", str(tmp_path), "--threads", "1"]
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        while not any(line.startswith("Use it with --reflector served:") for line in lines):
            line = cli.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        spec = lines[-1].split("--reflector ")[1].strip()
        reflector = ServedReflector(spec, reflection_tokens=4)
        assert len(reflector.reflect(["Task: reach the goal.\nReflection:"])) == 1
        reflector.close()
        port = int(spec.split(":")[3].split("/")[0])
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
        with pytest.raises(Exception):
            ServedReflector(spec, max_retries=0, timeout=2).reflect(["x"])
        assert f"--port {port}" in (tmp_path / "server.log").read_text()
    finally:
        cli.kill()
