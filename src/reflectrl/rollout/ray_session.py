"""Joining or starting Ray for a run, and leaving it as it was found.

`start_ray(None)` starts a Ray instance inside this process's session (what
`reflectrl train --ray` does); `start_ray(ADDRESS)` joins a running cluster
(`ray start --head` on one node, `--ray-address` everywhere else). Only a
Ray this run started is shut down by `RaySession.stop`.

Joining: Ray itself retries an unreachable address for many minutes without a
word, so the address is first tried with a plain TCP connection bounded by
`CONNECT_TIMEOUT_S`; a refusal or silence is a one-line `ConnectionError`
naming the address. (A port that accepts connections but is not Ray still
leaves the wait to Ray.)

Starting: the dashboard is off. Ray refuses a loopback node address (it
replaces ``127.0.0.1`` with the machine's address) and its processes listen
on every interface, so what keeps other machines out of a local Ray is its
token: Ray 2.59 and later (the lower bound of the ``ray`` extra) turn token
authentication on for a local Ray unless ``RAY_AUTH_MODE=disabled``. It is
not set from here: the driver reads the mode when Ray is imported, and a
mode changed later leaves driver and cluster disagreeing.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from reflectrl.rollout.env_worker import import_ray


@dataclass
class RaySession:
    """The Ray this process uses; `started` says whether it was started here (and so is stopped here)."""

    address: str | None
    started: bool

    def stop(self) -> None:
        if self.started:
            import_ray().shutdown()
            self.started = False


def start_ray(address: str | None = None, num_cpus: float | None = None, log_to_driver: bool = True) -> RaySession:
    """Join the cluster at `address`, or start a local Ray with `num_cpus` CPUs (None: all of this machine's).

    `log_to_driver`: Ray prints the workers' output here (False: it stays in Ray's worker logs).
    A Ray already initialised in this process (by a caller) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return RaySession(address, started=False)
    options = {"include_dashboard": False, "configure_logging": False, "log_to_driver": log_to_driver}
    # Workers must import the same reflectrl as the driver: pass on a source tree given by PYTHONPATH.
    if os.environ.get("PYTHONPATH"):
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
    if address is None:
        _start_local(ray, num_cpus, options)
    else:
        _check_reachable(ray, address)
        try:
            ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConnectionError(f"could not join the Ray cluster at {address} ({_first_line(err)}); {JOIN_HINT}") from err
    return RaySession(address, started=True)


CONNECT_TIMEOUT_S = 10.0
JOIN_HINT = "is `ray start --head` running there?"


def _check_reachable(ray, address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line `ConnectionError` unless something accepts TCP connections at `address` within `timeout`."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray looks the address up itself
    host = host.strip("[]")
    hosts = [host]
    if host in ("127.0.0.1", "localhost", "::1"):
        hosts.append(ray.util.get_node_ip_address())  # where Ray itself will connect for a loopback address
    reason = ""
    for candidate in hosts:
        try:
            socket.create_connection((candidate, int(port)), timeout=timeout).close()
            return
        except OSError as err:
            reason = err.strerror or str(err) or type(err).__name__
    raise ConnectionError(f"cannot reach the Ray cluster at {address} within {timeout:g} s ({reason}); {JOIN_HINT}")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


LOCAL_START_ATTEMPTS = 3
"""Ray gives its own processes a fixed 30 s to come up; on a machine busy with other jobs one try can miss it."""


def _start_local(ray, num_cpus: float | None, options: dict) -> None:
    failures = []
    for _ in range(LOCAL_START_ATTEMPTS):
        try:
            ray.init(num_cpus=int(num_cpus) if num_cpus is not None else None, **options)
            return
        except Exception as err:  # Ray raises a bare Exception when its node does not start in time
            failures.append(f"{type(err).__name__}: {err}")
            ray.shutdown()
    raise RuntimeError(
        f"could not start Ray on this machine in {LOCAL_START_ATTEMPTS} attempts (last: {failures[-1]}); "
        "is the machine overloaded, or its /tmp full?"
    )
