"""`ManagedServer` and `ServedReflector` failures with plain Python child processes (no inference engine needed)."""

from __future__ import annotations

import sys

import pytest

from reflectrl.models.openai_backend import BackendError
from reflectrl.models.served_reflector import ServedReflector
from reflectrl.models.served_spec import ServedSpec
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
        server.process.kill()
        server.process.wait()
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
