"""`ManagedServer`: an inference server as a child process that never outlives reflectrl.

Lifecycle:

* a free loopback port is chosen (the OS picks one, which is then released and
  handed to the server; `port` can be fixed instead);
* stdout and stderr go to `log_path` (in the run folder), so a failure can be
  read after the fact;
* `start` waits until ``GET /v1/models`` answers; a server that exits first,
  or does not answer within `startup_timeout`, raises `ServerError` naming the
  engine, the exit status and the log, with the log's last line;
* `stop` (also on leaving the ``with`` block, on interpreter exit and after
  Ctrl-C) sends SIGTERM to the server's process group, then SIGKILL if it
  lingers; the child also asks the kernel for SIGTERM when its parent dies
  (Linux ``PR_SET_PDEATHSIG``), which covers a parent killed with SIGKILL.

Servers started by this process are registered by URL (`started_here`), so a
failing request can say which server died and where its log is.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0

_running: dict[str, ManagedServer] = {}
_lock = threading.Lock()


class ServerError(RuntimeError):
    """A managed server did not come up (one line: engine, state, log)."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def started_here(url: str) -> ManagedServer | None:
    """The running server this process started at `url` (the /v1 root), if any."""
    with _lock:
        return _running.get(url.rstrip("/"))


class ManagedServer:
    """One server process (see the module docstring); use as a context manager or call `start` and `stop`."""

    def __init__(
        self,
        engine: str,
        command: Sequence[str],
        *,
        port: int,
        log_path: str | os.PathLike,
        startup_timeout: float = 180.0,
        env: Mapping[str, str] | None = None,
    ):
        self.engine = engine
        self.command = [str(part) for part in command]
        self.port = int(port)
        self.url = f"http://{LOOPBACK}:{self.port}/v1"
        self.log_path = Path(log_path)
        self.startup_timeout = float(startup_timeout)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ManagedServer:
        """Start the server and wait until it answers (`ServerError` if it does not)."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                # Its own process group, so that stop() reaches the engine's worker processes too.
                start_new_session=True, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        with _lock:
            _running[self.url] = self
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def state(self) -> str:
        """'running', 'exited with status N' or 'not started'."""
        if self.process is None:
            return "not started"
        code = self.process.poll()
        return "running" if code is None else f"exited with status {code}"

    def stop(self) -> None:
        """Stop the server and its children (idempotent)."""
        with _lock:
            if _running.get(self.url) is self:
                del _running[self.url]
        process = self.process
        if process is None or process.poll() is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)

    def last_log_line(self) -> str:
        try:
            lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=5.0) as http:
            while True:
                if not self.alive():
                    raise ServerError(
                        f"the {self.engine} server {self.state()} before answering; log {self.log_path}: {self.last_log_line()}"
                    )
                try:
                    if http.get(self.url + "/models").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"the {self.engine} server at {self.url} did not answer within {self.startup_timeout:g} s; "
                        f"log {self.log_path}: {self.last_log_line()}"
                    )
                time.sleep(0.5)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG = 1)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


@atexit.register
def _stop_all() -> None:
    with _lock:
        servers = list(_running.values())
    for server in servers:
        server.stop()
