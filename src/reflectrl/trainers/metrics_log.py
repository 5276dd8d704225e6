"""What an RL run records: one JSON line per iteration (``metrics.jsonl``) and the same scalars for its
trackers (TensorBoard by default; see `reflectrl.trainers.trackers`).

A resumed run truncates ``metrics.jsonl`` to its size at the checkpoint (the
lines after it belong to iterations that run again) and hides the
TensorBoard events of those iterations (`purge_step`).

Every line is on disk before the next iteration starts, and a checkpoint keeps
a copy of the lines it covers (`save_into`): a resume puts them back as they
were (`restore`) when the file lost or garbled any of them, instead of padding
a short file with zero bytes up to the recorded size.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflectrl.storage import atomic_write_bytes
from reflectrl.trainers.trackers import TENSORBOARD, RunTrackers

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends iteration records to ``RUN/metrics.jsonl`` and to the run's `trackers` (whose folder is RUN)."""

    def __init__(self, run_dir: Path, trackers: RunTrackers):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.trackers = trackers

    def append(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            # A checkpoint records how much of the file it covers; that much must survive a power cut.
            handle.flush()
            os.fsync(handle.fileno())
        # The first record after a resumed checkpoint at iteration k is k + 1: the trackers open there,
        # and TensorBoard hides the events of the iterations that run again.
        self.trackers.log(record, int(record["iteration"]))

    def size(self) -> int:
        """Bytes written so far (a checkpoint records it, to truncate to on resume)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, size: int) -> None:
        """Keep the first `size` bytes; a file shorter than that is cut after its last whole line instead."""
        if self.path.exists():
            with open(self.path, "r+b") as handle:
                kept = handle.read(size)
                handle.truncate(size if len(kept) == size else kept.rfind(b"\n") + 1)

    def save_into(self, folder: Path, size: int) -> None:
        """Copy the first `size` bytes (what a checkpoint in `folder` covers) into `folder`."""
        data = self.path.read_bytes()[:size] if self.path.exists() else b""
        (Path(folder) / METRICS_FILE).write_bytes(data)

    def restore(self, folder: Path, size: int) -> None:
        """Go back to the checkpoint in `folder`: its copy of the first `size` bytes, then nothing more."""
        copy = Path(folder) / METRICS_FILE
        if not copy.is_file():  # a checkpoint from before copies were kept
            self.truncate(size)
            return
        saved = copy.read_bytes()
        with open(self.path, "a+b") as handle:
            handle.seek(0)
            if handle.read(len(saved)) == saved:
                handle.truncate(len(saved))
                return
        atomic_write_bytes(self.path, saved)

    def clear(self) -> None:
        """Drop everything logged so far."""
        self.close()
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / TENSORBOARD, ignore_errors=True)

    def close(self) -> None:
        self.trackers.finish()


@dataclass
class WeightedMeans:
    """Running weighted means of update statistics."""

    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float, weight: float) -> None:
        if weight > 0:
            self.totals[name] = self.totals.get(name, 0.0) + float(value) * weight
            self.counts[name] = self.counts.get(name, 0.0) + weight

    def means(self) -> dict[str, float]:
        return {name: self.totals[name] / self.counts[name] for name in self.totals}
