"""The per-episode journal that makes data generation resumable.

Each finished episode is appended as one JSON line holding all its rows, and
flushed to disk before the next episode starts. A kill can only leave an
unfinished last line; `load` drops it (and truncates the file there), so a
re-run redoes exactly the episodes that are missing: nothing is lost and
nothing is written twice. The final dataset files are rebuilt from the
journal at the end of every run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class CorruptJournal(RuntimeError):
    """A journal line other than the last one cannot be read."""


class EpisodeJournal:
    """Append-only JSONL of finished episodes, keyed by episode index."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[int, dict[str, Any]]:
        """All complete episode records; a torn last line is cut off the file."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        records: dict[int, dict[str, Any]] = {}
        good_end = 0
        lines = data.split(b"\n")
        for number, line in enumerate(lines):
            last = number == len(lines) - 1
            if not line.strip():
                if not last:
                    good_end += len(line) + 1
                continue
            try:
                record = json.loads(line)
                episode = int(record["episode"])
                complete = not last  # a line without its newline was being written when the run stopped
            except (ValueError, KeyError, TypeError):
                complete = False
            if not complete:
                if last:
                    break
                raise CorruptJournal(f"{self.path}: line {number + 1} is not a complete episode record; delete the folder and start again")
            records[episode] = record
            good_end += len(line) + 1
        if good_end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Write one episode record durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
