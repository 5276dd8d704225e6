"""The built-in AutoExplore benchmark: synthetic repositories plus generated tasks, no download.

One repository per business of `synthetic.BUSINESSES` (16); a seeded shuffle
puts 4 businesses in the test split and 12 in train, so test repositories,
and even their kinds of business, are never seen in training. Tasks are made
by the ordinary generator (`generator.make_tasks`) with targets at depth 0-3
and evidence inside the environment's default file view. With the default seed
this gives 522 train and 176 test tasks (the tests check >= 150 and >= 40,
with every depth 0-3 and every kind in both splits).

It is generated on first use into ``$REFLECTRL_CACHE/autoexplore/`` (default
``~/.cache/reflectrl``), written atomically (a temporary folder renamed into
place), and reused afterwards; the folder name carries a format version and
the seed, so a new generator never reads an old benchmark. Generation takes
about a second.

A larger benchmark from real code, e.g. the Python standard library split by
top-level package::

    reflectrl autoexplore make-tasks "$(python -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")" \\
        --each-subfolder --out stdlib-tasks.jsonl
"""

from __future__ import annotations

import os
from pathlib import Path
from random import Random

from reflectrl.envs.autoexplore.env import DEFAULT_VIEW_CHARS
from reflectrl.envs.autoexplore.generator import GeneratorConfig, GeneratorStats, make_tasks
from reflectrl.envs.autoexplore.synthetic import BUSINESSES, repository_files, repository_name, write_repository
from reflectrl.envs.autoexplore.taskset import TaskSetError, save_tasks, split_by_repository
from reflectrl.storage import CACHE_ENV, atomic_folder, cache_root

FORMAT_VERSION = 1
"""Bump when the synthetic generator or the task generator changes its output."""
TEST_BUSINESSES = 4
TASKS_FILE = "tasks.jsonl"


def build_benchmark(dest: str | os.PathLike, seed: int = 0, repos_per_business: int = 1, per_file: int = 1) -> GeneratorStats:
    """Write repositories under ``dest/repos`` and the task file ``dest/tasks.jsonl``; `dest` may exist but be empty."""
    dest = Path(dest)
    order = list(BUSINESSES)
    Random(f"autoexplore-benchmark/{seed}").shuffle(order)
    test_kinds = {b.kind for b in order[:TEST_BUSINESSES]}
    roots, test_repos = [], []
    for business in BUSINESSES:
        for index in range(1, repos_per_business + 1):
            name = repository_name(business, index)
            roots.append(write_repository(repository_files(business, seed, name), dest / "repos" / name))
            if business.kind in test_kinds:
                test_repos.append(name)
    config = GeneratorConfig(seed=seed, per_file=per_file, max_depth=3, visible_chars=DEFAULT_VIEW_CHARS)
    tasks, stats = make_tasks(roots, config)
    tasks = split_by_repository(tasks, test_repositories=test_repos)
    save_tasks(tasks, dest / TASKS_FILE)
    return stats


def builtin_benchmark_dir(seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of the built-in benchmark for `seed`, generating it on first use."""
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "autoexplore"
    target = base / f"builtin-v{FORMAT_VERSION}-seed{seed}"
    if (target / TASKS_FILE).is_file():
        return target
    try:
        # replace only a folder left incomplete by hand; a complete one written meanwhile by another process is kept
        with atomic_folder(target, replace=target.exists() and not (target / TASKS_FILE).is_file()) as tmp:
            build_benchmark(tmp, seed=seed)
    except OSError as err:
        raise TaskSetError(
            f"cannot write the built-in AutoExplore benchmark under {str(base)!r} ({err.strerror or err}); "
            f"set {CACHE_ENV} to a writable folder"
        ) from None
    return target


def builtin_tasks_path(seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """The task file of the built-in benchmark (see `builtin_benchmark_dir`)."""
    return builtin_benchmark_dir(seed, cache_dir) / TASKS_FILE
