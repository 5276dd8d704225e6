"""A stand-in stage for `run_stages_in_processes` tests: it notes when it ran, in a module that imports nothing heavy
(each spawned worker imports it)."""

from __future__ import annotations

import time
from pathlib import Path


def timed_stage(job: tuple[str, str, float, bool]) -> None:
    """Write NAME.start, sleep, write NAME.end (each holding the time), or fail after the sleep."""
    folder, name, seconds, fails = job
    Path(folder, f"{name}.start").write_text(repr(time.time()))
    time.sleep(seconds)
    if fails:
        raise ValueError(f"{name} broke")
    Path(folder, f"{name}.end").write_text(repr(time.time()))


def interval(folder: Path, name: str) -> tuple[float, float]:
    """When the stage `name` started and ended."""
    return float((folder / f"{name}.start").read_text()), float((folder / f"{name}.end").read_text())
