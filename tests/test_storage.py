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


def _synced_paths(monkeypatch) -> list[str]:
    """Record the path behind every descriptor given to os.fsync (Linux: /proc/self/fd)."""
    synced, real = [], os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names descriptors through /proc")
def test_an_atomic_folder_is_on_disk_before_and_after_its_renames(tmp_path, monkeypatch):
    synced = _synced_paths(monkeypatch)
    for content in (b"v1", b"v2"):  # a new folder, then one replaced
        synced.clear()
        with atomic_folder(tmp_path / "adapter") as folder:
            (folder / "sub").mkdir()
            (folder / "weights").write_bytes(content)
            (folder / "sub" / "config.json").write_bytes(content)
        names = [Path(p).name for p in synced]
        assert {"weights", "config.json", "sub"} <= set(names)
        # the content before any rename in the parent, and the parent again after the last rename
        assert names.index("weights") < synced.index(str(tmp_path)) and synced[-1] == str(tmp_path)
    synced.clear()
    atomic_write_bytes(tmp_path / "run.json", b"{}")
    assert synced[-1] == str(tmp_path)


KILL_AT_RENAME = """
import os, sys
from pathlib import Path
from reflectrl import storage
real, calls, die_at = os.{call}, [], int(sys.argv[2])
def cut(*args, **kwargs):
    calls.append(args)
    if len(calls) == die_at:
        os._exit(9)  # as SIGKILL would: no cleanup runs
    return real(*args, **kwargs)
os.{call} = cut
with storage.{writer}(Path(sys.argv[1])) as stage:
    for name in ("a.txt", "b.txt"):
        (stage / name).write_text("new")
"""


def _killed_writer(target: Path, writer: str, call: str, die_at: int) -> None:
    import subprocess
    import sys

    script = KILL_AT_RENAME.format(writer=writer, call=call)
    done = subprocess.run([sys.executable, "-c", script, str(target), str(die_at)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr


def test_a_kill_between_the_two_renames_of_a_folder_leaves_it_recoverable(tmp_path):
    target = tmp_path / "final"
    with atomic_folder(target) as folder:
        (folder / "a.txt").write_text("old")
    _killed_writer(target, "atomic_folder", "rename", die_at=2)
    assert not target.exists()  # the old folder is moved aside, the new one not yet in place
    with atomic_folder(target, replace=False) as folder:  # the next writer finds the old one back first
        (folder / "a.txt").write_text("other")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_recover_folder_puts_back_a_folder_whose_writer_was_killed(tmp_path):
    from reflectrl.storage import recover_folder

    target = tmp_path / "final"
    with atomic_folder(target) as folder:
        (folder / "a.txt").write_text("old")
    _killed_writer(target, "atomic_folder", "rename", die_at=2)
    assert recover_folder(target) and (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert not recover_folder(target)


@pytest.mark.parametrize("call, die_at, expected", [("rename", 1, "old"), ("replace", 1, "new"), ("replace", 2, "new")])
def test_files_replaced_together_are_all_old_or_all_new_after_a_kill(tmp_path, call, die_at, expected):
    from reflectrl.storage import atomic_files, recover_folder

    out = tmp_path / "run"
    out.mkdir()
    for name in ("a.txt", "b.txt", "metrics.json"):
        (out / name).write_text("old")
    # One os.rename commits the set, then os.replace moves the files in one by one: kill at the commit, or after it.
    _killed_writer(out, "atomic_files", call, die_at=die_at)
    recover_folder(out)
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a.txt": expected, "b.txt": expected, "metrics.json": "old"}
    with atomic_files(out) as stage:
        (stage / "b.txt").write_text("newer")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a.txt": expected, "b.txt": "newer", "metrics.json": "old"}


def test_loading_an_adapter_whose_replacement_was_killed_finds_the_previous_one(tmp_path):
    import torch

    from reflectrl.models import add_lora, load_model, save_adapter
    from reflectrl.models.loading import is_adapter_folder

    torch.set_num_threads(1)
    model, _ = load_model("tiny-random", device="cpu")
    target = tmp_path / "final"
    save_adapter(add_lora(model, "default", r=4), "default", target)
    _killed_writer(target, "atomic_folder", "rename", die_at=2)  # a later save_final cut between its renames
    assert not target.exists()
    assert is_adapter_folder(target)
    loaded, _ = load_model(target, device="cpu")
    assert "default" in loaded.peft_config


NESTED_KILL = """
import os, sys
from pathlib import Path
from reflectrl.storage import atomic_folder
with atomic_folder(Path(sys.argv[1])) as outer:  # save_final: the adapter is saved into its temporary folder
    with atomic_folder(outer) as inner:
        (inner / "weights").write_text("new")
        os._exit(9)
"""


def test_recovery_deletes_what_writers_nested_in_a_killed_one_left(tmp_path):
    import subprocess
    import sys

    from reflectrl.storage import recover_folder

    target = tmp_path / "final"
    with atomic_folder(target) as folder:
        (folder / "weights").write_text("old")
    done = subprocess.run([sys.executable, "-c", NESTED_KILL, str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert len(list(tmp_path.iterdir())) == 3  # the target, the outer writer's folder and the inner one's beside it
    recover_folder(target)
    assert [p.name for p in tmp_path.iterdir()] == ["final"] and (target / "weights").read_text() == "old"


KILLED_FILE_WRITE = """
import os, sys
from reflectrl import storage
os.replace = lambda *args, **kwargs: os._exit(9)  # killed with the new content written, before its rename
storage.atomic_write_bytes(sys.argv[1], b"new")
"""


def test_the_next_write_of_a_file_deletes_what_a_killed_writer_of_it_left(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "eval.json"
    atomic_write_bytes(target, b"old")
    done = subprocess.run([sys.executable, "-c", KILLED_FILE_WRITE, str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert len(list(tmp_path.iterdir())) == 2 and target.read_bytes() == b"old"
    atomic_write_bytes(tmp_path / "other.json", b"{}")  # another file's write leaves it alone: not its business
    atomic_write_bytes(target, b"newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "other.json"] and target.read_bytes() == b"newer"


KILLED_ADAPTER_SAVE = """
import os, sys
from reflectrl.models import add_lora, load_model, save_adapter
model = add_lora(load_model("tiny-random", device="cpu")[0], "policy", r=4)
real = type(model).save_pretrained
def killed(self, *args, **kwargs):
    real(self, *args, **kwargs)
    os._exit(9)  # peft has written the adapter, the save has not put it in place
type(model).save_pretrained = killed
save_adapter(model, "policy", sys.argv[1])
"""


def test_a_save_adapter_killed_inside_peft_leaves_nothing_the_next_save_keeps(tmp_path):
    import subprocess
    import sys

    import torch

    from reflectrl.models import add_lora, load_model, save_adapter

    torch.set_num_threads(1)
    target = tmp_path / "final"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", KILLED_ADAPTER_SAVE, str(target)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 9, done.stderr
    save_adapter(add_lora(load_model("tiny-random", device="cpu")[0], "policy", r=4), "policy", target)
    assert [p.name for p in tmp_path.iterdir()] == ["final"]
