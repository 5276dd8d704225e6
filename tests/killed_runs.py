"""Killing a CLI run at a chosen point, for the tests that resume one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def kill_cli_when(args: Sequence[str], log_folder: Path, condition: Callable[[], bool], limit_s: float = 240) -> None:
    """Run ``reflectrl ARGS`` in a child process and SIGKILL it as soon as `condition()` holds (its output: first.log)."""
    command = [sys.executable, "-m", "reflectrl.cli.main", *args]
    log_path = Path(log_folder) / "first.log"
    deadline = time.monotonic() + limit_s
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            while not condition():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the run never reached the point to kill it at"
                time.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
