"""The evaluation harness: play N episodes of a named split with any agent and summarise them.

Episodes are played in lockstep batches by `LocalRolloutEngine` with greedy
decisions (label-head agents take the most likely label, prompted models
decode greedily, the reflector decodes greedily by default), and the label
shuffle is seeded, so an evaluation is reproducible. When the agent's play
is deterministic (`SeededAgent.deterministic`) and the environment names its start
states (`TextEnv.start_key`), a start state that several episodes share is
played once and its episode copied to the others (with their own seed and
options): the same files as playing each, in less time.

Splits:

* **Seeded environments** (taxi, corridor): split ``test`` is the episode
  seeds ``SPLIT_SEED_OFFSETS["test"] + k`` for k = 0..N-1 (``train`` and
  ``validation`` likewise). Training never uses them: gen-data draws its
  seeds from its own split's range (default train, 0 + seed + episode), and
  online RL trains on [0, validation offset) and validates from the
  validation offset on. DangerousTaxi has only a few hundred distinct start
  states, so a held-out seed is a held-out *draw*, not necessarily an unseen
  map (the paper evaluates on 100 random maps in the same way).
* **Exact evaluation**: where an environment lists the start states of a
  level (`TextEnv.start_states`; DangerousTaxi: 100 at dropoff, 300 at pickup
  and full), ``episodes="all"`` plays each once, selected by reset options
  (the default when there are at most `EXACT_LIMIT`). With greedy decisions
  every start state has one outcome, so the success rate is the agent's rate
  on the level, with no sampling interval (`summarize_played`); 100 seeds of
  dropoff hold only about 64 distinct starts, some of them several times.
* **Task environments**: AutoExplore ``test`` is its built-in test split
  (repositories never used for training), ALFWorld ``test`` is
  ``valid_unseen`` (room layouts never seen in training; ``valid_seen`` and
  ``train`` are also accepted). Each episode fixes one task with
  ``reset(options={"index": i})``; by default every task of the split at the
  level is played once, with fewer episodes the tasks are spread evenly over
  the list, with more they repeat. An environment's registration names its
  splits (`EnvEntry.splits`).

Metrics (`reflectrl.evaluation.summary`): success with a 95% Wilson interval
(none for an exact evaluation: its rate is the level's own), mean return,
mean steps, invalid-action rate, and the same per curriculum level / depth /
question kind / task type. `EvalResult.write` stores
``eval.json``, ``eval.md`` and ``episodes.jsonl`` (every step's state,
reflection, menu with the agent's probabilities and action, for inspection:
`reflectrl view` renders it as a page); `annotate` renders a few episodes.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from reflectrl.datagen.config import SPLIT_SEED_OFFSETS
from reflectrl.envs import lookup, make_env
from reflectrl.envs.base import TextEnv
from reflectrl.evaluation.summary import summarize
from reflectrl.evaluation.tables import group_table, summary_table
from reflectrl.rollout.episode import Episode, EpisodeRequest

DEFAULT_EPISODES = 50
"""Episodes of a seeded environment that does not list its start states, when none are asked for."""
ALL = "all"
"""`EvalConfig.episodes` for every task or start state, each once."""
EXACT_LIMIT = 1000
"""Most start states an evaluation without an episode count plays (each once) instead of sampling seeds."""
RESULT_FILE = "eval.json"
TABLE_FILE = "eval.md"
EPISODES_FILE = "episodes.jsonl"


@dataclass
class EvalConfig:
    """Which episodes an evaluation plays."""

    env: str
    """Environment short name."""
    split: str = "test"
    """Seeded environments: train, validation or test; task environments: a name of their `EnvEntry.splits`."""
    episodes: int | str | None = None
    """Episodes to play; ``"all"``: every task of a task split, or every start state where the environment lists
    them (`TextEnv.start_states`); None: ``"all"`` for a task split or at most `EXACT_LIMIT` start states,
    `DEFAULT_EPISODES` seeds otherwise."""
    level: str | None = None
    """Curriculum level (default: the environment's hardest)."""
    horizon: int | None = None
    """Episode step limit (default: the environment's)."""
    batch_size: int = 16
    """Episodes stepped in lockstep (one model call per step for all of them)."""
    seed: int = 0
    """Seed of the label shuffle and of the random player (task environments: also added to episode seeds)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra environment keywords (not level, horizon, max_actions or split)."""

    def check(self) -> None:
        """Raise ValueError for settings that cannot work."""
        if isinstance(self.episodes, str) and self.episodes != ALL:
            raise ValueError(f"episodes must be a number or {ALL!r}, not {self.episodes!r}")
        if isinstance(self.episodes, int) and self.episodes < 1:
            raise ValueError("episodes must be >= 1")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError("horizon must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        reserved = sorted({"level", "horizon", "max_actions", "split"} & set(self.env_kwargs))
        if reserved:
            raise ValueError(f"set {', '.join(reserved)} with their own options, not as environment keywords")


@dataclass
class EvalPlan:
    """The episodes of an evaluation, ready for the rollout engine."""

    env: str
    level: str
    env_kwargs: dict[str, Any]
    requests: list[EpisodeRequest]
    description: str
    """Which seeds or tasks, in words (for reports)."""
    exact: bool = False
    """Every start state of the level, each once: the agent's rate on the level itself, not a sample's."""


def plan_episodes(config: EvalConfig) -> EvalPlan:
    """Resolve the split into episode requests (see the module docstring)."""
    config.check()
    entry = lookup(config.env)
    levels = entry.env_class().levels
    level = config.level if config.level is not None else levels[-1]
    if level not in levels:
        raise ValueError(f"unknown level {level!r} for {entry.name}; choose from {', '.join(levels)}")
    kwargs = dict(config.env_kwargs)
    if config.horizon is not None:
        kwargs["horizon"] = config.horizon
    names = entry.splits
    if names:
        if config.split not in names:
            raise ValueError(f"unknown split {config.split!r} for {entry.name}; choose from {', '.join(names)}")
        kwargs["split"] = names[config.split]
        count = _task_count(make_env(entry.name, level=level, **kwargs))
        if count == 0:
            raise ValueError(f"{entry.name} has no {kwargs['split']} tasks at level {level}")
        n = config.episodes if isinstance(config.episodes, int) else count
        indices = [k * count // n for k in range(n)] if n <= count else [k % count for k in range(n)]
        requests = [
            EpisodeRequest(config.seed + k, level, k, {"index": int(i)}) for k, i in enumerate(indices)
        ]
        what = "each of" if n == count else (f"{n} tasks spread over" if n < count else f"{n} episodes cycling over")
        description = f"{what} the {count} tasks of split {kwargs['split']!r} at level {level}"
        return EvalPlan(entry.name, level, kwargs, requests, description)
    if config.split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown split {config.split!r} for {entry.name}; choose from {', '.join(SPLIT_SEED_OFFSETS)}")
    start = SPLIT_SEED_OFFSETS[config.split]
    if not isinstance(config.episodes, int):
        states = make_env(entry.name, level=level, **kwargs).start_states(level)
        if states is not None and (config.episodes == ALL or len(states) <= EXACT_LIMIT):
            requests = [EpisodeRequest(start + k, level, k, options) for k, options in enumerate(states)]
            description = f"every one of the {len(states)} start states at level {level}, each played once"
            return EvalPlan(entry.name, level, kwargs, requests, description, exact=True)
        if config.episodes == ALL:
            raise ValueError(f"{entry.name} does not list its start states at level {level}: give a number of episodes")
    n = config.episodes if isinstance(config.episodes, int) else DEFAULT_EPISODES
    requests = [EpisodeRequest(start + k, level, k) for k in range(n)]
    description = f"seeds {start}..{start + n - 1} (the first {n} of the {config.split} split) at level {level}"
    return EvalPlan(entry.name, level, kwargs, requests, description)


def _task_count(env) -> int:
    """Tasks that `reset(options={"index": i})` chooses from (AutoExplore and wrapped environments: num_tasks, ALFWorld: games)."""
    if hasattr(env, "num_tasks"):
        return int(env.num_tasks)
    return len(env.games)


@dataclass
class EvalResult:
    """What an evaluation produced."""

    config: EvalConfig
    agent: str
    """Description of the agent."""
    plan: str
    """Which seeds or tasks were played (`EvalPlan.description`)."""
    summary: dict[str, Any]
    episodes: list[Episode]
    seconds: float
    timings: dict[str, float]
    """Seconds in 'reflect', 'decide' and 'environment'."""

    @cached_property
    def diagnostics(self) -> dict[str, Any] | None:
        """The reflection diagnostics of a reflective agent's judged steps (`reflection_diagnostics`), else None;
        computed once (eval.json, eval.md and the console all show them)."""
        from reflectrl.evaluation.reflection_diagnostics import reflection_diagnostics

        return reflection_diagnostics(self.episodes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result without the step-by-step records (those go to episodes.jsonl)."""
        return {
            "env": self.config.env,
            "split": self.config.split,
            "agent": self.agent,
            "episodes_played": self.plan,
            "summary": self.summary,
            "reflection_diagnostics": self.diagnostics,
            "seconds": round(self.seconds, 2),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
            "config": asdict(self.config),
            "episodes": [_episode_row(e) for e in self.episodes],
        }

    def markdown(self) -> str:
        """A markdown table of the result (and of its groups, if any)."""
        rows = [(self.agent, self.summary)]
        exact = (
            " With greedy decisions each start state has one outcome, so the rate is exact, with no sampling interval."
            if self.summary.get("exact") else ""
        )
        parts = [f"Evaluation on {self.config.env}: {self.plan}.{exact}", "", summary_table(rows, "agent")]
        groups = group_table(rows, "agent")
        if groups:
            parts += ["", "By group:", "", groups]
        diagnostics = self.diagnostics
        if diagnostics:
            from reflectrl.evaluation.reflection_diagnostics import diagnostics_table

            parts += ["", "Reflections, judged against the oracle at every step:", "", diagnostics_table([(self.agent, diagnostics)])]
        return "\n".join(parts) + "\n"

    def write(self, folder: str | Path) -> Path:
        """Write eval.json, eval.md and episodes.jsonl into `folder`; returns the folder."""
        from reflectrl.models.atomic import atomic_write_bytes

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / RESULT_FILE, json.dumps(self.to_dict(), indent=2, default=str).encode("utf-8"))
        atomic_write_bytes(folder / TABLE_FILE, self.markdown().encode("utf-8"))
        lines = "".join(json.dumps(episode_record(e), ensure_ascii=False, default=str) + "\n" for e in self.episodes)
        atomic_write_bytes(folder / EPISODES_FILE, lines.encode("utf-8"))
        return folder


def evaluate(
    agent, config: EvalConfig, *, max_actions: int | None = None, description: str = "agent", progress: bool = False,
    judge: bool = True, on_progress: Callable[[int, int, int], None] | None = None, play_repeats: bool = False,
) -> EvalResult:
    """Play the episodes of `config` with `agent` (greedy) and summarise them.

    `max_actions` is the agent's label count (longer menus are paged by the
    environment); `description` names the agent in the result. `judge`: a label-head agent's
    every decision is judged against the oracle (`reflection_diagnostics.StepJudge`; the
    environment's oracle runs once per step, which nothing the agent sees depends on).
    `progress` shows a bar; `on_progress(done, planned, successes)` is called before the first
    episode and after each one (e.g. for a display of the caller's own). `play_repeats`: play every
    episode, also where a deterministic agent repeats a start state (see the module docstring).
    """
    import torch
    from tqdm.auto import tqdm

    from reflectrl.rollout.local import LocalRolloutEngine

    plan = plan_episodes(config)
    kwargs = dict(plan.env_kwargs)
    if max_actions is not None:
        kwargs["max_actions"] = int(max_actions)
    played, source = (plan.requests, None) if play_repeats else _distinct_starts(plan, kwargs, agent)
    engine = LocalRolloutEngine(plan.env, agent, config.batch_size, kwargs)
    if judge and hasattr(agent, "policy"):
        from reflectrl.evaluation.reflection_diagnostics import StepJudge

        engine.judge = StepJudge(plan.env)
    bar = tqdm(total=len(plan.requests), desc=f"eval {plan.env}", unit="episode", disable=not progress, dynamic_ncols=True)
    wins = [0, 0]
    if on_progress is not None:
        on_progress(0, len(plan.requests), 0)

    def finished(episode: Episode) -> None:
        wins[0] += int(episode.success)
        wins[1] += 1
        bar.set_postfix({"success": f"{wins[0]}/{wins[1]}"}, refresh=False)
        bar.update(1)
        if on_progress is not None:
            on_progress(wins[1], len(plan.requests), wins[0])

    engine.on_episode_end = finished
    start = time.perf_counter()
    try:
        with torch.no_grad():
            batch = engine.collect(played, greedy=True, label_seed=config.seed)
        episodes = batch.episodes
        if source is not None:
            episodes = [_as_requested(episodes[i], request) for i, request in zip(source, plan.requests)]
            seen: set[int] = set()
            for i, episode in zip(source, episodes):
                if i in seen:  # a repeat, fanned out from its first play: counted now, like a played one
                    finished(episode)
                seen.add(i)
    finally:
        bar.close()
        engine.close()
    seconds = time.perf_counter() - start
    summary = summarize_played(episodes, plan.exact)
    return EvalResult(config, description, plan.description, summary, episodes, seconds, dict(batch.timings))


def _distinct_starts(plan: EvalPlan, env_kwargs: dict[str, Any], agent) -> tuple[list[EpisodeRequest], list[int] | None]:
    """The requests with a start state of their own, and for each of the plan's requests the index among them of
    the one that plays its start state; (all requests, None) where the agent's play or the environment is not
    deterministic."""
    if not getattr(agent, "deterministic", False) or lookup(plan.env).env_class().start_key is TextEnv.start_key:
        return plan.requests, None
    envs: dict[str, TextEnv] = {}
    first: dict[Any, int] = {}
    distinct, source = [], []
    try:
        for request in plan.requests:
            if request.level not in envs:
                envs[request.level] = make_env(plan.env, level=request.level, **env_kwargs)
            env = envs[request.level]
            env.reset(seed=int(request.seed), options=dict(request.options) if request.options is not None else None)
            key = env.start_key()
            if key is None:
                return plan.requests, None
            if key not in first:
                first[key] = len(distinct)
                distinct.append(request)
            source.append(first[key])
    finally:
        for env in envs.values():
            env.close()
    return (distinct, source) if len(distinct) < len(plan.requests) else (plan.requests, None)


def _as_requested(episode: Episode, request: EpisodeRequest) -> Episode:
    """A copy of `episode`, played from the same start state, as the episode `request` asked for."""
    copied = copy.deepcopy(episode)
    copied.seed, copied.group = int(request.seed), int(request.group)
    copied.options = dict(request.options) if request.options is not None else None
    return copied


def summarize_played(episodes: Sequence[Episode], exact: bool) -> dict[str, Any]:
    """`summarize` of `episodes`; `exact`: they played every start state once (`EvalPlan.exact`).

    An exact summary's rates are not estimates: it says ``"exact": true`` (tables print that instead of an
    interval), and its interval is the rate itself, so whatever reads the bounds needs no special case.
    """
    summary = summarize(episodes)
    if exact:
        for part in (summary, *summary.get("groups", {}).values()):
            part["ci_low"] = part["ci_high"] = part["success"]
            part["exact"] = True
    return summary


def _episode_row(episode: Episode) -> dict[str, Any]:
    return {
        "seed": episode.seed,
        "level": episode.level,
        "options": episode.options,
        "tags": episode.tags,
        "success": episode.success,
        "return": episode.total_return,
        "steps": episode.length,
        "truncated": episode.truncated,
        "invalid_steps": sum(1 for s in episode.steps if s.invalid),
    }


def _observation(episode: Episode, state_key: str) -> str:
    prefix = episode.task + "\n"
    return state_key[len(prefix):] if episode.task and state_key.startswith(prefix) else state_key


def episode_record(episode: Episode) -> dict[str, Any]:
    """An episode as JSON for inspection: its outcome and, per step, state, reflection, menu (with the agent's
    probabilities, where it has them), action, reward and the judge's verdict."""
    record = _episode_row(episode)
    record["task"] = episode.task
    record["trajectory"] = [
        {
            "observation": _observation(episode, step.state_key),
            "reflection": step.reflection,
            "action": step.action_text,
            "answer": step.answer,
            "reward": step.reward,
            "invalid": step.invalid,
            **_menu_fields(step),
            **({"judged": step.judged} if step.judged is not None else {}),
        }
        for step in episode.steps
    ]
    return record


def _menu_fields(step) -> dict[str, Any]:
    """The menu, its labels and the agent's probabilities of a step's record, where the step has them."""
    fields: dict[str, Any] = {}
    if step.menu is not None:
        fields["menu"] = step.menu
    if step.labels:
        fields["labels"] = step.labels
    if step.probs is not None:
        # 4 decimals keep the file small and still show what a viewer draws (0.01% steps).
        fields["probs"] = [round(p, 4) for p in step.probs]
    return fields


def annotate(episodes: Sequence[Episode], count: int, max_chars: int = 600) -> str:
    """`count` episodes step by step (state, reflection, action), failures first: they show what goes wrong."""
    chosen = sorted(episodes, key=lambda e: e.success)[: max(0, count)]
    blocks = []
    for episode in chosen:
        outcome = "success" if episode.success else ("truncated" if episode.truncated else "failure")
        tags = " ".join(f"{k}={v}" for k, v in episode.tags.items())
        lines = [
            f"=== seed {episode.seed} ({outcome}, return {episode.total_return:+.1f}, {episode.length} steps){' ' + tags if tags else ''}",
            f"Task: {_clip(episode.task, max_chars)}",
        ]
        for number, step in enumerate(episode.steps, 1):
            lines.append(f"--- step {number}")
            lines.append("state: " + _clip(_observation(episode, step.state_key), max_chars))
            if step.reflection is not None:
                lines.append("reflection: " + _clip(step.reflection, max_chars))
            if step.action_text is not None:
                lines.append(f"action: {step.action_text}  (reward {step.reward:+.1f})")
            else:
                answer = f" (answer {step.answer!r})" if step.answer is not None else ""
                lines.append(f"action: invalid{answer}  (reward {step.reward:+.1f})")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 15] + " [... cut ...]"
