"""AutoExplore task generation, task files, splits, the built-in benchmark and the make-tasks command."""

import ast
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.envs.autoexplore.benchmark import build_benchmark
from reflectrl.envs.autoexplore.generator import GeneratorConfig, make_tasks
from reflectrl.envs.autoexplore.questions import first_sentence, verb_phrase
from reflectrl.envs.autoexplore.taskset import (
    ROOTS_ENV,
    TaskSetError,
    command_path,
    load_tasks,
    save_tasks,
    split_by_ratio,
    split_by_repository,
)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


SHOP = {
    "README.md": "# Shop\n\nTools of a small shop in Graz run by two people.\n\n## Deployment notes\n\nThe server restarts every night at three in the morning.\n",
    "shop/billing/vat.py": '"""Value added tax helpers."""\n\n\ndef vat_of(amount):\n    """Return the value added tax owed on a gross amount."""\n    return amount * 0.2\n',
    "shop/billing/copy_of_vat.py": '"""A copy kept for the archive."""\n\n\ndef old_vat(amount):\n    """Return the value added tax owed on a gross amount."""\n    return amount * 0.2\n',
    "shop/stock.py": '"""Stock keeping."""\n\n\nclass Shelf:\n    """A shelf that remembers which products it holds."""\n',
    "data/prices.csv": "product,price_eur,supplier\nrye loaf,3.20,Berg Supplies\nalmond croissant,2.10,Costa Trading\n",
    "config/settings.json": json.dumps({"opening_time": "07:30", "loyalty": {"points_per_euro": 2}}),
    "node_modules/lib/readme.md": "# Ignored\n\nThis folder is excluded by default from the generator.\n",
    ".hidden/notes.md": "# Hidden\n\nHidden folders are never read by the generator at all.\n",
}


@pytest.fixture
def shop(tmp_path):
    return write(tmp_path / "shop-repo", SHOP)


def test_generator_makes_all_three_kinds_and_drops_ambiguous_questions(shop):
    tasks, stats = make_tasks([shop], GeneratorConfig(per_file=10))
    kinds = Counter(t.kind for t in tasks)
    assert kinds["code"] and kinds["text"] and kinds["data"]
    targets = {t.targets[0] for t in tasks}
    # the VAT docstring is in two files: no question about it survives
    assert not any("value added tax owed" in t.question for t in tasks)
    assert stats.ambiguous >= 2
    assert "shop/billing/vat.py" in targets  # its module docstring is unique
    assert not any("node_modules" in t or ".hidden" in t for t in targets)
    assert any("loyalty.points_per_euro" in t.question for t in tasks)
    for task in tasks:
        assert task.commands == command_path(task.targets[0])
        assert task.depth == task.targets[0].count("/")
        assert task.repository == "shop-repo" and Path(task.root) == shop.resolve()
    questions = [t.question for t in tasks]
    assert len(questions) == len(set(questions))


def test_generator_is_deterministic_and_seeded(shop):
    a, _ = make_tasks([shop], GeneratorConfig(seed=1, per_file=1))
    b, _ = make_tasks([shop], GeneratorConfig(seed=1, per_file=1))
    assert a == b
    others = [make_tasks([shop], GeneratorConfig(seed=s, per_file=1))[0] for s in range(2, 8)]
    assert any([t.question for t in o] != [t.question for t in a] for o in others)


def test_generator_options_limit_depth_visibility_and_count(shop):
    shallow, _ = make_tasks([shop], GeneratorConfig(per_file=10, max_depth=0))
    assert shallow and all(t.depth == 0 for t in shallow)
    visible, _ = make_tasks([shop], GeneratorConfig(per_file=10, visible_chars=60))
    assert visible and not any("restarts every night" in t.question for t in visible)
    capped, stats = make_tasks([shop], GeneratorConfig(per_file=10, max_tasks=3))
    assert len(capped) == 3 == stats.kept


