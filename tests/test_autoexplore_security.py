"""Security of AutoExplore: one test per hostile case of a fixture tree, plus crafted actions.

The fixture tree sits next to a folder `outside` holding a secret; nothing the
environment shows may ever contain it, and the tree must be unchanged after
every test (the environment never writes).
"""

import json
import os
import stat
import threading
import time

import numpy as np
import pytest

from reflectrl.envs.autoexplore import sandbox as sandbox_module
from reflectrl.envs.autoexplore.env import ERROR_REWARD, INVALID_REWARD, SUCCESS_REWARD, AutoExploreEnv
from reflectrl.envs.autoexplore.sandbox import Sandbox, SandboxError, display_name, parse_path
from reflectrl.envs.autoexplore.taskset import Task, TaskSetError, load_tasks
from reflectrl.envs.autoexplore.views import SCAN_CHARS

SECRET = "TOP-SECRET-4711"
NEWLINE_NAME = "line\nbreak.txt"
SPACE_NAME = "my notes.md"
UNICODE_NAME = "café ☕ notes.md"
SPARSE_SIZE = 8 * 2**30


@pytest.fixture
def hostile(tmp_path):
    """A repository holding every hostile case, and a secret outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# Demo\n\nA small repository.\n")
    (root / "docs" / "guide.md").write_text("The guide explains how to configure the widget.\n")
    os.symlink("/", root / "escape")
    os.symlink(outside / "secret.txt", root / "leak.txt")
    os.symlink(outside, root / "leakdir")
    os.symlink("docs", root / "docs-link")
    (root / "-rf").write_text("not a command, just a file\n")
    (root / "--help").write_text("leading dashes\n")
    (root / NEWLINE_NAME).write_text("a newline in the name\n")
    (root / SPACE_NAME).write_text("notes with spaces in the name\n")
    (root / UNICODE_NAME).write_text("unicode name, and the answer is here\n")
    with open(root / "sparse.dat", "wb") as f:
        f.write(b"sparse header\n")
        f.truncate(SPARSE_SIZE)
    os.mkfifo(root / "pipe")
    (root / "locked").mkdir()
    (root / "locked" / "inside.txt").write_text("behind a locked door\n")
    (root / "...").mkdir()
    (root / "..." / "dots.txt").write_text("three dots\n")
    return root


def snapshot(root):
    """Every entry under root with its type, size and modification time (links not followed)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return out


def make(root, target="README.md", **kwargs):
    task = Task(id="t", question="Which file?", kind="text", repository="repo", root=str(root), targets=(target,), depth=target.count("/"))
    env = AutoExploreEnv(tasks=[task], max_actions=kwargs.pop("max_actions", 62), **kwargs)
    env.reset(seed=0)
    return env


def all_text(env, info):
    return env.render() + "\n".join(info["actions"]) + "\n".join(info["history"])


def test_symlink_to_root_is_listed_not_followed(hostile):
    before = snapshot(hostile)
    env = make(hostile)
    _, info = env.reset(seed=0)
    assert "escape (symbolic link, not followed)" in info["observation"]
    assert not any("escape" in a for a in info["actions"])
    _, reward, _, _, info = env.step("cd escape")
    assert info["invalid_action"] and reward == INVALID_REWARD
    box = Sandbox(hostile)
    assert "symbolic link" in box.list_dir(("escape",)).error
    assert box.read_file(("escape", "etc", "passwd"), 100).error
    assert snapshot(hostile) == before


def test_symlinks_to_files_and_folders_outside_never_leak(hostile):
    env = make(hostile)
    box = Sandbox(hostile)
    assert box.read_file(("leak.txt",), 1000).error and SECRET not in box.read_file(("leak.txt",), 1000).text
    assert box.list_dir(("leakdir",)).error
    for crafted in ("cat leak.txt", "id leak.txt", "cd leakdir", "cat leakdir/secret.txt"):
        _, _, _, _, info = env.step(crafted)
        assert info["invalid_action"]
    # a random walk through everything offered never shows the secret
    rng = np.random.default_rng(0)
    for episode in range(30):
        _, info = env.reset(seed=episode)
        for _ in range(env.horizon):
            _, _, term, trunc, info = env.step(int(rng.integers(len(info["actions"]))))
            assert SECRET not in all_text(env, info)
            if term or trunc:
                break


def test_symlink_inside_root_is_shown_as_link_only(hostile):
    env = make(hostile)
    assert "docs-link (symbolic link, not followed)" in env.render()
    assert "cd docs" in env.actions and "cd docs-link" not in env.actions


