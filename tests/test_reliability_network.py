"""Hostile and look-alike servers: one deadline per request, a size cap, where the API key goes, who a server is.

Every server here is a `http.server` thread on 127.0.0.1. A "remote" host is a
made-up name that this process alone resolves to 127.0.0.1, so the key policy
for other machines is exercised without leaving this one.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reflectrl.models.openai_backend import KEY_OPT_IN_ENV, BackendError, OpenAIChatClient
from reflectrl.models.served_spec import ServedSpec
from reflectrl.players.openai_reflector import OpenAIReflector
from reflectrl.players.reflection_cache import CachedReflector, ReflectionCacheMismatch, reflector_identity
from reflectrl.players.served_reflector import ServedReflector

REMOTE_NAME = "reflector-box.invalid"
COMPLETION = json.dumps({"choices": [{"index": 0, "text": " ok.", "message": {"role": "assistant", "content": "ok."}}]}).encode()


class FakeServer(BaseHTTPRequestHandler):
    """Behaviour chosen by the requested model name; `reported` is what GET /v1/models lists."""

    reported: list[dict] = []
    seen_auth: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": self.reported}).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen_auth.append(self.headers.get("Authorization"))
        model = body["model"]
        try:
            if model == "trickle":  # a whole, valid answer, one byte every 0.03 s (about 3 s in all)
                self._head(200, len(COMPLETION))
                for byte in COMPLETION:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.03)
            elif model == "pause":  # headers after 0.8 s, then silence
                time.sleep(0.8)
                self._head(200, len(COMPLETION))
                self.wfile.write(COMPLETION[:5])
                self.wfile.flush()
                time.sleep(4)
                self.wfile.write(COMPLETION[5:])
            elif model == "endless":  # no length given, 64 KiB blocks until 40 MB
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                block = b" " * 65536
                for _ in range(40 * 16):
                    self.wfile.write(block)
            elif model == "declared-huge":
                self._head(200, 10**12)
                self.wfile.write(b" " * 1024)
            else:
                self._send(200, COMPLETION)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should

    def _head(self, status, length):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status, payload):
        self._head(status, len(payload))
        self.wfile.write(payload)


def _start(reported: list[dict]):
    handler = type("Server", (FakeServer,), {"reported": reported, "seen_auth": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, handler


@pytest.fixture
def servers(monkeypatch):
    """Start fake servers with `start(reported)`; they stop after the test. No proxy may step in."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", KEY_OPT_IN_ENV):
        monkeypatch.delenv(name, raising=False)
    started = []

    def start(reported=({"id": "reflector", "object": "model", "owned_by": "llamacpp"},)):
        server, handler = _start(list(reported))
        started.append(server)
        return server.server_address[1], handler

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def remote_name(monkeypatch):
    """REMOTE_NAME resolves to 127.0.0.1 in this process only (a stand-in for another machine)."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return real("127.0.0.1" if host == REMOTE_NAME else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return REMOTE_NAME


# ------------------------------------------------------------------ row 1: one deadline, a size cap
def test_a_trickling_answer_is_cut_at_one_overall_deadline(servers):
    port, _ = servers()
    url = f"http://127.0.0.1:{port}/v1"
    with OpenAIChatClient(url, "trickle", timeout=1, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(BackendError, match=rf"{url}/chat/completions.*no answer within 1 s"):
            client.complete(["x"])
        assert time.monotonic() - started < 2.5


def test_a_pause_after_the_headers_does_not_extend_the_deadline(servers):
    port, _ = servers()
    with OpenAIChatClient(f"http://127.0.0.1:{port}/v1", "pause", timeout=1, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(BackendError, match="no answer within 1 s"):
            client.complete(["x"])
        # A per-read timeout would wait 1 s more after the headers came at 0.8 s.
        assert time.monotonic() - started < 1.5


def test_an_answer_past_the_size_cap_is_refused_without_reading_it_all(servers):
    port, _ = servers()
    url = f"http://127.0.0.1:{port}/v1"
    with OpenAIChatClient(url, "endless", max_response_bytes=1 << 20, max_retries=2, backoff=0.01) as client:
        with pytest.raises(BackendError, match=rf"{url}/chat/completions answered more than 1048576 bytes"):
            client.complete(["x"])
    with OpenAIChatClient(url, "declared-huge", max_response_bytes=1 << 20) as client:
        with pytest.raises(BackendError, match="more than 1048576 bytes"):
            client.complete(["x"])


# ------------------------------------------------------------------ row 2: where the key goes
def test_the_api_key_never_goes_over_plain_http_to_another_host_unless_opted_in(servers, remote_name, monkeypatch, caplog):
    port, handler = servers()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    remote = ServedReflector(f"served:http://{remote_name}:{port}/v1#reflector", max_retries=0)
    with caplog.at_level(logging.WARNING):
        assert remote.reflect(["a"]) == ["ok."]
        assert remote.reflect(["b"]) == ["ok."]
    remote.close()
    assert handler.seen_auth == [None, None]
    warnings = [r.getMessage() for r in caplog.records if "OPENAI_API_KEY" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "sk-secret" not in warnings[0]
    assert f"{KEY_OPT_IN_ENV}={remote_name}:{port}" in warnings[0]

    monkeypatch.setenv(KEY_OPT_IN_ENV, f"{remote_name}:{port}")
    opted_in = ServedReflector(f"served:http://{remote_name}:{port}/v1#reflector", max_retries=0)
    opted_in.reflect(["c"])
    opted_in.close()
    local = ServedReflector(f"served:http://127.0.0.1:{port}/v1#reflector", max_retries=0)
    local.reflect(["d"])
    local.close()
    with OpenAIChatClient(f"http://{remote_name}:{port}/v1", "reflector", api_key="given-here") as client:
        client.complete_text(["e"])
    assert handler.seen_auth[2:] == ["Bearer sk-secret", "Bearer sk-secret", "Bearer given-here"]


# ------------------------------------------------------------------ row 17: who a server is
def test_a_served_reflector_elsewhere_with_the_same_alias_is_another_reflector():
    one = ServedSpec.parse("served:http://10.0.0.5:8000/v1#reflector")
    other = ServedSpec.parse("served:http://10.0.0.6:8000/v1#reflector")
    assert one.identity() != other.identity()
    assert reflector_identity(str(one), 24) != reflector_identity(str(other), 24)
    # This machine's managed servers take a fresh port at each start: still the same reflector.
    assert ServedSpec.parse("served:http://127.0.0.1:8080/v1#r").identity() == ServedSpec.parse("served:http://127.0.0.1:9/v1#r").identity()


def test_two_servers_with_one_alias_do_not_share_a_reflection_cache(servers, tmp_path):
    port_a, _ = servers([{"id": "reflector", "owned_by": "llamacpp", "meta": {"n_params": 134515008}}])
    port_b, _ = servers([{"id": "reflector", "owned_by": "llamacpp", "meta": {"n_params": 361821120}}])
    path = tmp_path / "cache.jsonl"
    spec_a, spec_b = f"served:http://127.0.0.1:{port_a}/v1#reflector", f"served:http://127.0.0.1:{port_b}/v1#reflector"
    first = ServedReflector(spec_a, reflection_tokens=8)
    CachedReflector(first, path, reflector_identity(spec_a, 8)).reflect(["a"])
    first.close()
    again = ServedReflector(f"served:http://127.0.0.1:{port_a}/v1#reflector", reflection_tokens=8)
    assert CachedReflector(again, path, reflector_identity(spec_a, 8)).reflect(["a"]) == ["ok."]
    again.close()
    second = ServedReflector(spec_b, reflection_tokens=8)
    with pytest.raises(ReflectionCacheMismatch, match="another reflector"):
        CachedReflector(second, path, reflector_identity(spec_b, 8))
    second.close()


def test_an_openai_reflector_with_other_sampling_settings_does_not_share_a_cache(servers, tmp_path):
    port, _ = servers()
    path = tmp_path / "cache.jsonl"
    identity = reflector_identity("openai:reflector", 64)
    with OpenAIChatClient(f"http://127.0.0.1:{port}/v1", "reflector") as client:
        CachedReflector(OpenAIReflector(client), path, identity).reflect(["a"])
        with pytest.raises(ReflectionCacheMismatch, match="another reflector"):
            CachedReflector(OpenAIReflector(client, system="Answer in French."), path, identity)