def test_question_phrasing_from_docstrings():
    assert verb_phrase("Return the total of all invoices.") == "returns the total of all invoices"
    assert verb_phrase("Computes the margin.") == "computes the margin"
    assert verb_phrase("Shelf of products.") is None
    assert first_sentence("Short.") is None
    assert first_sentence(">>> print(1) is an example here") is None
    assert first_sentence("Build the report for one week. More detail follows.") == "Build the report for one week."


def test_split_by_repository_never_leaks_a_test_repository(tmp_path):
    roots = [write(tmp_path / f"repo{i}", {f"pkg/m{j}.py": f'"""Module number {j} of repository {i} here."""\n' for j in range(5)}) for i in range(6)]
    tasks, _ = make_tasks(roots, GeneratorConfig())
    assert len({t.repository for t in tasks}) == 6
    for seed in range(5):
        split = split_by_repository(tasks, test_fraction=0.3, seed=seed)
        train = {t.repository for t in split if t.split == "train"}
        test = {t.repository for t in split if t.split == "test"}
        assert train and test and not train & test
        assert sum(t.split == "test" for t in split) >= 0.3 * len(split)
    fixed = split_by_repository(tasks, test_repositories=["repo2"])
    assert {t.repository for t in fixed if t.split == "test"} == {"repo2"}
    with pytest.raises(TaskSetError, match="at least 2 repositories"):
        split_by_repository([t for t in tasks if t.repository == "repo0"])
    by_ratio = split_by_ratio(tasks, 0.25, seed=0)
    assert sum(t.split == "test" for t in by_ratio) == round(0.25 * len(tasks))


def test_task_file_round_trip_and_malformed_lines(shop, tmp_path):
    tasks, _ = make_tasks([shop], GeneratorConfig())
    out = tmp_path / "tasks.jsonl"
    save_tasks(tasks, out)
    assert load_tasks(out) == tasks
    moved = tmp_path / "inside"
    write(moved, SHOP)
    save_tasks([t.__class__(**{**t.__dict__, "root": str(moved)}) for t in tasks], moved.parent / "rel.jsonl")
    assert json.loads((moved.parent / "rel.jsonl").read_text().splitlines()[0])["root"] == "inside"
    assert Path(load_tasks(moved.parent / "rel.jsonl")[0].root) == moved
    cases = {
        "not json": "not valid JSON",
        "[1, 2]": "expected a JSON object",
        '{"id": "a"}': "missing field",
        '{"id": "a", "question": "q", "kind": "poem", "repository": "r", "root": ".", "targets": ["a"]}': "kind 'poem'",
        '{"id": "a", "question": "q", "kind": "code", "repository": "r", "root": ".", "targets": "a.py"}': "non-empty list",
        '{"id": "a", "question": "q", "kind": "code", "repository": "r", "root": ".", "targets": ["a"], "split": "dev"}': "split 'dev'",
        '{"id": "a", "question": "q", "kind": "code", "repository": "r", "root": ".", "targets": ["a"], "depth": -1}': "depth",
    }
    bad = tmp_path / "bad.jsonl"
    for line, message in cases.items():
        bad.write_text("\n" + line + "\n")
        with pytest.raises(TaskSetError, match=message) as err:
            load_tasks(bad)
        assert "line 2" in str(err.value)
    dup = '{"id": "a", "question": "q", "kind": "code", "repository": "r", "root": ".", "targets": ["a"]}\n'
    bad.write_text(dup * 2)
    with pytest.raises(TaskSetError, match="duplicate task id"):
        load_tasks(bad)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_builtin_benchmark_is_deterministic_big_enough_and_split_by_repository(tmp_path):
    build_benchmark(tmp_path / "a", seed=0)
    build_benchmark(tmp_path / "b", seed=0)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    tasks = load_tasks(tmp_path / "a" / "tasks.jsonl")
    by_split = Counter(t.split for t in tasks)
    assert by_split["train"] >= 150 and by_split["test"] >= 40
    for split in ("train", "test"):
        depths = Counter(t.depth for t in tasks if t.split == split)
        kinds = Counter(t.kind for t in tasks if t.split == split)
        assert set(depths) == {0, 1, 2, 3} and min(depths.values()) >= 10
        assert set(kinds) == {"code", "text", "data"}
    train_repos = {t.repository for t in tasks if t.split == "train"}
    test_repos = {t.repository for t in tasks if t.split == "test"}
    assert not train_repos & test_repos and len(test_repos) >= 3
    for path in (tmp_path / "a" / "repos").rglob("*.py"):
        ast.parse(path.read_text())
    assert max(len(p.parts) - len((tmp_path / "a" / "repos").parts) - 2 for p in (tmp_path / "a" / "repos").rglob("*") if p.is_file()) == 4
    other = build_benchmark(tmp_path / "c", seed=1)
    assert other.kept > 0 and tree_digest(tmp_path / "c") != tree_digest(tmp_path / "a")


