"""The on-disk answer cache that makes teacher calls happen once.

Answers are stored in SQLite keyed by a hash of (teacher name, the text the
answer depends on). SQLite because a process killed in the middle of a write
leaves the database as it was before the unfinished transaction, and several
processes may share one cache file; both would take extra care with a plain
append-only file. Answers are committed batch by batch, so a killed run keeps
everything it had paid for and a re-run asks the teacher only for the rest.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from reflectrl.teachers.base import ReflectionRequest, Teacher

_SCHEMA = "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, teacher TEXT NOT NULL, answer TEXT NOT NULL)"


def cache_key(teacher_name: str, text: str) -> str:
    """Stable key of one teacher answer."""
    digest = hashlib.sha256()
    digest.update(teacher_name.encode("utf-8"))
    digest.update(b"\0")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


class TeacherCache:
    """A key -> answer store in one SQLite file."""

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=timeout)
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path} is not a usable teacher cache ({err}); delete it or choose another --cache") from err

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The cached answers among `keys`."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite limits the number of bound parameters
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, answer in self._db.execute(f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk):
                found[key] = answer
        return found

    def put_many(self, teacher: str, items: dict[str, str]) -> None:
        """Store answers in one transaction (all or none survive a kill)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO answers (key, teacher, answer) VALUES (?, ?, ?)",
                [(key, teacher, answer) for key, answer in items.items()],
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class CachedTeacher(Teacher):
    """A teacher whose answers go through a `TeacherCache`.

    `calls` counts the requests passed on to the wrapped teacher and `hits`
    those answered from the cache. Empty answers are not cached, so a teacher
    that failed to say anything is asked again next time.
    """

    def __init__(self, teacher: Teacher, cache: TeacherCache):
        self.teacher = teacher
        self.cache = cache
        self.name = teacher.name
        self.calls = 0
        self.hits = 0

    def key_text(self, request: ReflectionRequest) -> str:
        return self.teacher.key_text(request)

    def reflect(self, requests: Sequence[ReflectionRequest]) -> list[str]:
        keys = [cache_key(self.name, self.teacher.key_text(r)) for r in requests]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        # The same request can appear twice in a batch; ask once.
        first_of: dict[str, int] = {}
        for i in missing:
            first_of.setdefault(keys[i], i)
        asked = list(first_of.values())
        self.hits += len(requests) - len(missing)
        if asked:
            answers = self.teacher.reflect([requests[i] for i in asked])
            if len(answers) != len(asked):
                raise RuntimeError(f"teacher {self.name} returned {len(answers)} answers for {len(asked)} requests")
            self.calls += len(asked)
            new = {keys[i]: answer for i, answer in zip(asked, answers)}
            self.cache.put_many(self.name, {k: v for k, v in new.items() if v.strip()})
            found.update(new)
        return [found[key] for key in keys]

    def close(self) -> None:
        self.teacher.close()
        self.cache.close()
