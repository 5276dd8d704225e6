"""Where reflectrl keeps its files, and how it writes them so that readers never see half a write.

This module imports nothing heavy (no torch, no transformers), so that light
commands (`reflectrl envs`, `play`, starting `gen-data`) stay fast.

* `cache_root()`: the cache folder, ``$REFLECTRL_CACHE`` or ``~/.cache/reflectrl``
  (the embedded model's conversion, the AutoExplore benchmark, rewritten questions).
* `atomic_write_bytes(path, data)`: one file, written to a temporary sibling and
  renamed over `path`.
* `atomic_write_json(path, data)`: the same for a JSON document (indented, keys sorted).
* `atomic_folder(target)`: a folder of several files (a model cache, an adapter),
  filled in a temporary sibling folder and renamed into place.

A rename within one file system is atomic, so a process killed half-way leaves
either the old content or the complete new one.

Permissions are those of a plain write: a new file gets 0666 and a new folder
0777, both reduced by the umask (the kernel applies it, as for `open()` and
`mkdir()`), and a file that replaces an existing one keeps that file's
permission bits, as rewriting it in place would. `tempfile.mkstemp` and
`mkdtemp` are not used for this reason: they create private 0600 / 0700 entries.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

CACHE_ENV = "REFLECTRL_CACHE"
"""Environment variable naming the cache folder."""

_Created = TypeVar("_Created")
_NAME_TRIES = 100


def cache_root() -> Path:
    """The reflectrl cache folder (``$REFLECTRL_CACHE`` or ``~/.cache/reflectrl``)."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "reflectrl"


def _create_sibling(folder: Path, prefix: str, create: Callable[[Path], _Created]) -> tuple[Path, _Created]:
    """Call `create(name)` on fresh random names in `folder` until one did not exist yet."""
    for _ in range(_NAME_TRIES):
        candidate = folder / f"{prefix}{os.urandom(6).hex()}"
        try:
            return candidate, create(candidate)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name with prefix {prefix!r} in {folder}")


def _make_folder(path: Path) -> None:
    os.mkdir(path, 0o777)


@contextmanager
def atomic_folder(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it becomes `target`.

    With `replace=False` an existing `target` (for example written by another
    process at the same time) is kept and the new content is discarded. With
    `replace=True` the old folder is moved aside, the new one renamed in, and
    the old one deleted. On an exception nothing at `target` changes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, _ = _create_sibling(target.parent, f".{target.name}.tmp-", _make_folder)
    try:
        yield tmp
        if target.exists() and not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if target.exists():
            if not target.is_dir():
                raise FileExistsError(f"{target} exists and is not a folder")
            old, _ = _create_sibling(target.parent, f".{target.name}.old-", _make_folder)
            os.rename(target, old / "content")
            try:
                os.rename(tmp, target)
            except OSError:
                os.rename(old / "content", target)  # put the previous folder back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(tmp, target)
        except OSError:
            if replace or not target.is_dir():
                raise
            # Another writer finished first; keep its folder.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a single file through a temporary sibling and `os.replace` (permissions: see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp, fd = _create_sibling(path.parent, f".{path.name}.tmp-", lambda name: os.open(name, flags, 0o666))
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                previous = os.stat(path)
            except FileNotFoundError:
                previous = None
            if previous is not None and stat.S_ISREG(previous.st_mode):
                os.chmod(tmp, stat.S_IMODE(previous.st_mode))
            handle.write(data)
            # On disk before the rename, so a crash of the machine cannot leave a renamed empty file.
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON with sorted keys through `atomic_write_bytes`."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode("utf-8"))
