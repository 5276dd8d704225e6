"""Where reflectrl keeps its files, and how it writes them so that readers never see half a write.

This module imports nothing heavy (no torch, no transformers), so that light
commands (`reflectrl envs`, `play`, starting `gen-data`) stay fast.

* `cache_root()`: the cache folder, ``$REFLECTRL_CACHE`` or ``~/.cache/reflectrl``
  (the embedded model's conversion, the AutoExplore benchmark, rewritten questions).
* `atomic_write_bytes(path, data)`: one file, written to a temporary sibling and
  renamed over `path` (the temporary files of killed writers of `path` are deleted first).
* `atomic_write_json(path, data)`: the same for a JSON document (indented, keys sorted).
* `atomic_folder(target)`: a folder of several files (a model cache, an adapter),
  filled in a temporary sibling folder and renamed into place.
* `atomic_files(folder)`: several files replaced together inside a folder that
  holds other things too (an SFT run folder: adapter files next to
  ``label_order.json``, checkpoints and metrics).
* `recover_folder(target)`: finishes or undoes what a killed writer of either
  kind left, so a reader calls it before trusting `target`.

A rename within one file system is atomic, so a process killed half-way leaves
either the old content or the complete new one. Everything is on disk
(``fsync`` of each file, each folder and the parent) before a rename makes it
visible, and the parent is synced again after the rename, so that a power cut
cannot leave a renamed folder holding empty files.

`atomic_folder` replacing an existing folder needs two renames (old folder
aside into ``.NAME.old-PID-*``, new folder in). A writer killed between the
two leaves no `target`; `recover_folder` (which every `atomic_folder` call runs
first) then renames the old folder back. `atomic_files` commits its set with
one rename of the staged folder to ``NAME/.pending-files``, then moves the
files in one by one; after a kill, `recover_folder` finishes the moves. Left-
overs of writers that are no longer running (their process id is in the
name) are deleted there too, with those of writers nested in them (an
`atomic_folder` whose target was another one's temporary folder).

Permissions are those of a plain write: a new file gets 0666 and a new folder
0777, both reduced by the umask (the kernel applies it, as for `open()` and
`mkdir()`), and a file that replaces an existing one keeps that file's
permission bits, as rewriting it in place would. `tempfile.mkstemp` and
`mkdtemp` are not used for this reason: they create private 0600 / 0700 entries.
"""

from __future__ import annotations

import errno
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
_PENDING = ".pending-files"
"""Inside a folder: the files `atomic_files` committed and has not finished moving in yet."""


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


