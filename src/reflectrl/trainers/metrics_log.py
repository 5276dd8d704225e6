"""What an RL run records: one JSON line per iteration (``metrics.jsonl``) and the same scalars for TensorBoard.

A resumed run truncates ``metrics.jsonl`` to its size at the checkpoint (the
lines after it belong to iterations that run again) and hides the
TensorBoard events of those iterations (`purge_step`).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
TENSORBOARD = "tensorboard"


class MetricsLog:
    """Appends iteration records to ``RUN/metrics.jsonl`` and ``RUN/tensorboard/``."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self._writer = None

    def append(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        writer = self._tensorboard(int(record["iteration"]))
        if writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    writer.add_scalar(key, value, record["iteration"])
            writer.flush()

    def size(self) -> int:
        """Bytes written so far (a checkpoint records it, to truncate to on resume)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, size: int) -> None:
        if self.path.exists():
            with open(self.path, "r+b") as handle:
                handle.truncate(size)

    def clear(self) -> None:
        """Drop everything logged so far."""
        self.close()
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / TENSORBOARD, ignore_errors=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _tensorboard(self, iteration: int):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at runtime; JSONL metrics are always written
                return None
            # The first record after a resumed checkpoint at iteration k is k + 1: purging from
            # there hides the events of the iterations that run again.
            purge = iteration if iteration > 1 else None
            self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD), purge_step=purge)
        return self._writer


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
