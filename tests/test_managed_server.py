"""`ManagedServer` and `ServedReflector` failures with plain Python child processes (no inference engine needed)."""

from __future__ import annotations

import sys

import pytest

from reflectrl.models.openai_backend import BackendError
from reflectrl.models.served_spec import ServedSpec
from reflectrl.players.served_reflector import ServedReflector
from reflectrl.serving.managed import ManagedServer, ServerError, free_port, started_here

# A server that answers every request with HTTP 200 and an HTML page: up, but talking nonsense.
GARBAGE_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Page(BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def _page(self):
        if self.headers.get("Content-Length"):
            self.rfile.read(int(self.headers["Content-Length"]))
        body = b"<html>maintenance</html>"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = _page
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Page).serve_forever()
"""


def test_served_specs_parse_and_name_the_model_not_the_port():
    spec = ServedSpec.parse("served:http://127.0.0.1:8080/v1/#reflector-ab12")
    assert (spec.url, spec.model) == ("http://127.0.0.1:8080/v1", "reflector-ab12")
    assert str(spec) == "served:http://127.0.0.1:8080/v1#reflector-ab12"
    assert spec.identity() == ServedSpec.parse("served:http://127.0.0.1:9999/v1#reflector-ab12").identity()
    assert ServedSpec.parse("served:https://host/v1").model is None
    for bad in ("served:127.0.0.1:8080", "openai:x", "served:"):
        with pytest.raises(ValueError, match="served:|http"):
            ServedSpec.parse(bad)


def test_a_server_that_exits_at_start_is_one_line_naming_the_log(tmp_path):
    command = [sys.executable, "-c", "import sys; print('no model file here'); sys.exit(3)"]
    server = ManagedServer("llamacpp", command, port=free_port(), log_path=tmp_path / "server.log", startup_timeout=30)
    with pytest.raises(ServerError) as err:
        server.start()
    message = str(err.value)
    assert "\n" not in message and "exited with status 3" in message and str(tmp_path / "server.log") in message
    assert "no model file here" in message
    assert started_here(server.url) is None


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path):
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    server = ManagedServer("vllm", command, port=free_port(), log_path=tmp_path / "server.log", startup_timeout=1)
    with pytest.raises(ServerError, match="did not answer within 1 s"):
        server.start()
    assert not server.alive()


def test_garbage_answers_and_a_dead_server_are_one_line_errors(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with ManagedServer("llamacpp", [sys.executable, "-c", GARBAGE_SERVER, str(port)], port=port, log_path=log) as server:
        assert started_here(server.url) is server
        with pytest.raises(BackendError) as err:
            ServedReflector(f"served:{server.url}")  # asks /models for the name
        assert "not JSON" in str(err.value) and "\n" not in str(err.value)
        reflector = ServedReflector(f"served:{server.url}#reflector", max_retries=0)
        with pytest.raises(BackendError) as err:
            reflector.reflect(["Task: go. Reflection:"])
        message = str(err.value)
        assert message.startswith(f"reflector server {server.url} (llamacpp) failed: running; log {log}")
        assert "not JSON" in message and "\n" not in message
        server.kill()
        with pytest.raises(BackendError) as err:
            reflector.reflect(["Task: go. Reflection:"])
        assert "exited with status -9" in str(err.value) and str(log) in str(err.value) and "\n" not in str(err.value)
    assert started_here(server.url) is None


def test_serve_reflector_without_the_engine_says_how_to_install_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from reflectrl.cli.main import app

    monkeypatch.setenv("REFLECTRL_VLLM_PYTHON", sys.executable)  # this venv has no vLLM
    runner = CliRunner()
    missing = runner.invoke(app, ["serve-reflector", "tiny-random", "--engine", "vllm", "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "the vllm engine is not installed" in missing.output and "Traceback" not in missing.output
    unknown = runner.invoke(app, ["serve-reflector", "tiny-random", "--engine", "tgi", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown engine 'tgi'" in unknown.output


# A server that starts a worker of its own (as vLLM does), then answers /v1/models on the port it is given.
SERVER_WITH_A_WORKER = """
import json, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
class Models(BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def do_GET(self):
        body = json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Models)
with open(sys.argv[2], "w") as out:
    out.write(json.dumps({"server": __import__("os").getpid(), "worker": worker.pid}))
server.serve_forever()
"""

# The parent: starts the managed server, says so, and waits to be killed.
PARENT = """
import sys, time
from reflectrl.serving.managed import ManagedServer, free_port
port = free_port()
server = ManagedServer("vllm", [sys.executable, "-c", sys.argv[1], str(port), sys.argv[2]], port=port, log_path=sys.argv[3],
                       startup_timeout=15)
server.start()
print("ready", flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaps is dead all the same
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_parent_takes_the_server_and_its_workers_down(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import time

    pids_file = tmp_path / "pids.json"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, SERVER_WITH_A_WORKER, str(pids_file), str(tmp_path / "server.log")],
        stdout=subprocess.PIPE, text=True,
    )
    pids = {}
    try:
        assert parent.stdout.readline().strip() == "ready"
        pids = json.loads(pids_file.read_text())
        assert not _gone(pids["worker"])
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(_gone(pid) for pid in pids.values()):
            time.sleep(0.1)
        assert {name: _gone(pid) for name, pid in pids.items()} == {"server": True, "worker": True}
    finally:
        parent.kill()
        for pid in pids.values():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_port_taken_between_the_pick_and_the_bind_is_picked_again(tmp_path, monkeypatch):
    import socket

    import reflectrl.serving.managed as managed

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    picks = iter([taken.getsockname()[1], free_port()])
    monkeypatch.setattr(managed, "free_port", lambda: next(picks))
    checks = []

    def free_at_first_look(port, check=managed.port_is_free):
        # As it was at the pick: the race is lost between this check and the server's bind.
        checks.append(port)
        return len(checks) == 1 or check(port)

    monkeypatch.setattr(managed, "port_is_free", free_at_first_look)
    command = [sys.executable, "-c", SERVER_WITH_A_WORKER, "{port}", str(tmp_path / "pids.json")]
    try:
        with ManagedServer("vllm", command, port=None, log_path=tmp_path / "server.log", startup_timeout=15) as server:
            assert server.port != taken.getsockname()[1] and server.url.endswith(f":{server.port}/v1")
            assert started_here(server.url) is server
        assert "Address already in use" in (tmp_path / "server.log").read_text()
    finally:
        taken.close()
