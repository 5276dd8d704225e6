"""The OpenAI-compatible backend against a real HTTP server process on loopback.

Running this file as a script starts that server: a small chat-completions
endpoint (python's http.server) whose behaviour is chosen by the requested
model name, so each test can ask for a well-behaved, flaky, slow or broken
server.
"""

import json
import math
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from reflectrl.envs import make_env
from reflectrl.evaluation.prompted_agent import PromptedAgent
from reflectrl.models import BackendError, OpenAIChatClient
from reflectrl.players import OpenAIReflector
from reflectrl.protocol import State


# ----------------------------------------------------------------- the server
class ChatServer(BaseHTTPRequestHandler):
    """Request handler; the counters are class-level because http.server builds one handler per request."""

    lock = threading.Lock()
    failures: ClassVar[dict[str, int]] = {}
    in_flight: ClassVar[dict[str, int]] = {}
    max_in_flight: ClassVar[dict[str, int]] = {}
    requests: ClassVar[dict[str, int]] = {}
    last_raw: ClassVar[dict] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/last-raw":
            self._json(200, ChatServer.last_raw)
        elif self.path.startswith("/stats/"):
            model = self.path.removeprefix("/stats/")
            self._json(200, {"max_in_flight": ChatServer.max_in_flight.get(model, 0), "requests": ChatServer.requests.get(model, 0)})
        else:
            self._json(404, {"error": {"message": "no such page"}})

    def do_POST(self):
        if self.path == "/v1/completions":
            return self._raw_completion(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"unknown path {self.path}"}})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body["model"]
        with ChatServer.lock:
            ChatServer.requests[model] = ChatServer.requests.get(model, 0) + 1
            ChatServer.in_flight[model] = ChatServer.in_flight.get(model, 0) + 1
            ChatServer.max_in_flight[model] = max(ChatServer.max_in_flight.get(model, 0), ChatServer.in_flight[model])
        try:
            self._answer(body)
        finally:
            with ChatServer.lock:
                ChatServer.in_flight[model] -= 1

    def _answer(self, body):
        model = body["model"]
        prompt = body["messages"][-1]["content"]
        if model == "echo":
            system = body["messages"][0]["content"] if len(body["messages"]) > 1 else None
            reply = json.dumps({"prompt": prompt, "system": system, "auth": self.headers.get("Authorization"),
                                "max_tokens": body["max_tokens"], "temperature": body["temperature"]})
            return self._completion(reply)
        if model == "slow-echo":
            time.sleep(0.15)
            return self._completion(prompt)
        if model == "flaky":  # every prompt fails twice with 503, then succeeds
            with ChatServer.lock:
                count = ChatServer.failures[prompt] = ChatServer.failures.get(prompt, 0) + 1
            if count <= 2:
                return self._json(503, {"error": {"message": "overloaded"}})
            return self._completion(f"ok after {count - 1} failures")
        if model == "rate-limited":
            with ChatServer.lock:
                count = ChatServer.failures[prompt] = ChatServer.failures.get(prompt, 0) + 1
            if count == 1:
                return self._json(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
            return self._completion("ok")
        if model == "hang":
            time.sleep(3)
            return self._completion("too late")
        if model == "html":
            return self._raw(200, b"<html>gateway error</html>", "text/html")
        if model == "no-choices":
            return self._json(200, {"object": "chat.completion", "choices": []})
        if model == "bad-request":
            return self._json(400, {"error": {"message": "max_tokens is too large"}})
        if model == "reflector":
            return self._completion("  The taxi moved north,\n good move.\nActions:\n0. move south")
        if model.startswith("answer:"):
            return self._completion(model.split(":", 1)[1])
        return self._json(404, {"error": {"message": f"model {model} not found"}})

    def _raw_completion(self, body):
        """Raw completions: "raw-echo" answers the request body as its text (then a stop string and more), "no-text" a
        choice without text, "raw-record" keeps the body for GET /last-raw and answers a reflection and the action list."""
        if body["model"] == "raw-record":
            ChatServer.last_raw = body
            text = "  The taxi moved north,\n good move.\nActions:\n0. move south"
            return self._json(200, {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})
        if body["model"] == "no-text":
            return self._json(200, {"object": "text_completion", "choices": [{"index": 0, "finish_reason": "stop"}]})
        text = " " + json.dumps(body, sort_keys=True) + "\nActions:\n0. move south"
        self._json(200, {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}})

    def _completion(self, content):
        self._json(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        })

    def _json(self, status, data, headers=None):
        self._raw(status, json.dumps(data).encode(), "application/json", headers)

    def _raw(self, status, payload, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)


def serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def server_url():
    process = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def stats(server_url, model):
    import httpx

    return httpx.get(server_url.removesuffix("/v1") + f"/stats/{model}").json()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------- tests
def test_completions_in_order_with_system_prompt_and_api_key(server_url, monkeypatch):
    monkeypatch.setenv("TEST_CHAT_KEY", "s3cret")
    with OpenAIChatClient(server_url, "echo", api_key_env="TEST_CHAT_KEY") as client:
        answers = client.complete(["first", "second", "third"], system="be brief", max_tokens=7, temperature=0.5)
        decoded = [json.loads(a) for a in answers]
        assert [d["prompt"] for d in decoded] == ["first", "second", "third"]
        assert all(d["system"] == "be brief" and d["auth"] == "Bearer s3cret" for d in decoded)
        assert decoded[0]["max_tokens"] == 7 and decoded[0]["temperature"] == 0.5
        assert client.usage["completion_tokens"] == 6
    monkeypatch.delenv("TEST_CHAT_KEY")
    with OpenAIChatClient(server_url, "echo", api_key_env="TEST_CHAT_KEY") as client:
        assert json.loads(client.complete(["x"])[0])["auth"] is None
        assert client.complete([]) == []
        with pytest.raises(TypeError):
            client.complete("a single string")


