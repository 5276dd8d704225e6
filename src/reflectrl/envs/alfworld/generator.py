"""Offline ALFWorld game generation (`reflectrl alfworld make-games`).

For each game slot the generator samples a task in an ALFRED room
(`problems.py`), writes the trial folder of the real data set (traj_data.json,
initial_state.pddl, game.tw-pddl with alfworld's domain and grammar and the
task text from alfworld's templates), then asks the package's planner expert
for a walkthrough and replays it on the engine. Only games whose walkthrough
is non-empty and wins exactly at its last step are kept.

Why not call the package's `alfworld-generate` script: it stores an empty plan
as "solvable" (the planner returns [] for a problem it cannot solve), it skips
the last file with its default end index, it asks a yes/no question on stdin
when no save path is given, and it draws task texts from the global random
generator. The pieces it uses (textworld's PddlEnv, alfworld's wrappers, task
templates and planner expert) are the ones used here.

Splits: `train` and `valid_seen` use ALFRED's training rooms, `valid_unseen`
the rooms ALFRED holds out, so its layouts never appear in training.

Determinism: slot k of a split draws from a generator seeded with
(seed, split, k, task type, attempt); the result does not depend on the number
of worker processes or on which games already exist.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from reflectrl.envs.alfworld.dataset import GAME_FILE, JSON_DIR, PROBLEM_FILE, TRAJ_FILE
from reflectrl.envs.alfworld.problems import Problem
from reflectrl.envs.alfworld.tasks import (
    DEFAULT_TASK_TYPES,
    SPLITS,
    TASK_TYPES,
    parse_task_types,
)

TMP_DIR = ".reflectrl-tmp"


@dataclass(frozen=True)
class GeneratorConfig:
    """What `make_games` writes."""

    out: Path
    """Data root: games go to out/json_2.1.1/<split>/... (use it as ALFWORLD_DATA)."""
    n: int = 200
    """Number of games over all splits."""
    task_types: tuple[str, ...] = DEFAULT_TASK_TYPES
    """Task types, used in turn from one slot to the next."""
    seed: int = 0
    """Seed of every random choice."""
    valid_fraction: float = 0.1
    """Share of the games in each of valid_seen and valid_unseen; train gets the rest."""
    max_objects: int = 8
    """Movable objects per room (targets included); bounds the planner's search."""
    max_attempts: int = 25
    """Tasks sampled for a slot before giving it up."""
    workers: int = 0
    """Worker processes (0: one per available CPU core)."""

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out).expanduser())
        object.__setattr__(self, "task_types", parse_task_types(self.task_types))
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if not 0.0 <= self.valid_fraction <= 0.5:
            raise ValueError(f"valid_fraction must be in [0, 0.5], got {self.valid_fraction}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.max_objects < 2:
            raise ValueError(f"max_objects must be at least 2, got {self.max_objects}")


@dataclass(frozen=True)
class SlotResult:
    split: str
    task_type: str
    game_id: str | None
    """'<task folder>/<trial>' of the kept game, None when the slot failed."""
    reused: bool = False
    """The game was already on disk from an earlier run."""
    expert_steps: int = 0
    attempts: int = 0
    error: str = ""


@dataclass
class GenerationReport:
    """Outcome of `make_games`."""

    results: list[SlotResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> Counter:
        """Games per (split, task type)."""
        return Counter((r.split, r.task_type) for r in self.results if r.game_id)

    @property
    def made(self) -> int:
        return sum(1 for r in self.results if r.game_id and not r.reused)

    @property
    def reused(self) -> int:
        return sum(1 for r in self.results if r.reused)

    @property
    def failed(self) -> list[SlotResult]:
        return [r for r in self.results if not r.game_id]


def split_sizes(n: int, valid_fraction: float) -> dict[str, int]:
    """Games per split: round(n * fraction) for each valid split, at least one each when n >= 3."""
    valid = round(n * valid_fraction)
    if valid_fraction > 0 and n >= 3:
        valid = max(1, valid)
    valid = min(valid, n // 3) if valid_fraction > 0 else 0
    return {"train": n - 2 * valid, "valid_seen": valid, "valid_unseen": valid}


def slots(config: GeneratorConfig) -> list[tuple[str, int, str]]:
    """(split, index, task type) of every game to make."""
    sizes = split_sizes(config.n, config.valid_fraction)
    types = config.task_types
    return [(split, k, types[k % len(types)]) for split in SPLITS for k in range(sizes[split])]


def make_games(config: GeneratorConfig, progress: bool = False) -> GenerationReport:
    """Write `config.n` solvable games (fewer if some slots fail; see `GenerationReport.failed`)."""
    from reflectrl.envs.alfworld.engine import require_engine

    require_engine()
    start = time.monotonic()
    (config.out / JSON_DIR).mkdir(parents=True, exist_ok=True)
    todo = slots(config)
    workers = config.workers or _available_cpus()
    workers = max(1, min(workers, len(todo)))
    bar = _progress_bar(len(todo), progress)
    results: list[SlotResult] = []
    try:
        if workers == 1:
            for slot in todo:
                results.append(make_slot(config, *slot))
                bar.update(1)
        else:
            # spawn, not fork: the caller may hold threads (torch) that fork would copy half-way
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                for result in pool.map(_make_slot_star, [(config, *slot) for slot in todo]):
                    results.append(result)
                    bar.update(1)
    finally:
        bar.close()
        shutil.rmtree(config.out / TMP_DIR, ignore_errors=True)
    return GenerationReport(results, time.monotonic() - start)


def _make_slot_star(args) -> SlotResult:
    return make_slot(*args)


def make_slot(config: GeneratorConfig, split: str, k: int, task_type: str) -> SlotResult:
    """Make (or find from an earlier run) the game of one slot."""
    import numpy as np

    from reflectrl.envs.alfworld.problems import rooms_for, sample_problem

    rooms = rooms_for(task_type, held_out=split == "valid_unseen")
    trial = f"trial_seed{config.seed}_{k:05d}"
    if not rooms:
        return SlotResult(split, task_type, None, error="no room of this split can host the task type")
    error = "no task could be placed in the sampled rooms"
    for attempt in range(config.max_attempts):
        rng = np.random.default_rng([config.seed, SPLITS.index(split), k, TASK_TYPES.index(task_type), attempt])
        problem = sample_problem(int(rooms[int(rng.integers(len(rooms)))]), task_type, rng, config.max_objects)
        if problem is None:
            continue
        game_id = f"{problem.folder_name}/{trial}"
        final = config.out / JSON_DIR / split / game_id
        steps = _stored_walkthrough_length(final / GAME_FILE)
        if steps:
            return SlotResult(split, task_type, game_id, reused=True, expert_steps=steps, attempts=attempt + 1)
        tmp_root = config.out / TMP_DIR
        tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{split}-{k}-", dir=tmp_root))
        try:
            desc_seed = int(rng.integers(2**31))
            extra = {"generator": "reflectrl make-games", "seed": config.seed, "slot": k, "attempt": attempt}
            walkthrough, error = _write_and_solve(tmp, problem, trial, desc_seed, extra)
            if walkthrough:
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():
                    shutil.rmtree(final)  # an unsolvable leftover of an interrupted run
                os.replace(tmp, final)
                return SlotResult(split, task_type, game_id, expert_steps=len(walkthrough), attempts=attempt + 1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return SlotResult(split, task_type, None, attempts=config.max_attempts, error=error)


def _write_and_solve(folder: Path, problem: Problem, trial: str, desc_seed: int, extra: dict) -> tuple[list[str], str]:
    """Write the trial files into `folder`; returns (walkthrough, error). An empty walkthrough means unsolvable."""
    from alfworld.agents.utils.misc import add_task_to_grammar, get_templated_task_desc
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

    from reflectrl.envs.alfworld.problems import problem_pddl, traj_data

    pddl = problem_pddl(problem, f"plan_{trial}")

    # alfworld's templates draw from the global `random`; seed it for this one call
    saved = random.getstate()
    random.seed(desc_seed)
    try:
        desc = get_templated_task_desc({"task_type": problem.task_type, "pddl_params": problem.pddl_params()})
    finally:
        random.setstate(saved)
    traj = traj_data(problem, trial, desc, extra)
    # with one annotation and probability 1, alfworld's function writes exactly `desc` into the grammar
    grammar = add_task_to_grammar(Path(ALFRED_TWL2_PATH).read_text(), traj, goal_desc_human_anns_prob=1.0, rng=random.Random(0))
    (folder / TRAJ_FILE).write_text(json.dumps(traj, indent=2))
    (folder / PROBLEM_FILE).write_text(pddl)
    game = {
        "pddl_domain": Path(ALFRED_PDDL_PATH).read_text(),
        "grammar": grammar,
        "pddl_problem": pddl,
        "solvable": None,
        "walkthrough": None,
    }
    game_file = folder / GAME_FILE
    game_file.write_text(json.dumps(game))
    walkthrough, error = solve(game_file)
    game["solvable"] = bool(walkthrough)
    game["walkthrough"] = walkthrough or None
    game_file.write_text(json.dumps(game))
    return walkthrough, error


def solve(game_file: Path) -> tuple[list[str], str]:
    """The planner expert's walkthrough if replaying it wins exactly at its end, else ([], reason)."""
    try:
        game = _engine()
        game.load(game_file)
        game.reset()
        if game.won:
            return [], "won before any step"
        plan = game.plan()
        if not plan:
            return [], "the planner found no plan"
        for i, command in enumerate(plan):
            if command not in game.admissible:
                return [], f"plan step {i + 1} {command!r} is not admissible"
            game.step(command)
            if game.won != (i == len(plan) - 1):
                return [], f"replaying the plan {'wins early' if game.won else 'does not win'}"
        return plan, ""
    except Exception as err:  # the engine raises parser/planner errors of many kinds; the game is dropped
        return [], f"engine error: {type(err).__name__}: {err}"


@functools.cache
def _engine():
    """One engine per process: each engine loads a planner library that is never unloaded."""
    from reflectrl.envs.alfworld.engine import AlfredEngine

    return AlfredEngine(facts=False)


def _stored_walkthrough_length(game_file: Path) -> int:
    try:
        game = json.loads(game_file.read_text())
    except (OSError, ValueError):
        return 0
    walkthrough = game.get("walkthrough") if isinstance(game, dict) and game.get("solvable") else None
    return len(walkthrough) if isinstance(walkthrough, list) else 0


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="ALFWorld games", unit="game", disable=not enabled)
