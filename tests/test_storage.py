"""Atomic writes keep the permissions of a plain write, and leave nothing half-written behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reflectrl.envs.autoexplore import benchmark
from reflectrl.storage import CACHE_ENV, atomic_folder, atomic_write_bytes, cache_root

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    atomic_write_bytes(tmp_path / "atomic.json", b"{}")
    (tmp_path / "plain.json").write_bytes(b"{}")
    assert mode(tmp_path / "atomic.json") == mode(tmp_path / "plain.json") == 0o666 & ~mask


@posix_only
def test_replacing_a_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "stats.json"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]


@posix_only
def test_an_atomic_folder_gets_the_mode_mkdir_would_give(tmp_path, umask):
    umask(0o027)
    with atomic_folder(tmp_path / "adapter") as folder:
        (folder / "weights").write_bytes(b"w")
    (tmp_path / "plain").mkdir()
    assert mode(tmp_path / "adapter") == mode(tmp_path / "plain") == 0o750
    with atomic_folder(tmp_path / "adapter") as folder:  # replacing an existing folder
        (folder / "weights").write_bytes(b"v2")
    assert (tmp_path / "adapter" / "weights").read_bytes() == b"v2" and mode(tmp_path / "adapter") == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "plain"]


def test_a_failed_write_leaves_the_old_content_and_no_temporary_files(tmp_path):
    path = tmp_path / "data.json"
    atomic_write_bytes(path, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "cache") as folder:
        (folder / "half").write_bytes(b"x")
        raise RuntimeError("killed half-way")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_one_cache_folder_for_every_part(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert benchmark.cache_root is cache_root  # the benchmark uses the shared cache folder
    monkeypatch.setenv(CACHE_ENV, " ")
    assert cache_root() == Path.home() / ".cache" / "reflectrl"
