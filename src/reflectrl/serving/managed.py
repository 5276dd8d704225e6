"""`ManagedServer`: an inference server as a child process that never outlives reflectrl.

Lifecycle:

* with ``port=None`` a free loopback port is chosen (the OS picks one, which is
  then released and handed to the server through ``{port}`` in the command).
  Another process can take it before the server binds it, so a port found
  taken just before the start, or after a server that exited before answering,
  is picked again (`PORT_TRIES` in all); a fixed `port` is never changed;
* stdout and stderr go to `log_path` (in the run folder), so a failure can be
  read after the fact;
* `start` waits until ``GET /v1/models`` answers; a server that exits first,
  or does not answer within `startup_timeout`, raises `ServerError` naming the
  engine, the exit status and the log, with the log's last line;
* the server runs under a small guardian process (`GUARDIAN`), the leader of a
  new session and process group that the server and every worker it starts
  belong to. The guardian holds the read end of a pipe whose only write end
  is this process's: when this process dies, even by SIGKILL, the pipe reads
  end-of-file and the guardian ends the whole group (SIGTERM, then SIGKILL).
  A parent-death signal (``PR_SET_PDEATHSIG``) would reach only the direct
  child, not the workers an engine such as vLLM starts, and fires when the
  starting *thread* ends; the pipe has neither limit and works on any POSIX
  system;
* `stop` (also on leaving the ``with`` block, on interpreter exit and after
  Ctrl-C) sends SIGTERM to the group, then SIGKILL if it lingers. The
  guardian's exit status is the server's. Leftover workers of a server that
  exited on its own are killed before the guardian is reaped, while its
  process id, which is the group's id, cannot yet be reused.

Servers started by this process are registered by URL (`started_here`), so a
failing request can say which server died and where its log is: importing
this module hands `started_here` to the served reflector
(`reflectrl.players.served_reflector.find_started_servers_with`).
"""

from __future__ import annotations

import atexit
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

from reflectrl.players.served_reflector import find_started_servers_with

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0
PORT_TRIES = 5

GUARDIAN = """
import os, signal, subprocess, sys, threading
lifeline, grace, command = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
server = subprocess.Popen(command)
ending = threading.Event()
# The group's SIGTERM (from stop(), or sent below) must not end the guardian before its server.
signal.signal(signal.SIGTERM, lambda *_: ending.set())
def watch():
    while os.read(lifeline, 1):
        pass
    ending.set()
threading.Thread(target=watch, daemon=True).start()
while server.poll() is None and not ending.wait(0.2):
    pass
if server.poll() is None:
    os.killpg(0, signal.SIGTERM)
    try:
        server.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(0, signal.SIGKILL)
code = server.wait()
try:
    os.killpg(0, signal.SIGTERM)
except OSError:
    pass
if code < 0:
    try:
        signal.signal(-code, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), -code)
sys.exit(code if code >= 0 else 128 - code)
"""
"""Runs the server (see the module docstring); argv: lifeline fd, grace seconds, the server's command."""

_running: dict[str, ManagedServer] = {}
_lock = threading.Lock()


class ServerError(RuntimeError):
    """A managed server did not come up (one line: engine, state, log)."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when a server could bind `port` on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers do, so that a port held only by closed connections (TIME_WAIT) counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def started_here(url: str) -> ManagedServer | None:
    """The running server this process started at `url` (the /v1 root), if any."""
    with _lock:
        return _running.get(url.rstrip("/"))


find_started_servers_with(started_here)


class ManagedServer:
    """One server process (see the module docstring); use as a context manager or call `start` and `stop`."""

    def __init__(
        self,
        engine: str,
        command: Sequence[str],
        *,
        port: int | None = None,
        log_path: str | os.PathLike,
        startup_timeout: float = 180.0,
        env: Mapping[str, str] | None = None,
    ):
        self.engine = engine
        self.command_template = [str(part) for part in command]
        """The command, ``{port}`` standing for the port."""
        self.fixed_port = port is not None
        self.port = int(port) if port is not None else free_port()
        self.log_path = Path(log_path)
        self.startup_timeout = float(startup_timeout)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self._lifeline: int | None = None
        """The write end of the pipe the guardian watches; closed when the server is stopped."""
        self._group_ended = False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def command(self) -> list[str]:
        return [part.replace("{port}", str(self.port)) for part in self.command_template]

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ManagedServer:
        """Start the server and wait until it answers (`ServerError` if it does not)."""
        if self.alive():
            return self
        for attempt in range(1, PORT_TRIES + 1):
            if not self.fixed_port and not port_is_free(self.port):
                self.port = free_port()
                continue
            self._spawn()
            try:
                self._wait_until_ready()
                return self
            except ServerError:
                exited = not self.alive()
                self.stop()
                lost_race = exited and not self.fixed_port and not port_is_free(self.port)
                if not lost_race or attempt == PORT_TRIES:
                    raise
                self.port = free_port()
            except BaseException:
                self.stop()
                raise
        raise ServerError(f"the {self.engine} server found no free port in {PORT_TRIES} tries; log {self.log_path}")

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        watch, self._lifeline = os.pipe()
        try:
            with open(self.log_path, "ab") as log:
                log.write(f"$ {' '.join(self.command)}\n".encode())
                log.flush()
                self._group_ended = False
                self.process = subprocess.Popen(
                    # -I: an engine's PYTHONPATH or PYTHONHOME in the environment must not reach the guardian.
                    [sys.executable, "-I", "-c", GUARDIAN, str(watch), str(STOP_GRACE_S), *self.command],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                    start_new_session=True, pass_fds=(watch,),
                )
        except BaseException:
            os.close(self._lifeline)
            self._lifeline = None
            raise
        finally:
            os.close(watch)
        with _lock:
            _running[self.url] = self

    def alive(self) -> bool:
        return self.process is not None and not self._finished()

    def state(self) -> str:
        """'running', 'exited with status N' or 'not started'."""
        if self.process is None:
            return "not started"
        return f"exited with status {self.process.returncode}" if self._finished() else "running"

    def stop(self) -> None:
        """Stop the server and its children (idempotent)."""
        with _lock:
            if _running.get(self.url) is self:
                del _running[self.url]
        process = self.process
        if process is None:
            return
        if not self._finished():
            _signal_group(process.pid, signal.SIGTERM)
            if not self._finishes_within(STOP_GRACE_S):
                _signal_group(process.pid, signal.SIGKILL)
                self._finishes_within(STOP_GRACE_S)
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def kill(self) -> None:
        """Kill the server and every process it started at once (SIGKILL to its process group), as a crash would.

        For fault tests: killing only `process` (the guardian) would leave the server itself serving. The state
        then reads "exited with status -9"."""
        process = self.process
        if process is None or self._finished():
            return
        _signal_group(process.pid, signal.SIGKILL)
        self._finishes_within(STOP_GRACE_S)

    def _finishes_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self._finished():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _finished(self) -> bool:
        """Whether the guardian exited; leftover processes of its group are killed before it is reaped."""
        process = self.process
        if process.returncode is None:
            if hasattr(os, "waitid"):
                try:
                    if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                        return False
                except ChildProcessError:
                    pass
            elif process.poll() is None:
                return False
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        elif not self._group_ended:
            # Reaped by someone else: any workers left still hold the group, and so its id.
            _signal_group(process.pid, signal.SIGKILL)
        self._group_ended = True
        return True

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


@atexit.register
def _stop_all() -> None:
    with _lock:
        servers = list(_running.values())
    for server in servers:
        server.stop()
