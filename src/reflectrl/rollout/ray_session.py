"""Joining or starting Ray for a run, and leaving it as it was found.

`start_ray(None)` starts a Ray instance inside this process's session (what
`reflectrl train --ray` does); `start_ray(ADDRESS)` joins a running cluster
(`ray start --head` on one node, `--ray-address` everywhere else). Only a
Ray this run started is shut down by `RaySession.stop`.
"""

from __future__ import annotations

import os
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


def start_ray(address: str | None = None, num_cpus: float | None = None) -> RaySession:
    """Join the cluster at `address`, or start a local Ray with `num_cpus` CPUs (None: all of this machine's).

    A Ray already initialised in this process (by a caller) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return RaySession(address, started=False)
    options = {"include_dashboard": False, "configure_logging": False}
    # Workers must import the same reflectrl as the driver: pass on a source tree given by PYTHONPATH.
    if os.environ.get("PYTHONPATH"):
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
    if address is None:
        _start_local(ray, num_cpus, options)
    else:
        try:
            ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConnectionError(f"could not join the Ray cluster at {address} ({err}); is `ray start --head` running there?") from err
    return RaySession(address, started=True)


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
