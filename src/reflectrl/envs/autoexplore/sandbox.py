"""The one layer through which AutoExplore reads the file system: read-only and rooted.

Every path is a tuple of entry names relative to the sandbox root. Paths are
opened one component at a time with ``openat``-style calls (``os.open`` with
``dir_fd``) and ``O_NOFOLLOW``, starting from the root, so whatever a name
holds (``..``, ``/``, spaces, newlines, unicode, a leading dash) and whatever
a symbolic link points to, nothing outside the root can be listed or read.
Nothing here writes, executes or spawns a shell.

Policy for special entries:

* **Symbolic links are never followed**, wherever they point (inside the root
  or not). They are listed as links and cannot be entered or read. This keeps
  one rule for every link and makes link loops and swaps harmless.
* **FIFOs, sockets and devices** are listed but never opened: a file is
  checked with ``lstat`` before it is opened, opened with ``O_NONBLOCK`` and
  checked again with ``fstat`` (same inode, regular file) before any read.
* **Hard links**: a regular file with more than one link is listed but never
  read. Its other names may lie outside the root, and nothing in the file
  says where they are, so the sandbox cannot tell a hard link into ``/etc``
  from one inside the tree; refusing every such file keeps a single rule
  (trees installed by link-farming tools, such as some package managers'
  caches, show these files as unreadable).
* **Big files** are read only up to the view limit, never whole; a file whose
  head holds a NUL byte or mostly undecodable bytes is shown as a one-line
  binary placeholder.
* **Unreadable entries** (permission denied, vanished, not a folder) give a
  `ListingError`/`FileView` with an ``error`` message instead of an exception.

Only POSIX systems are supported (``O_NOFOLLOW`` and ``dir_fd`` are required).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

DIR = "dir"
FILE = "file"
LINK = "link"
OTHER = "other"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_BYTES_PER_CHAR = 4
"""UTF-8 needs at most 4 bytes per character: reading this many bytes per wanted character always suffices."""


class SandboxError(ValueError):
    """A path that can never name an entry inside the root (``..``, ``/``, empty or NUL names)."""


@dataclass(frozen=True)
class Entry:
    """One entry of a folder listing."""

    name: str
    """The raw name (may hold any character but ``/`` and NUL)."""
    kind: str
    """``dir``, ``file`` (regular file), ``link`` (symbolic link, never followed) or ``other``."""
    detail: str = ""
    """For ``other``: what it is (``fifo``, ``socket``, ``character device``...)."""

    @property
    def display(self) -> str:
        """The name as shown in listings and actions (see `display_name`)."""
        return display_name(self.name)


@dataclass(frozen=True)
class Listing:
    """The entries of one folder, or why it could not be listed."""

    entries: tuple[Entry, ...] = ()
    unscanned: bool = False
    """True when the folder held more than the sandbox's `max_entries` and the rest was not read."""
    error: str | None = None


@dataclass(frozen=True)
class FileView:
    """Part of one file as text, a binary placeholder, or an error."""

    text: str = ""
    size: int = 0
    """Size in bytes reported by the file system (a sparse file may claim terabytes)."""
    truncated: bool = False
    start_line: int = 1
    """The line the text jumps to after the file's first line (1: the text is the file's head)."""
    binary: bool = False
    error: str | None = None


def display_name(name: str) -> str:
    """A one-line, unambiguous rendering of an entry name.

    Plain names (printable, no whitespace, quotes or backslashes) are shown as
    they are; any other name is shown as a Python string literal, so newlines,
    spaces at either end and undecodable bytes become visible escapes and two
    different names never look the same. Plain names hold no quotes, so they
    cannot collide with a quoted one.
    """
    if name and name.isprintable() and not any(ch.isspace() or ch in "'\"\\" for ch in name):
        return name
    return repr(name)


