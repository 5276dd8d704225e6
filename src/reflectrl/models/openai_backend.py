"""A client for any OpenAI-compatible server (chat and raw completions), and a chat reflector built on it.

Works with vLLM (``vllm serve MODEL`` then ``base_url="http://HOST:8000/v1"``),
llama.cpp (``llama-server -m model.gguf --port 8080``, ``base_url="http://HOST:8080/v1"``),
Ollama (``base_url="http://HOST:11434/v1"``) and hosted APIs. `base_url` is
the part before ``/chat/completions``, as in the OpenAI SDK. The API key is
read from the environment variable named by `api_key_env` at each request; when
that variable is unset no Authorization header is sent (local servers need
none).

Robustness: every request has a timeout; connection failures, timeouts, HTTP
408/409/429 and 5xx answers are retried with exponential backoff (honouring
``Retry-After``); other HTTP errors fail at once with the server's message;
an answer that is not a completion raises `BackendError` quoting what came
back. At most `concurrency` requests are in flight at a time.

`complete` sends chat messages (the server applies its chat template);
`complete_text` sends a raw prompt to ``/completions``, which is what a model
fine-tuned on raw prompts (a reflector from `reflectrl sft`) must be given.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx

from reflectrl.models.reflector import Reflector
from reflectrl.protocol import clean_reflection

if TYPE_CHECKING:
    from typing_extensions import Self

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0

DEFAULT_REFLECTOR_SYSTEM = (
    "You help an agent that acts in a text environment. Read the state and write a short reflection "
    "(at most three sentences): what did the last action do, was it a good move, and what should be done next. "
    "Do not list the actions again and do not answer with an action label."
)


class BackendError(RuntimeError):
    """The server could not be reached or answered something unusable."""


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
    ):
        """
        Args:
            base_url: server root up to ``/v1`` (``/chat/completions`` or ``/completions`` is appended).
            model: model name sent with every request.
            api_key_env: environment variable holding the API key (unset: no key sent).
            timeout: seconds allowed for each HTTP request.
            max_retries: retries after the first attempt for transient failures.
            concurrency: most requests in flight at once.
            backoff: first retry delay in seconds, doubled on each further retry.
        """
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must be a non-empty string")
        if timeout <= 0 or concurrency < 1 or max_retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, concurrency >= 1, max_retries >= 0 and backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.text_url = self.base_url + "/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.backoff = float(backoff)
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout), limits=httpx.Limits(max_connections=self.concurrency))
        self._lock = threading.Lock()
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
        url = self.base_url + "/models"
        try:
            response = self._http.get(url, headers=self._headers())
        except httpx.TransportError as err:
            raise BackendError(f"{url} cannot be reached ({type(err).__name__}: {err}); is the server running?") from None
        if response.status_code != 200:
            raise BackendError(f"{url} answered HTTP {response.status_code}: {_error_detail(response)}")
        answer = self._parse(response, url)
        data = answer.get("data")
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            raise BackendError(f"{url} answered something that is not a model list: {_quote(json.dumps(answer))}")
        return [m["id"] for m in data]

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
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, url: str, body: dict) -> dict:
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * (2**attempt)
            try:
                response = self._http.post(url, json=body, headers=self._headers())
            except httpx.TimeoutException as err:
                last_problem = f"no answer within {self.timeout:g} s ({type(err).__name__})"
            except httpx.TransportError as err:
                last_problem = f"{type(err).__name__}: {err}"
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

    def _parse(self, response: httpx.Response, url: str) -> dict:
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
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


class OpenAIReflector(Reflector):
    """A `Reflector` that asks an OpenAI-compatible server for each reflection."""

    def __init__(
        self,
        client: OpenAIChatClient,
        *,
        system: str | None = DEFAULT_REFLECTOR_SYSTEM,
        max_tokens: int = 64,
        temperature: float = 0.0,
    ):
        self.client = client
        self.system = system
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)

    def reflect(self, prompts: Sequence[str]) -> list[str]:
        """One cleaned reflection per reflector prompt."""
        answers = self.client.complete(prompts, system=self.system, max_tokens=self.max_tokens, temperature=self.temperature)
        return [clean_reflection(text) for text in answers]


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return _quote(response.text)
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and data["error"].get("message"):
        return str(data["error"]["message"])[:300]
    return _quote(json.dumps(data))


def _quote(text: str, limit: int = 200) -> str:
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text)