def test_concurrency_limit(server_url):
    with OpenAIChatClient(server_url, "slow-echo", concurrency=2) as client:
        prompts = [f"p{i}" for i in range(6)]
        started = time.perf_counter()
        assert client.complete(prompts) == prompts
        elapsed = time.perf_counter() - started
    after = stats(server_url, "slow-echo")
    assert after["requests"] == 6
    assert after["max_in_flight"] == 2  # parallel, but never more than the limit
    assert elapsed < 6 * 0.15


def test_transient_failures_are_retried(server_url):
    with OpenAIChatClient(server_url, "flaky", max_retries=3, backoff=0.01) as client:
        assert client.complete(["a", "b"]) == ["ok after 2 failures"] * 2
    with OpenAIChatClient(server_url, "flaky", max_retries=1, backoff=0.01) as client, pytest.raises(BackendError, match="after 2 attempts: HTTP 503: overloaded"):
        client.complete(["c"])
    with OpenAIChatClient(server_url, "rate-limited", max_retries=1, backoff=0.01) as client:
        assert client.complete(["d"]) == ["ok"]


def test_timeouts(server_url):
    with OpenAIChatClient(server_url, "hang", timeout=0.3, max_retries=1, backoff=0.01) as client:
        started = time.perf_counter()
        with pytest.raises(BackendError, match="no answer within 0.3 s"):
            client.complete(["x"])
        assert time.perf_counter() - started < 2.5


def test_garbage_answers_are_clear_errors(server_url):
    with OpenAIChatClient(server_url, "html") as client, pytest.raises(BackendError, match="not JSON: '<html>gateway error</html>'"):
        client.complete(["x"])
    with OpenAIChatClient(server_url, "no-choices") as client, pytest.raises(BackendError, match="without choices"):
        client.complete(["x"])
    with OpenAIChatClient(server_url, "bad-request", max_retries=3, backoff=5) as client:
        started = time.perf_counter()
        with pytest.raises(BackendError, match="HTTP 400: max_tokens is too large"):
            client.complete(["x"])
        assert time.perf_counter() - started < 1  # client errors are not retried
    with OpenAIChatClient(server_url.removesuffix("/v1"), "echo") as client, pytest.raises(BackendError, match="HTTP 404 .*end with /v1"):
        client.complete(["x"])


def test_unreachable_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with OpenAIChatClient(url, "echo", max_retries=2, backoff=0.01, timeout=2) as client, pytest.raises(BackendError, match="failed after 3 attempts: ConnectError.*Is the server running"):
        client.complete(["x"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="http"):
        OpenAIChatClient("localhost:8000", "m")
    with pytest.raises(ValueError):
        OpenAIChatClient("http://localhost:8000/v1", "m", concurrency=0)


def test_reflector_and_prompted_agent_over_http(server_url):
    with OpenAIChatClient(server_url, "reflector") as client:
        assert OpenAIReflector(client).reflect(["Task: t\nReflection:"] * 2) == ["The taxi moved north, good move."] * 2
    env = make_env("taxi")
    states = [State.from_info(env.reset(seed=s)[1]) for s in range(2)]
    with OpenAIChatClient(server_url, "answer:3. move west") as client:
        actions, records = PromptedAgent(client).act(states, greedy=True)
        assert actions == [3, 3] and records[0].answer == "3. move west"
        assert records[0].prompt_ids == [] and math.isnan(records[0].log_prob)
    with OpenAIChatClient(server_url, "answer:I am not sure") as client:
        actions, _ = PromptedAgent(client).act(states)
        assert actions == [None, None]  # an unparseable answer is an invalid action
        with pytest.raises(ValueError, match="local model"):
            PromptedAgent(client, constrained=True)


if __name__ == "__main__":
    serve()


def test_raw_completions_send_the_prompt_as_it_is(server_url):
    with OpenAIChatClient(server_url, "raw-echo", concurrency=3) as client:
        answers = client.complete_text(["Task: a\nReflection:", "b"], max_tokens=9, stop=["\nActions:"], extra={"repeat_penalty": 1.0})
        bodies = [json.loads(a.split("\n")[0]) for a in answers]
        assert [b["prompt"] for b in bodies] == ["Task: a\nReflection:", "b"]  # no chat template, no messages
        assert bodies[0] == {"model": "raw-echo", "prompt": "Task: a\nReflection:", "max_tokens": 9, "temperature": 0.0,
                             "stop": ["\nActions:"], "repeat_penalty": 1.0}
        assert client.usage["completion_tokens"] == 8
    with OpenAIChatClient(server_url, "no-text") as client, pytest.raises(BackendError, match="choice without text"):
        client.complete_text(["x"])


def test_served_reflector_is_greedy_with_the_stop_strings_and_cleans_like_the_local_one(server_url):
    from reflectrl.players.reflector import STOP_STRINGS
    from reflectrl.players.served_reflector import ServedReflector

    import httpx

    reflector = ServedReflector(f"served:{server_url}#raw-record", reflection_tokens=12)
    try:
        assert reflector.reflect(["Task: go.\nReflection:"]) == ["The taxi moved north, good move."]
    finally:
        reflector.close()
    body = httpx.get(server_url.removesuffix("/v1") + "/last-raw").json()
    assert body["prompt"] == "Task: go.\nReflection:" and body["model"] == "raw-record"
    assert body["temperature"] == 0.0 and body["max_tokens"] == 12 and body["stop"] == list(STOP_STRINGS)
    assert body["repeat_penalty"] == 1.0  # llama.cpp's default penalty would not be greedy