def test_file_named_dash_rf_is_just_a_file(hostile):
    before = snapshot(hostile)
    env = make(hostile, target="-rf")
    assert "cat -rf" in env.actions
    _, reward, _, _, info = env.step("cat -rf")
    assert reward == -1.0 and "not a command, just a file" in info["observation"]
    _, reward, terminated, _, info = env.step("id -rf")
    assert terminated and info["success"] and reward == SUCCESS_REWARD
    assert snapshot(hostile) == before


def test_name_with_newline_is_one_quoted_line(hostile):
    env = make(hostile, target=NEWLINE_NAME)
    quoted = display_name(NEWLINE_NAME)
    assert quoted == repr(NEWLINE_NAME) and "\n" not in quoted
    assert f"cat {quoted}" in env.actions
    assert all("\n" not in a for a in env.actions)
    _, _, _, _, info = env.step(f"cat {quoted}")
    assert "a newline in the name" in info["observation"]
    _, _, terminated, _, info = env.step(f"id {quoted}")
    assert terminated and info["success"]
    # the raw name (with its newline) is not an action
    env.reset(seed=0)
    _, _, _, _, info = env.step(f"cat {NEWLINE_NAME}")
    assert info["invalid_action"]


@pytest.mark.parametrize("view_start, bound", [("head", 300 * 4 + 4), ("question", SCAN_CHARS * 4 + 4)])
def test_large_sparse_file_is_read_only_up_to_the_view(hostile, monkeypatch, view_start, bound):
    read_sizes = []
    real_read = os.read

    def counting_read(fd, n):
        data = real_read(fd, n)
        read_sizes.append(len(data))
        return data

    monkeypatch.setattr(sandbox_module.os, "read", counting_read)
    env = make(hostile, view_chars=300, view_start=view_start)
    start = time.monotonic()
    _, reward, _, _, info = env.step("cat sparse.dat")
    assert time.monotonic() - start < 2.0
    assert reward == -1.0
    assert f"{SPARSE_SIZE:,} bytes" in info["observation"] and "binary file" in info["observation"]
    assert sum(read_sizes) <= bound  # a question view scans more than it shows, but never the whole file


def test_big_text_file_view_is_truncated(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "big.txt").write_text("word " * 200_000)
    env = make(root, target="big.txt", view_chars=500)
    _, _, _, _, info = env.step("cat big.txt")
    assert "first 500 characters shown" in info["observation"]
    assert info["observation"].count("word") <= 101


