"""`make-tasks --llm`: question rewriting through a real HTTP client against a loopback server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.envs.autoexplore.rewrite import clean_rewrite
from reflectrl.envs.autoexplore.taskset import load_tasks

pytest.importorskip("reflectrl.models.openai_backend")

FILES = {
    "README.md": "# Shop\n\nTools of a small shop in Graz run by two people.\n",
    "shop/billing/vat.py": '"""Value added tax helpers for the till."""\n\n\ndef vat_of(amount):\n    """Return the value added tax owed on a gross amount."""\n    return amount * 0.2\n',
    "data/prices.csv": "product,price_eur\nrye loaf,3.20\nalmond croissant,2.10\n",
}


class ChatServer:
    """A loopback chat-completions endpoint that answers from the prompt's evidence line."""

    def __init__(self, status=200, reply=None):
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                prompt = body["messages"][-1]["content"]
                evidence = prompt.split("What the file says: ", 1)[1].split("\n", 1)[0]
                content = reply if reply is not None else f"Which file tells me about {evidence.rstrip('.')}?"
                payload = {"choices": [{"message": {"role": "assistant", "content": content}}]} if status == 200 else {"error": {"message": "bad model"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def run(repo, out, url, cache):
    return CliRunner().invoke(
        app,
        ["autoexplore", "make-tasks", str(repo), "--out", str(out), "--llm", "openai:tiny-model", "--base-url", url, "--per-file", "3"],
        env={"REFLECTRL_CACHE": str(cache)},
    )


def test_llm_rewrites_questions_and_caches_them(repo, tmp_path):
    cache = tmp_path / "cache"
    with ChatServer() as server:
        first = run(repo, tmp_path / "a.jsonl", server.url, cache)
        assert first.exit_code == 0, first.output
        tasks = load_tasks(tmp_path / "a.jsonl")
        assert tasks and len(server.requests) == len(tasks)
        assert all(path == "/v1/chat/completions" for path, _ in server.requests)
        assert all(body["model"] == "tiny-model" and body["temperature"] == 0.0 for _, body in server.requests)
        for task in tasks:
            assert task.question.startswith("Which file tells me about ")
            assert task.extra["template_question"] != task.question
        sent = json.dumps([body for _, body in server.requests])
        assert not any(t.targets[0] in sent for t in tasks)  # the model never sees where the answer is
        second = run(repo, tmp_path / "b.jsonl", server.url, cache)
        assert second.exit_code == 0 and len(server.requests) == len(tasks)  # all from the cache
        assert load_tasks(tmp_path / "b.jsonl") == tasks
        assert "0 model calls" in second.output


def test_unusable_rewrites_keep_the_template_question(repo, tmp_path):
    with ChatServer(reply="Sure! Here is a nicer question for you") as server:
        result = run(repo, tmp_path / "a.jsonl", server.url, tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert all("template_question" not in t.extra for t in load_tasks(tmp_path / "a.jsonl"))
    assert clean_rewrite('"Where is the VAT computed?"\nextra') == "Where is the VAT computed?"
    assert clean_rewrite("") is None and clean_rewrite("x" * 400 + "?") is None


def test_server_errors_give_a_clear_message(repo, tmp_path):
    with ChatServer(status=400) as server:
        result = run(repo, tmp_path / "a.jsonl", server.url, tmp_path / "cache")
    assert result.exit_code == 2 and "question rewriting failed" in result.output and "bad model" in result.output
    assert "Traceback" not in result.output
    no_url = CliRunner().invoke(app, ["autoexplore", "make-tasks", str(repo), "--out", str(tmp_path / "b.jsonl"), "--llm", "openai:m"])
    assert no_url.exit_code == 2 and "--base-url" in no_url.output