def _sync(path: Path | str) -> None:
    is_folder = os.path.isdir(path)
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_folder else 0))
    try:
        os.fsync(fd)
    except OSError as err:
        # Some file systems cannot sync a folder; the files in it are synced all the same.
        if not is_folder or err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """Every file and folder under `root` on disk, each folder after what it holds (links are not followed)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                _sync(os.path.join(folder, name))
        _sync(folder)


def _writer_prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{os.getpid()}-"


def _leftovers(target: Path, kind: str) -> list[Path]:
    """Siblings of `target` that a writer of `kind` left and whose process is gone, newest first."""
    prefix = f".{target.name}.{kind}-"
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
    found = [target.parent / n for n in names if not _running(n[len(prefix):].split("-", 1)[0])]
    return sorted(found, key=lambda p: p.lstat().st_mtime_ns, reverse=True)


def _running(pid: str) -> bool:
    if not pid.isdigit():
        return False  # written before process ids were part of the name
    if int(pid) == os.getpid() or os.name != "posix":  # elsewhere os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):  # too large: digits of a random name from before process ids
        return False
    except PermissionError:
        pass
    return True


def recover_folder(target: str | os.PathLike) -> bool:
    """Repair what a killed `atomic_folder` or `atomic_files` writer left at `target`; True when something was put back.

    A missing `target` whose previous version was moved aside is renamed back;
    files `atomic_files` had committed are moved in; temporary folders of
    writers that are no longer running are deleted.
    """
    target = Path(target)
    restored = False
    backups = _leftovers(target, "old")
    if backups and not os.path.lexists(target) and (backups[0] / "content").is_dir():
        os.rename(backups[0] / "content", target)
        _sync(target.parent)
        restored = True
    for leftover in backups + _leftovers(target, "tmp"):
        _discard(leftover)
    pending = target / _PENDING
    if pending.is_dir():
        _move_in(pending, target, ())
        restored = True
    if target.is_dir():
        for name in os.listdir(target):
            if name.startswith(".staged-") and not _running(name[len(".staged-"):].split("-", 1)[0]):
                shutil.rmtree(target / name, ignore_errors=True)
    return restored


def _discard(leftover: Path) -> None:
    """Delete what a killed writer left, with what writers nested in it left beside it (a `save_adapter` into the
    temporary folder of a `save_final`: its own temporary folder is a sibling of that one, named after it)."""
    for kind in ("old", "tmp"):
        for nested in _leftovers(leftover, kind):
            _discard(nested)
    shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def atomic_folder(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it becomes `target`.

    With `replace=False` an existing `target` (for example written by another
    process at the same time) is kept and the new content is discarded. With
    `replace=True` the old folder is moved aside, the new one renamed in, and
    the old one deleted. On an exception nothing at `target` changes. A kill
    leaves the old or the new folder, after `recover_folder` (see the module
    docstring).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target)
    tmp, _ = _create_sibling(target.parent, _writer_prefix(target, "tmp"), _make_folder)
    try:
        yield tmp
        if target.exists() and not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        _sync_tree(tmp)
        if target.exists():
            if not target.is_dir():
                raise FileExistsError(f"{target} exists and is not a folder")
            old, _ = _create_sibling(target.parent, _writer_prefix(target, "old"), _make_folder)
            _sync(target.parent)
            os.rename(target, old / "content")
            _sync(old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old / "content", target)  # put the previous folder back
                shutil.rmtree(old, ignore_errors=True)
                raise
            _sync(target.parent)
            shutil.rmtree(old, ignore_errors=True)
            return
        _sync(target.parent)
        try:
            os.rename(tmp, target)
        except OSError:
            if replace or not target.is_dir():
                raise
            # Another writer finished first; keep its folder.
            shutil.rmtree(tmp, ignore_errors=True)
            return
        _sync(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_files(folder: str | os.PathLike, *, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; on success its files replace their namesakes in `folder`, as one set.

    For files that must change together in a folder that holds other things
    too. Only plain files (no sub-folders) can be staged. Files named in `last`
    are moved in after the others (a file whose presence marks the folder as
    complete). A kill leaves the old or the new set, after `recover_folder`
    (see the module docstring); on an exception nothing in `folder` changes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover_folder(folder)
    stage, _ = _create_sibling(folder, f".staged-{os.getpid()}-", _make_folder)
    try:
        yield stage
        nested = [p.name for p in stage.iterdir() if p.is_dir() or p.is_symlink()]
        if nested:
            raise IsADirectoryError(f"only plain files can be replaced together, not {', '.join(sorted(nested))}")
        _sync_tree(stage)
        os.rename(stage, folder / _PENDING)  # the commit: from here on the new set is what the folder holds
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _sync(folder)
    _move_in(folder / _PENDING, folder, last)


def _move_in(pending: Path, folder: Path, last: tuple[str, ...]) -> None:
    for name in sorted(os.listdir(pending), key=lambda n: (n in last, last.index(n) if n in last else 0, n)):
        os.replace(pending / name, folder / name)
    _sync(folder)
    os.rmdir(pending)
    _sync(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a single file through a temporary sibling and `os.replace` (permissions: see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _leftovers(path, "tmp"):  # of writers killed while writing this file
        if stale.is_file():
            stale.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp, fd = _create_sibling(path.parent, _writer_prefix(path, "tmp"), lambda name: os.open(name, flags, 0o666))
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
    _sync(path.parent)  # the rename itself, so that after a power cut the name holds the new file


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON with sorted keys through `atomic_write_bytes`."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode("utf-8"))
