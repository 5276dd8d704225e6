"""The ``served:URL[#MODEL]`` spelling of a reflector behind an inference server (no heavy imports).

``URL`` is the server's OpenAI-compatible root up to ``/v1`` (as for
``openai:`` reflectors); ``MODEL`` is the name to send with each request: the
LoRA module's name on a vLLM server started with ``--lora-modules``, the alias
of a llama.cpp server. Without ``#MODEL`` the server must list exactly one model.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

SERVED_PREFIX = "served:"


def is_served_spec(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(SERVED_PREFIX)


def is_loopback_host(host: str | None) -> bool:
    """True for a host name or address that never leaves this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def host_and_port(url: str) -> str:
    """``host:port`` of an http(s) URL, the port filled in from the scheme when the URL has none."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_identity(url: str) -> str:
    """The server's address as it names a reflector: the whole root, except the port of a loopback host.

    A server on this machine started by ``reflectrl`` takes a fresh port at
    each start and names its model by a hash of the weights, so a restarted one
    is the same reflector; on another host the port is part of who answers.
    """
    parts = urlsplit(url.rstrip("/"))
    if is_loopback_host(parts.hostname):
        return f"{parts.scheme}://{parts.hostname}{parts.path}"
    return f"{parts.scheme}://{host_and_port(url)}{parts.path}"


@dataclass(frozen=True)
class ServedSpec:
    url: str
    """Server root up to /v1."""
    model: str | None
    """Model name sent with each request; None: the server's only model."""

    @classmethod
    def parse(cls, spec: str) -> ServedSpec:
        if not is_served_spec(spec):
            raise ValueError(f"a served reflector is written {SERVED_PREFIX}URL[#MODEL], got {spec!r}")
        url, _, model = spec[len(SERVED_PREFIX):].partition("#")
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"{spec!r}: the URL after {SERVED_PREFIX!r} must start with http:// or https://, "
                f"e.g. {SERVED_PREFIX}http://127.0.0.1:8080/v1#reflector"
            )
        try:
            urlsplit(url).port
        except ValueError as err:
            raise ValueError(f"{spec!r}: {err}") from None
        return cls(url, model.strip() or None)

    def __str__(self) -> str:
        return SERVED_PREFIX + self.url + (f"#{self.model}" if self.model else "")

    def identity(self) -> str:
        """What names the reflector in run settings and cache headers: the model, and the server unless it is on this machine.

        On a loopback host the name is the model alone (as older versions wrote
        it, so their run folders still resume): a managed server gets a new
        port each time it starts, and a run resumed with a restarted server must
        still find its own cached reflections. A server on another host with the
        same model name is another reflector, so its address is part of the
        name. What the server itself reports about the model is checked at run
        time (`ServedReflector.served_identity`).
        """
        if not self.model:
            return str(self)
        if is_loopback_host(urlsplit(self.url).hostname):
            return f"served model {self.model}"
        return f"served model {self.model} at {server_identity(self.url)}"
