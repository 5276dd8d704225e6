"""`generate`: expert rollouts + negative examples -> teacher reflections -> validated JSONL files.

Output folder layout::

    reflector.jsonl, policy.jsonl, plain.jsonl          all rows
    reflector_positive.jsonl, policy_positive.jsonl     without negative examples
    stats.json                                          counts, token lengths, distributions
    teacher_cache.sqlite                                teacher answers (default cache location)
    .progress/config.json, .progress/episodes.jsonl     resume state (see `journal`)

Episode i is fully determined by the configuration and i (its seed, random
actions, negatives and label shuffles), so a killed run that is started again
continues where it stopped and produces the same files as an uninterrupted
run, and asking for more episodes later extends the same dataset.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from reflectrl.datagen.config import SPLIT_SEED_OFFSETS, GenConfig
from reflectrl.datagen.episodes import StepSample, expert_episode, negative_samples
from reflectrl.datagen.journal import EpisodeJournal
from reflectrl.datagen.rows import ROLES, build_rows
from reflectrl.datagen.stats import dataset_stats
from reflectrl.datagen.validate import validate
from reflectrl.envs import lookup, make_env
from reflectrl.envs.base import TextEnv
from reflectrl.protocol import LabelSet, clean_reflection
from reflectrl.run_settings import ConfigMismatch, as_saved, changed_settings, read_saved
from reflectrl.storage import atomic_write_bytes, atomic_write_json
from reflectrl.teachers.base import ReflectionRequest, Teacher
from reflectrl.teachers.cache import CachedTeacher, TeacherCache
from reflectrl.teachers.explainers import explainer_for

PROGRESS_DIR = ".progress"
CACHE_FILE = "teacher_cache.sqlite"
POSITIVE_ROLES = ("reflector", "policy")
OUTPUT_FILES = tuple(f"{r}.jsonl" for r in ROLES) + tuple(f"{r}_positive.jsonl" for r in POSITIVE_ROLES)


@dataclass
class GenResult:
    """What a `generate` call did."""

    out: Path
    stats: dict[str, Any]
    episodes_generated: int
    """Episodes rolled out in this call (the rest came from the journal)."""
    teacher_calls: int
    """Requests that reached the teacher in this call (0 when everything was cached)."""
    cache_hits: int


def _level_of(config: GenConfig) -> str:
    cls = lookup(config.env).env_class()
    return config.level if config.level is not None else cls.levels[-1]


def env_factory(config: GenConfig, label_set: LabelSet) -> Callable[[], TextEnv]:
    """Builds the configured environment (menus never longer than the label set)."""
    kwargs = {"level": _level_of(config), "max_actions": len(label_set), **config.env_kwargs}
    if config.horizon is not None:
        kwargs["horizon"] = config.horizon
    return lambda: make_env(config.env, **kwargs)


def _prepare_folder(config: GenConfig, overwrite: bool) -> EpisodeJournal:
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigMismatch(f"{out} exists and is not a folder")
    progress = out / PROGRESS_DIR
    saved = progress / "config.json"
    identity = _saved_form(config)
    if saved.exists():
        try:
            previous = _with_defaults(read_saved(saved), config)
        except ConfigMismatch:  # not settings at all: as foreign to this run as other settings
            previous = None
        if not isinstance(previous, dict) or changed_settings(previous, identity):
            if not overwrite:
                raise ConfigMismatch(
                    f"{out} holds data generated with other settings ({saved}); use another --out or --overwrite"
                )
            shutil.rmtree(progress)
    elif overwrite and progress.exists():
        shutil.rmtree(progress)
    progress.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, identity)
    return EpisodeJournal(progress / "episodes.jsonl")


def _first_env(build_env: Callable[[], TextEnv], name: str) -> TextEnv:
    try:
        return build_env()
    except TypeError as err:  # an argument the environment's constructor does not take
        raise ValueError(f"the {name} environment refuses its arguments: {err}") from err


def _saved_form(config: GenConfig) -> dict[str, Any]:
    """`config.identity()` as it reads back from config.json (tuples become lists)."""
    return as_saved(config.identity())


def _with_defaults(previous: Any, config: GenConfig) -> Any:
    """A saved identity with the defaults of settings added since it was written, so older folders still resume."""
    if not isinstance(previous, dict):
        return previous
    try:
        return _saved_form(GenConfig(**{**previous, "out": config.out, "episodes": config.episodes}))
    except TypeError:  # a setting this version does not know: not the same run
        return previous


def _misleading_policy_rows(
    samples: list[StepSample], teacher: Teacher, config: GenConfig, env: str, rng: np.random.Generator, **row_args: Any
) -> list[dict[str, Any]]:
    """Policy rows whose reflection argues for a wrong admissible action, labelled with the oracle's action.

    The teacher gets the wrong action as its hint, so the reflection reads like a real one that
    is mistaken, as a trained reflector's sometimes is; the state text still shows what is
    right, so the row teaches the policy to check a reflection against the state. Only policy
    rows are written: reflector rows would teach the reflector the mistake.
    """
    chosen: list[tuple[StepSample, str]] = []
    for sample in samples:
        wrong = [a for a in sample.state.actions if a != sample.best_action]
        if wrong and rng.random() < config.misleading:
            chosen.append((sample, wrong[int(rng.integers(len(wrong)))]))
    requests = [ReflectionRequest(env=env, state=s.state, best_action=hint, last=s.last, facts=s.facts) for s, hint in chosen]
    reflections = [clean_reflection(text) for text in teacher.reflect(requests)] if requests else []
    kept = [(pair, text) for pair, text in zip(chosen, reflections) if text.strip()]
    menu_rng = rng if config.shuffle_labels else None
    rows = build_rows(
        [s for (s, _), _ in kept], [text for _, text in kept], env=env, rng=menu_rng, roles=("policy",), **row_args
    )["policy"]
    for row, ((_, hint), _) in zip(rows, kept, strict=True):
        row["misleading_hint"] = hint
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_bytes(path, data.encode("utf-8"))


def generate(
    config: GenConfig,
    *,
    teacher: Teacher | None = None,
    cache_path: str | Path | None = None,
    tokenizer=None,
    overwrite: bool = False,
    show_progress: bool = True,
    teacher_options: dict[str, Any] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> GenResult:
    """Generate (or finish generating) the dataset described by `config`.

    `show_progress` shows a bar; `on_progress(done, planned)` is called with the episodes done (those of an
    interrupted run included) before generating and after each episode.

    `teacher` defaults to `make_teacher(config.teacher, **teacher_options)`,
    built only when some episode still needs reflections; it is put behind the
    answer cache at `cache_path` (default: ``OUT/teacher_cache.sqlite``)
    unless it already is a `CachedTeacher`. `tokenizer` defaults to
    `load_tokenizer(config.model)`.
    """
    from reflectrl.models.loading import load_tokenizer
    from reflectrl.models.tokens import encode_prompts, token_counter
    from reflectrl.teachers.registry import make_teacher

    config.check()
    started = time.monotonic()
    entry = lookup(config.env)
    level = _level_of(config)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model)
    label_set = LabelSet.for_tokenizer(tokenizer)
    # Built before the folder is touched: a level or argument the environment refuses must not leave
    # a saved config behind that the corrected command would then be refused against.
    env = _first_env(env_factory(config, label_set), entry.name)
    journal = _prepare_folder(config, overwrite)
    done = journal.load()
    out = Path(config.out)
    count = token_counter(tokenizer)
    budget = config.max_prompt_tokens
    if budget is None and 0 < getattr(tokenizer, "model_max_length", 0) < 10**7:
        budget = int(tokenizer.model_max_length)
    explainer = explainer_for(entry.name)

    todo = [i for i in range(config.episodes) if i not in done]
    cached: CachedTeacher | None = None
    if todo:
        if teacher is None:
            teacher = make_teacher(config.teacher, **{"seed": config.seed, **(teacher_options or {})})
        if not isinstance(teacher, CachedTeacher):
            teacher = CachedTeacher(teacher, TeacherCache(cache_path or out / CACHE_FILE))
        cached = teacher
        split_index = list(SPLIT_SEED_OFFSETS).index(config.split)
        if on_progress is not None:
            on_progress(len(done), config.episodes)
        try:
            for i in tqdm(todo, desc=f"gen-data {entry.name}", unit="episode", disable=not show_progress):
                seed = config.seed_of(i)
                rng = np.random.default_rng([config.seed, split_index, i])
                label_rng = np.random.default_rng([config.seed, split_index, i, 1]) if config.shuffle_labels else None
                samples, summary = expert_episode(env, i, seed, rng, config.random_prob, explainer, config.decoy_prob)
                negatives = negative_samples(env, samples, config.negatives, rng, explainer)
                summary.negatives = len(negatives)
                samples += negatives
                requests = [
                    ReflectionRequest(env=entry.name, state=s.state, best_action=s.best_action, last=s.last, facts=s.facts)
                    for s in samples
                ]
                reflections = [clean_reflection(text) for text in teacher.reflect(requests)]
                row_args = dict(
                    level=level, split=config.split, label_set=label_set, count=count, budget=budget, label_after=config.label_after
                )
                rows = build_rows(samples, reflections, env=entry.name, rng=label_rng, **row_args)
                if config.misleading > 0:
                    # Its own random stream, so the other rows are the same as without misleading rows.
                    misleading_rng = np.random.default_rng([config.seed, split_index, i, 2])
                    rows["policy"] += _misleading_policy_rows(samples, teacher, config, entry.name, misleading_rng, **row_args)
                validate(rows, lambda: env, explainer)  # the episode is over, so its env can replay
                record = {"episode": i, "seed": seed, "summary": asdict(summary), "rows": rows}
                journal.append(record)
                done[i] = record
                if on_progress is not None:
                    on_progress(len(done), config.episodes)
        finally:
            teacher.close()

    episodes = [done[i] for i in range(config.episodes)]
    files: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    for record in episodes:
        for role in ROLES:
            files[role] += record["rows"][role]
    for role in POSITIVE_ROLES:
        files[f"{role}_positive"] = [r for r in files[role] if not r["negative"]]
    for name, rows in files.items():
        _write_jsonl(out / f"{name}.jsonl", rows)
    stats = dataset_stats(files, episodes, lambda texts: encode_prompts(tokenizer, texts))
    stats.update(
        {
            "env": entry.name,
            "level": level,
            "teacher": config.teacher,
            "config": {k: v for k, v in asdict(config).items() if k != "out"},
            "teacher_calls_this_run": cached.calls if cached else 0,
            "cache_hits_this_run": cached.hits if cached else 0,
            "episodes_generated_this_run": len(todo),
            "seconds_this_run": round(time.monotonic() - started, 1),
        }
    )
    atomic_write_json(out / "stats.json", stats)
    return GenResult(
        out=out,
        stats=stats,
        episodes_generated=len(todo),
        teacher_calls=cached.calls if cached else 0,
        cache_hits=cached.hits if cached else 0,
    )


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of one JSONL file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def validate_dataset(folder: str | Path, tokenizer=None) -> None:
    """Re-validate a generated folder (`InvalidRows` on failure), using the settings saved in it."""
    from reflectrl.models.loading import load_tokenizer

    folder = Path(folder)
    identity = json.loads((folder / PROGRESS_DIR / "config.json").read_text(encoding="utf-8"))
    config = GenConfig(out=str(folder), **identity)
    label_set = LabelSet.for_tokenizer(tokenizer if tokenizer is not None else load_tokenizer(config.model))
    rows = {name[: -len(".jsonl")]: load_rows(folder / name) for name in OUTPUT_FILES}
    validate(rows, env_factory(config, label_set), explainer_for(lookup(config.env).name))