def test_make_tasks_command_prints_counts_and_writes_the_file(tmp_path):
    roots = [write(tmp_path / f"r{i}", {**SHOP, "extra.md": f"# Extra {i}\n\nThis is the extra document number {i} of the set.\n"}) for i in range(3)]
    out = tmp_path / "tasks.jsonl"
    result = CliRunner().invoke(app, ["autoexplore", "make-tasks", *map(str, roots), "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    for word in ("kind code", "kind text", "kind data", "depth 0", "depth 2", "train", "test", "split: repository"):
        assert word in result.output
    tasks = load_tasks(out)
    assert tasks and {t.split for t in tasks} == {"train", "test"}
    assert f"{len(tasks)} tasks from 3 repositories" in result.output


def test_make_tasks_command_reports_errors_without_traceback(tmp_path, shop):
    runner = CliRunner()
    missing = runner.invoke(app, ["autoexplore", "make-tasks", str(tmp_path / "nope"), "--out", str(tmp_path / "t.jsonl")])
    assert missing.exit_code == 2 and "is not a folder" in missing.output
    one = runner.invoke(app, ["autoexplore", "make-tasks", str(shop), "--out", str(tmp_path / "t.jsonl"), "--split", "repository"])
    assert one.exit_code == 2 and "at least 2 repositories" in one.output
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(app, ["autoexplore", "make-tasks", str(empty), "--out", str(tmp_path / "t.jsonl")])
    assert none.exit_code == 2 and "no tasks found" in none.output
    bad_llm = runner.invoke(app, ["autoexplore", "make-tasks", str(shop), "--out", str(tmp_path / "t.jsonl"), "--llm", "gpt"])
    assert bad_llm.exit_code == 2 and "openai:MODEL" in bad_llm.output
    for result in (missing, one, none, bad_llm):
        assert "Traceback" not in result.output


def test_make_benchmark_command(tmp_path):
    result = CliRunner().invoke(app, ["autoexplore", "make-benchmark", "--out", str(tmp_path / "bench")])
    assert result.exit_code == 0, result.output
    assert "kind code" in result.output and (tmp_path / "bench" / "tasks.jsonl").is_file()
    again = CliRunner().invoke(app, ["autoexplore", "make-benchmark", "--out", str(tmp_path / "bench")])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.slow
def test_make_tasks_over_the_standard_library_is_fast_and_big(tmp_path, monkeypatch):
    stdlib = sysconfig.get_paths()["stdlib"]
    monkeypatch.setenv(ROOTS_ENV, stdlib)  # the task file lies elsewhere
    out = tmp_path / "stdlib.jsonl"
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "reflectrl.cli.main", "autoexplore", "make-tasks", stdlib, "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "120"},
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    tasks = load_tasks(out)
    print(result.stdout)
    print(f"standard library: {len(tasks)} tasks in {elapsed:.1f} s")
    assert len(tasks) >= 500 and elapsed < 120
    assert "kind code" in result.stdout and "depth 1" in result.stdout
    assert not any("site-packages" in t.targets[0] for t in tasks)