def check_parts(parts: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate a path given as entry names; raises `SandboxError` for names that cannot be entries."""
    out = []
    for name in parts:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
            raise SandboxError(f"invalid path component {name!r}: paths are entry names inside the root")
        out.append(name)
    return tuple(out)


def parse_path(path: str) -> tuple[str, ...]:
    """Split a relative POSIX path (``a/b/c.py``) into checked entry names.

    Absolute paths and ``..`` are refused rather than normalised: a task file
    that names them is malformed, not something to repair.
    """
    if not isinstance(path, str) or not path:
        raise SandboxError(f"invalid path {path!r}: expected a non-empty relative path")
    if path.startswith("/"):
        raise SandboxError(f"absolute path {path!r} refused: paths are relative to the repository root")
    return check_parts([p for p in path.split("/") if p])


def join_path(parts: tuple[str, ...]) -> str:
    """The inverse of `parse_path` (``a/b/c.py``; the root is the empty string)."""
    return "/".join(parts)


def _open_at(name: str, flags: int, dir_fd: int) -> int:
    """``openat(2)``: the single low-level open every sandbox read goes through."""
    return os.open(name, flags, dir_fd=dir_fd)


def _describe(err: OSError) -> str:
    if err.errno in (errno.ELOOP, errno.EMLINK):
        return "is a symbolic link (links are not followed)"
    if err.errno == errno.ENOTDIR:
        return "not a folder"
    if err.errno == errno.ENOENT:
        return "no such entry"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return err.strerror or type(err).__name__


def _other_detail(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


class Sandbox:
    """Read-only access to the folder tree under `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, max_entries: int = 5000):
        if not hasattr(os, "O_NOFOLLOW") or os.open not in os.supports_dir_fd:
            raise OSError("the AutoExplore sandbox needs a POSIX system (O_NOFOLLOW and dir_fd support)")
        real = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real):
            raise FileNotFoundError(f"repository root {os.fspath(root)!r} is not a folder")
        self.root = real
        """The root after resolving links once, at construction (so a later swap of a link is ignored)."""
        self.max_entries = int(max_entries)

    def __repr__(self) -> str:
        return f"Sandbox({self.root!r})"

    @contextmanager
    def _folder(self, parts: tuple[str, ...]) -> Iterator[int]:
        """A file descriptor of the folder `parts`, opened component by component without following links."""
        parts = check_parts(parts)
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for name in parts:
                try:
                    nxt = _open_at(name, _DIR_FLAGS, fd)
                except OSError as err:
                    # Linux reports a link opened with O_DIRECTORY|O_NOFOLLOW as ENOTDIR; say what it really is
                    if err.errno == errno.ENOTDIR and _is_link(name, fd):
                        raise OSError(errno.ELOOP, "is a symbolic link") from None
                    raise
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            os.close(fd)

    def list_dir(self, parts: tuple[str, ...] = ()) -> Listing:
        """The entries of folder `parts`, sorted by `sort_key`; errors come back in `Listing.error`."""
        entries: list[Entry] = []
        unscanned = False
        try:
            with self._folder(parts) as fd, os.scandir(fd) as scan:
                for item in scan:
                    if len(entries) >= self.max_entries:
                        unscanned = True
                        break
                    entries.append(self._entry(item))
        except OSError as err:
            return Listing(error=f"cannot list {show_path(parts)}: {_describe(err)}")
        entries.sort(key=lambda e: sort_key(e.name))
        return Listing(tuple(entries), unscanned)

    @staticmethod
    def _entry(item: os.DirEntry) -> Entry:
        try:
            if item.is_symlink():
                return Entry(item.name, LINK)
            if item.is_dir(follow_symlinks=False):
                return Entry(item.name, DIR)
            if item.is_file(follow_symlinks=False):
                return Entry(item.name, FILE)
            return Entry(item.name, OTHER, _other_detail(item.stat(follow_symlinks=False).st_mode))
        except OSError as err:
            return Entry(item.name, OTHER, _describe(err))

    def read_head(self, parts: tuple[str, ...], max_bytes: int) -> tuple[bytes, int]:
        """At most `max_bytes` from the start of regular file `parts`, and its size.

        Raises `OSError` (with a readable message) for anything that is not a
        regular file with a single link or cannot be opened; never opens FIFOs
        or devices.
        """
        parts = check_parts(parts)
        if not parts:
            raise SandboxError("the root is a folder, not a file")
        *folder, name = parts
        with self._folder(tuple(folder)) as dfd:
            before = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(before.st_mode):
                raise OSError(errno.ELOOP, "is a symbolic link (links are not followed)")
            if not stat.S_ISREG(before.st_mode):
                raise OSError(errno.EINVAL, f"not a regular file ({_other_detail(before.st_mode)})")
            fd = _open_at(name, _FILE_FLAGS, dfd)
            try:
                after = os.fstat(fd)
                if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
                    raise OSError(errno.EAGAIN, "the file changed while it was being opened")
                # Checked on the open descriptor: a link added after the lstat still counts.
                if after.st_nlink > 1:
                    raise OSError(errno.EINVAL, f"has {after.st_nlink} hard links (not read: another name may lie outside the root)")
                chunks, left = [], max(0, int(max_bytes))
                while left > 0:
                    chunk = os.read(fd, min(left, 1 << 16))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    left -= len(chunk)
                return b"".join(chunks), after.st_size
            finally:
                os.close(fd)

    def read_file(self, parts: tuple[str, ...], max_chars: int) -> FileView:
        """The first `max_chars` characters of a text file, a binary placeholder, or an error view."""
        try:
            head, size = self.read_head(parts, max_chars * _BYTES_PER_CHAR + _BYTES_PER_CHAR)
        except OSError as err:
            return FileView(error=f"cannot read {show_path(parts)}: {_describe(err) if err.errno != errno.EINVAL else err.strerror}")
        text = decode_text(head)
        if text is None:
            return FileView(text=f"[binary file, {size:,} bytes: not shown]", size=size, binary=True)
        truncated = len(text) > max_chars or size > len(head)
        return FileView(text=text[:max_chars], size=size, truncated=truncated)

    def is_regular_file(self, parts: tuple[str, ...]) -> bool:
        """True when `parts` names a regular file reachable without following links."""
        try:
            parts = check_parts(parts)
            if not parts:
                return False
            *folder, name = parts
            with self._folder(tuple(folder)) as dfd:
                return stat.S_ISREG(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
        except (OSError, SandboxError):
            return False

    def walk(self, skip=lambda name: False, max_depth: int | None = None) -> Iterator[tuple[tuple[str, ...], Listing]]:
        """Every listable folder under the root, breadth first, as (path, listing).

        Folders whose name satisfies `skip` are not entered; links are never followed.
        """
        queue: deque[tuple[str, ...]] = deque([()])
        while queue:
            parts = queue.popleft()
            listing = self.list_dir(parts)
            yield parts, listing
            if max_depth is not None and len(parts) >= max_depth:
                continue
            queue += [parts + (e.name,) for e in listing.entries if e.kind == DIR and not skip(e.name)]


def sort_key(name: str) -> tuple[str, str]:
    """Listing order: case-insensitive, ties broken by the exact name (so the order is total)."""
    return (name.casefold(), name)


def decode_text(head: bytes) -> str | None:
    """`head` as text, or None when it looks binary (a NUL byte, or over 10% undecodable)."""
    if b"\0" in head:
        return None
    text = head.decode("utf-8", errors="replace")
    # a multi-byte character cut at the end of the head is not evidence of binary data
    body = text[:-1] if text.endswith("\ufffd") else text
    if body and body.count("\ufffd") > 0.1 * len(body):
        return None
    return text.replace("\r\n", "\n")


def show_path(parts: tuple[str, ...]) -> str:
    """A folder or file path inside the root as shown to the agent: ``/`` is the root."""
    return "/" + "/".join(display_name(p) for p in parts)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