def test_fifo_is_never_opened_and_never_hangs(hostile, monkeypatch):
    opened = []
    real_open_at = sandbox_module._open_at

    def spy(name, flags, dir_fd):
        opened.append(name)
        return real_open_at(name, flags, dir_fd)

    monkeypatch.setattr(sandbox_module, "_open_at", spy)
    env = make(hostile)
    assert "pipe (fifo)" in env.render()
    assert not any("pipe" in a for a in env.actions)
    _, _, _, _, info = env.step("cat pipe")
    assert info["invalid_action"]
    result = {}
    worker = threading.Thread(target=lambda: result.update(view=Sandbox(hostile).read_file(("pipe",), 100)), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "reading a FIFO hung"
    assert "not a regular file (fifo)" in result["view"].error
    assert "pipe" not in opened


def test_unreadable_directory_gives_an_error_observation(hostile, monkeypatch):
    real_open_at = sandbox_module._open_at

    def deny(name, flags, dir_fd):
        if name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_open_at(name, flags, dir_fd)

    monkeypatch.setattr(sandbox_module, "_open_at", deny)
    env = make(hostile)
    _, reward, terminated, truncated, info = env.step("cd locked")
    assert reward == ERROR_REWARD and not (terminated or truncated) and not info["invalid_action"]
    assert "permission denied" in info["observation"] and info["cwd"] == "/"
    assert "cd locked" in info["actions"]


def test_unreadable_file_gives_an_error_observation(hostile, monkeypatch):
    real_open_at = sandbox_module._open_at

    def deny(name, flags, dir_fd):
        if name == "README.md":
            raise PermissionError(13, "Permission denied")
        return real_open_at(name, flags, dir_fd)

    monkeypatch.setattr(sandbox_module, "_open_at", deny)
    env = make(hostile)
    _, reward, _, _, info = env.step("cat README.md")
    assert reward == ERROR_REWARD and "cannot read /README.md: permission denied" in info["observation"]
    assert "cat README.md" in info["actions"] and "id README.md" not in info["actions"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_chmod_000_directory_gives_an_error_observation(hostile):
    os.chmod(hostile / "locked", 0)
    try:
        env = make(hostile)
        _, reward, _, _, info = env.step("cd locked")
        assert reward == ERROR_REWARD and "permission denied" in info["observation"]
    finally:
        os.chmod(hostile / "locked", 0o755)


def test_dot_dot_chains_are_refused(hostile):
    box = Sandbox(hostile)
    for parts in (("..",), ("docs", ".."), ("..", "..", "etc"), (".",), ("",)):
        with pytest.raises(SandboxError):
            box.list_dir(parts)
    for path in ("../outside/secret.txt", "docs/../../outside/secret.txt", "./README.md"):
        with pytest.raises(SandboxError):
            parse_path(path)
    env = make(hostile)
    for crafted in ("cd ..", "cd ../..", "cd ../../..", "cat ../outside/secret.txt"):
        _, _, _, _, info = env.step(crafted)
        assert info["invalid_action"] and info["cwd"] == "/"
    # a directory literally named "..." is an ordinary folder
    _, _, _, _, info = env.step("cd ...")
    assert not info["invalid_action"] and info["cwd"] == "/..."
    assert "cd .." in info["actions"]


def test_absolute_paths_are_refused(hostile, tmp_path):
    box = Sandbox(hostile)
    with pytest.raises(SandboxError):
        parse_path("/etc/passwd")
    with pytest.raises(SandboxError):
        box.read_file(("/etc/passwd",), 100)
    env = make(hostile)
    for crafted in ("cat /etc/passwd", "cd /", "cd /etc", f"cat {tmp_path}/outside/secret.txt"):
        _, _, _, _, info = env.step(crafted)
        assert info["invalid_action"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "q", "kind": "code", "repository": "r", "root": "repo", "targets": ["/etc/passwd"]}\n')
    with pytest.raises(TaskSetError, match="absolute path"):
        load_tasks(bad)
    bad.write_text('{"id": "x", "question": "q", "kind": "code", "repository": "r", "root": "repo", "targets": ["../outside/secret.txt"]}\n')
    with pytest.raises(TaskSetError, match="invalid path component"):
        load_tasks(bad)


@pytest.mark.parametrize("name", [SPACE_NAME, UNICODE_NAME, "--help"])
def test_names_with_spaces_unicode_and_leading_dashes_work(hostile, name):
    env = make(hostile, target=name)
    path = []
    while True:
        action = env.oracle_action()
        path.append(action)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert info["success"]
    shown = display_name(name)
    assert path == [f"cat {shown}", f"id {shown}"]
    assert (shown == name) == (name == "--help")  # only the plain name goes unquoted


CRAFTED = [
    "rm -rf /",
    "cat -rf; rm -rf /",
    "cat README.md && cat /etc/passwd",
    "cat README.md\ncat leak.txt",
    "$(cat /etc/passwd)",
    "cat `id`",
    "id README.md",  # not read yet
    "cat escape/etc/passwd",
    "cd docs/../..",
    "cat pipe",
    "cd locked/../../outside",
    "",
    "   ",
    "\x00",
    "cat " + "A" * 10_000,
    -1,
    10**12,
    3.5,
    None,
    True,
    b"cat README.md",
    ["cat README.md"],
    {"action": "cat README.md"},
    np.array([1, 2]),
]


@pytest.mark.parametrize("action", CRAFTED, ids=[repr(a)[:30] for a in CRAFTED])
def test_crafted_actions_are_inadmissible_and_change_nothing(hostile, action):
    before = snapshot(hostile)
    env = make(hostile)
    _, info0 = env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(action)
    assert info["invalid_action"] and reward == INVALID_REWARD and not terminated
    assert info["cwd"] == "/" and info["actions"] == info0["actions"]
    assert SECRET not in all_text(env, info)
    assert snapshot(hostile) == before


def test_padded_admissible_string_is_accepted(hostile):
    env = make(hostile)
    _, _, _, _, info = env.step("  cat README.md \n")
    assert not info["invalid_action"]


def test_hostile_tree_listing_is_complete_and_every_action_is_one_unique_line(hostile):
    env = make(hostile)
    actions = env.actions
    assert len(actions) == len(set(actions))
    assert all("\n" not in a and a == a.strip() for a in actions)
    for name in ("-rf", "--help", SPACE_NAME, UNICODE_NAME, NEWLINE_NAME, "README.md", "sparse.dat"):
        assert f"cat {display_name(name)}" in actions
    for name in ("docs", "locked", "..."):
        assert f"cd {name}" in actions


def test_the_sandbox_root_must_be_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        Sandbox(tmp_path / "missing")
    with pytest.raises(TaskSetError, match="unavailable"):
        make(tmp_path / "missing")


def test_task_generator_over_the_hostile_tree(hostile, tmp_path):
    from reflectrl.envs.autoexplore.generator import GeneratorConfig, make_tasks
    from reflectrl.envs.autoexplore.taskset import save_tasks

    (hostile / "docs-notes.md").write_text("# Odd names\n\nThe file next to this one has a newline in its name.\n")
    (hostile / NEWLINE_NAME).write_text("# Newline\n\nA document whose own name holds a newline character.\n")
    before = snapshot(hostile)
    start = time.monotonic()
    tasks, _ = make_tasks([hostile], GeneratorConfig(per_file=5))
    assert time.monotonic() - start < 10
    targets = {t.targets[0] for t in tasks}
    assert NEWLINE_NAME in targets and "docs-notes.md" in targets
    assert not any(t.startswith(("escape", "leak", "docs-link", "pipe")) for t in targets)
    out = tmp_path / "hostile.jsonl"
    save_tasks(tasks, out)
    assert load_tasks(out) == tasks
    env = AutoExploreEnv(tasks=out)
    for index in range(env.num_tasks):
        _, info = env.reset(options={"index": index})
        while True:
            _, _, terminated, truncated, info = env.step(env.oracle_index())
            if terminated or truncated:
                break
        assert info["success"]
    assert snapshot(hostile) == before


@pytest.mark.parametrize("root", ["../outside", "{outside}", "/etc", "repo/../../outside", "outside-link"])
def test_task_file_roots_must_stay_inside_the_task_file_folder(hostile, tmp_path, root):
    folder = tmp_path / "set"
    folder.mkdir()
    os.symlink(tmp_path / "outside", folder / "outside-link")
    line = {"id": "x", "question": "q", "kind": "text", "repository": "r", "root": root.format(outside=tmp_path / "outside"),
            "targets": ["secret.txt"]}
    bad = folder / "tasks.jsonl"
    bad.write_text('{"id": "ok", "question": "q", "kind": "text", "repository": "r", "root": ".", "targets": ["a.txt"]}\n'
                   + json.dumps(line) + "\n")
    with pytest.raises(TaskSetError, match="tasks.jsonl line 2: root .* outside the task file's folder"):
        load_tasks(bad)


def test_save_tasks_refuses_roots_that_a_load_would_refuse(hostile, tmp_path):
    from reflectrl.envs.autoexplore.taskset import save_tasks

    task = Task(id="t", question="q", kind="text", repository="repo", root=str(hostile), targets=("README.md",), depth=0)
    save_tasks([task], tmp_path / "tasks.jsonl")
    assert load_tasks(tmp_path / "tasks.jsonl")[0].root == str(hostile)
    with pytest.raises(TaskSetError, match="outside the task file's folder"):
        save_tasks([task], tmp_path / "elsewhere" / "tasks.jsonl")
    assert not (tmp_path / "elsewhere" / "tasks.jsonl").exists()


def test_folders_the_user_trusts_may_hold_roots(hostile, tmp_path, monkeypatch):
    from reflectrl.envs.autoexplore.taskset import ROOTS_ENV, save_tasks

    task = Task(id="t", question="q", kind="text", repository="repo", root=str(hostile), targets=("README.md",), depth=0)
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join(["", str(tmp_path / "nothing"), str(hostile)]))
    save_tasks([task], tmp_path / "elsewhere" / "tasks.jsonl")
    assert load_tasks(tmp_path / "elsewhere" / "tasks.jsonl")[0].root == str(hostile)
    monkeypatch.delenv(ROOTS_ENV)
    with pytest.raises(TaskSetError, match="REFLECTRL_TASK_ROOTS"):
        load_tasks(tmp_path / "elsewhere" / "tasks.jsonl")


def test_a_hard_link_to_a_file_outside_is_never_read(hostile):
    os.link(hostile.parent / "outside" / "secret.txt", hostile / "hard.txt")
    box = Sandbox(hostile)
    view = box.read_file(("hard.txt",), 1000)
    assert SECRET not in view.text and "hard links" in view.error and "\n" not in view.error
    with pytest.raises(OSError, match="hard links"):
        box.read_head(("hard.txt",), 1000)
    env = make(hostile)
    _, _, _, _, info = env.step("cat hard.txt")
    assert SECRET not in all_text(env, info)
