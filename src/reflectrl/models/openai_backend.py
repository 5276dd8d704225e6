"""A client for any OpenAI-compatible server (chat and raw completions).

Works with vLLM (``vllm serve MODEL`` then ``base_url="http://HOST:8000/v1"``),
llama.cpp (``llama-server -m model.gguf --port 8080``, ``base_url="http://HOST:8080/v1"``),
Ollama (``base_url="http://HOST:11434/v1"``) and hosted APIs. `base_url` is
the part before ``/chat/completions``, as in the OpenAI SDK.

The API key: one given to the client (`api_key`) is sent as it is. One read
from the environment (the variable named by `api_key_env`, at each request) is
sent only where it cannot be read on the way: an ``https://`` URL or a server
on this machine (loopback). To a plain ``http://`` URL on another host it is
withheld, with one warning saying so, unless that host is listed in
``$REFLECTRL_SEND_KEY_TO`` (``host:port``, comma-separated): a ``served:`` URL
typed for a lab machine must not carry the user's OpenAI key in clear text.
When no key is found no Authorization header is sent (local servers need none).

Robustness: each request attempt must be over, answer read, within `timeout`
seconds of its start (httpx's own timeouts bound each wait on the socket, so a
server sending a byte at a time would never trip them); an answer longer than
`max_response_bytes` is refused after that many bytes, unread beyond them.
Connection failures, timeouts, HTTP 408/409/429 and 5xx answers are retried
with exponential backoff (honouring ``Retry-After``); other HTTP errors and an
oversized answer fail at once; an answer that is not a completion raises
`BackendError` quoting what came back. Every error names the URL. At most
`concurrency` requests are in flight at a time.

`complete` sends chat messages (the server applies its chat template);
`complete_text` sends a raw prompt to ``/completions``, which is what a model
fine-tuned on raw prompts (a reflector from `reflectrl sft`) must be given.
The reflectors that ask through this client are `reflectrl.players.openai_reflector`
(chat) and `reflectrl.players.served_reflector` (raw completions).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from reflectrl.models.served_spec import host_and_port, is_loopback_host, server_identity

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
MAX_RESPONSE_BYTES = 32 << 20
"""Default cap on one answer: a completion or a model list takes kilobytes, so past this the server is broken or hostile."""
KEY_OPT_IN_ENV = "REFLECTRL_SEND_KEY_TO"
"""Comma-separated ``host:port`` (or URLs) to which a key from the environment may go over plain http."""
REPORTED_FIELDS = ("id", "owned_by", "root", "parent", "max_model_len", "meta")
"""What a server's model list says about a model that stays the same while the same weights are served
(vLLM: root and parent weights, context length; llama.cpp: ``meta`` with the parameter count and file size)."""

class BackendError(RuntimeError):
    """The server could not be reached or answered something unusable."""


class _Unanswered(Exception):
    """An attempt that got no whole answer (worth retrying); the message says why."""


@dataclass(frozen=True)
class _Answer:
    """A whole HTTP answer, read within the deadline and the size cap."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def key_may_go_to(url: str) -> bool:
    """Whether a key from the environment may be sent to `url` (see the module docstring)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or is_loopback_host(parts.hostname):
        return True
    target = host_and_port(url)
    for entry in os.environ.get(KEY_OPT_IN_ENV, "").split(","):
        entry = entry.strip()
        try:
            if entry and host_and_port(entry if "://" in entry else f"http://{entry}") == target:
                return True
        except ValueError:
            continue  # a malformed entry opts nothing in
    return False


class OpenAIChatClient:
    """Chat and raw completions over HTTP with timeouts, retries, backoff and a concurrency limit."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60,
        max_retries: int = 3,
        concurrency: int = 4,
        backoff: float = 0.5,
        api_key: str | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        """
        Args:
            base_url: server root up to ``/v1`` (``/chat/completions`` or ``/completions`` is appended).
            model: model name sent with every request.
            api_key_env: environment variable holding the API key (unset: no key sent; plain http to
                another host: not sent, see the module docstring).
            timeout: seconds allowed for each HTTP request, from sending it to the last byte of the answer.
            max_retries: retries after the first attempt for transient failures.
            concurrency: most requests in flight at once.
            backoff: first retry delay in seconds, doubled on each further retry.
            api_key: a key given here is sent to `base_url` whatever its scheme (it overrides `api_key_env`).
            max_response_bytes: longest answer read; a longer one fails the request.
        """
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must be a non-empty string")
        if timeout <= 0 or concurrency < 1 or max_retries < 0 or backoff < 0 or max_response_bytes < 1:
            raise ValueError("timeout must be > 0, concurrency >= 1, max_retries >= 0, backoff >= 0 and max_response_bytes >= 1")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.text_url = self.base_url + "/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.backoff = float(backoff)
        self.api_key = api_key
        self.max_response_bytes = int(max_response_bytes)
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout), limits=httpx.Limits(max_connections=self.concurrency))
        self._lock = threading.Lock()
        self._key_withheld = False
        self._entries: list[dict] | None = None
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
        """Token usage summed over all answers that reported it."""

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def complete(
        self,
        prompts: Sequence[str],
        *,
        system: str | None = None,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> list[str]:
        """One completion per prompt (sent as the user message), in order."""
        return self._each(prompts, lambda p: self._complete_one(p, system, max_tokens, temperature))

    def complete_text(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        extra: dict | None = None,
    ) -> list[str]:
        """One raw continuation per prompt from ``/completions`` (no chat template), in order.

        `stop` ends a continuation before the first of these strings; `extra`
        adds server-specific fields to every request body.
        """
        body = {"model": self.model, "max_tokens": int(max_tokens), "temperature": float(temperature), **(extra or {})}
        if stop:
            body["stop"] = list(stop)
        return self._each(prompts, lambda p: self._text(self._post(self.text_url, {**body, "prompt": p})))

    def model_names(self) -> list[str]:
        """The model names the server lists at ``/models``."""
        return [m["id"] for m in self.model_entries()]

    def model_entries(self) -> list[dict]:
        """What the server lists at ``/models``, one dict per model (asked once per client)."""
        if self._entries is not None:
            return self._entries
        url = self.base_url + "/models"
        try:
            response = self._send("GET", url, None)
        except _Unanswered as err:
            raise BackendError(f"{url} cannot be reached ({err}); is the server running?") from None
        if response.status_code != 200:
            raise BackendError(f"{url} answered HTTP {response.status_code}: {_error_detail(response)}")
        answer = self._parse(response, url)
        data = answer.get("data")
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            raise BackendError(f"{url} answered something that is not a model list: {_quote(json.dumps(answer))}")
        self._entries = data
        return data

    def served_identity(self, **sampling: Any) -> dict[str, Any]:
        """Who answers, for a reflection cache's header: the server, the model as asked and as the server lists it,
        and the caller's `sampling` settings.

        A server that lists one model answers with it whatever name is asked
        (llama.cpp), so that model is the one described. Paths the server
        reports count by their last part, so a moved run folder served again
        is the same reflector.
        """
        entries = self.model_entries()
        mine = [m for m in entries if m["id"] == self.model] or (entries if len(entries) == 1 else [])
        reported = None
        if mine:
            reported = {k: mine[0][k] for k in REPORTED_FIELDS if k in mine[0]}
            for k in ("root", "parent"):
                if isinstance(reported.get(k), str) and reported[k].startswith("/"):
                    reported[k] = PurePosixPath(reported[k]).name
        return {"server": server_identity(self.base_url), "model": self.model, "reported": reported, **sampling}

    def _each(self, prompts: Sequence[str], ask) -> list[str]:
        if isinstance(prompts, str):
            raise TypeError("completions take a sequence of prompts, not a single string")
        prompts = list(prompts)
        if not prompts:
            return []
        if len(prompts) == 1 or self.concurrency == 1:
            return [ask(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            futures = [pool.submit(ask, p) for p in prompts]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _complete_one(self, prompt: str, system: str | None, max_tokens: int, temperature: float) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        body = {"model": self.model, "messages": messages, "max_tokens": int(max_tokens), "temperature": float(temperature)}
        answer = self._post(self.url, body)
        return self._content(answer)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _key(self) -> str:
        if self.api_key is not None:
            return self.api_key.strip()
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if not key or key_may_go_to(self.base_url):
            return key
        with self._lock:
            said, self._key_withheld = self._key_withheld, True
        if not said:
            log.warning(
                "not sending $%s to %s: over plain http to another machine anyone on the way could read it; "
                "use https, or set %s=%s to send it there anyway",
                self.api_key_env, self.base_url, KEY_OPT_IN_ENV, host_and_port(self.base_url),
            )
        return ""

    def _send(self, method: str, url: str, body: dict | None) -> _Answer:
        """One attempt, over within `timeout` seconds; `_Unanswered` when no whole answer came in that time."""
        finished = threading.Event()
        abandoned = threading.Event()
        outcome: list = []

        def exchange() -> None:
            try:
                outcome.append(self._exchange(method, url, body, abandoned))
            except BaseException as err:  # handed to the waiting thread, which raises it
                outcome.append(err)
            finally:
                finished.set()

        # httpx cannot bound a whole exchange, only each wait on the socket: the
        # exchange runs in a thread and the caller stops waiting at the deadline.
        threading.Thread(target=exchange, name="reflectrl-http", daemon=True).start()
        if not finished.wait(self.timeout):
            abandoned.set()
            raise _Unanswered(f"no answer within {self.timeout:g} s")
        if isinstance(outcome[0], httpx.TimeoutException):
            raise _Unanswered(f"no answer within {self.timeout:g} s ({type(outcome[0]).__name__})")
        if isinstance(outcome[0], httpx.TransportError):
            raise _Unanswered(f"{type(outcome[0]).__name__}: {outcome[0]}")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _exchange(self, method: str, url: str, body: dict | None, abandoned: threading.Event) -> _Answer | None:
        with self._http.stream(method, url, json=body, headers=self._headers()) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes:
                raise self._too_long(url)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                if abandoned.is_set():
                    return None  # past the deadline nobody reads this; closing frees the connection
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise self._too_long(url)
                chunks.append(chunk)
            return _Answer(response.status_code, response.headers, b"".join(chunks))

    def _too_long(self, url: str) -> BackendError:
        return BackendError(
            f"{url} answered more than {self.max_response_bytes} bytes; stopped reading (max_response_bytes): "
            "is this the inference server?"
        )

    def _post(self, url: str, body: dict) -> dict:
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * (2**attempt)
            try:
                response = self._send("POST", url, body)
            except _Unanswered as err:
                last_problem = str(err)
            else:
                if response.status_code == 200:
                    return self._parse(response, url)
                detail = _error_detail(response)
                if response.status_code not in RETRY_STATUS:
                    hint = " (does base_url end with /v1?)" if response.status_code == 404 else ""
                    raise BackendError(f"{url} answered HTTP {response.status_code}{hint}: {detail}")
                last_problem = f"HTTP {response.status_code}: {detail}"
                wait = max(wait, _retry_after(response))
            if attempt < self.max_retries:
                time.sleep(min(wait, MAX_BACKOFF_S))
        raise BackendError(
            f"request to {url} failed after {self.max_retries + 1} attempts: {last_problem}. "
            "Is the server running and reachable?"
        )

    def _parse(self, response: _Answer, url: str) -> dict:
        try:
            answer = response.json()
        except (ValueError, RecursionError):
            raise BackendError(f"{url} answered with something that is not JSON: {_quote(response.text)}") from None
        if not isinstance(answer, dict):
            raise BackendError(f"{url} answered JSON that is not an object: {_quote(response.text)}")
        usage = answer.get("usage")
        if isinstance(usage, dict):
            with self._lock:
                self.usage["requests"] += 1
                for key in ("prompt_tokens", "completion_tokens"):
                    if isinstance(usage.get(key), int):
                        self.usage[key] += usage[key]
        return answer

    def _first_choice(self, answer: dict, url: str) -> dict:
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise BackendError(f"{url} answered without choices: {_quote(json.dumps(answer))}")
        return choices[0]

    def _text(self, answer: dict) -> str:
        text = self._first_choice(answer, self.text_url).get("text")
        if not isinstance(text, str):
            raise BackendError(f"{self.text_url} answered a choice without text: {_quote(json.dumps(answer))}")
        return text

    def _content(self, answer: dict) -> str:
        message = self._first_choice(answer, self.url).get("message")
        if not isinstance(message, dict):
            raise BackendError(f"{self.url} answered a choice without a message: {_quote(json.dumps(answer))}")
        content = message.get("content")
        if content is None:
            return ""  # e.g. the token limit was spent on hidden reasoning
        if not isinstance(content, str):
            raise BackendError(f"{self.url} answered a message whose content is not text: {_quote(json.dumps(answer))}")
        return content


def _retry_after(response: _Answer) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


def _error_detail(response: _Answer) -> str:
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return _quote(response.text)
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and data["error"].get("message"):
        return str(data["error"]["message"])[:300]
    return _quote(json.dumps(data))


def _quote(text: str, limit: int = 200) -> str:
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text)
