"""`run_pipeline`: teacher data -> SFT -> RL -> evaluation -> report, stage by stage and resumable.

Stages (one folder each under the run folder; see `stages` for skipping and resuming):

1. ``data``: teacher data on the train split (`reflectrl.datagen.generate`; a
   killed run continues where it stopped);
2. ``sft-reflector``, ``sft-policy``, ``sft-plain``, ``sft-reflector-positive``,
   ``sft-policy-positive``: warm-up SFT of each player, the ``-positive``
   ones without negative examples (`reflectrl.trainers.sft.run_warmup`,
   resuming from its checkpoints);
3. ``rl-reflect`` (Reflect-RL), ``rl-reflect-positive`` (Reflect-RL without
   negative examples) and ``rl-plain`` (RL without reflection): online RL of
   the policy from its SFT adapter with the frozen SFT reflector
   (`reflectrl.trainers.online.OnlineTrainer`, resuming from its checkpoints);
4. ``eval-*``: every setting on the held-out split (`reflectrl.evaluation.harness`):
   the SFT-only players, the three RL runs, the prompted base model, and the
   oracle and random players for reference;
5. ``report.md`` with ``success.png`` and ``learning_curves.png`` in the run
   folder, rewritten at the end of every run, and ``timing.md``.

The ``-positive`` stages (the paper's "no negative examples" ablation) run
only with ``rows="all"`` (``reflectrl pipeline --rows all``).

With ``Preset.dagger`` (a number of episodes), ``dagger-data`` plays the SFT
reflective agent on train-split episodes and labels every state it visits
with the teacher's reflection, ``sft-reflector-dagger`` trains the SFT
reflector a further round on those rows (`reflectrl.datagen.dagger`), and
Reflect-RL trains and is evaluated with that reflector; the row
``eval-sft-reflect-dagger`` (the SFT policy with it) tells the round's share
of Reflect-RL's gain from RL's.

With ``serve_reflector`` (``reflectrl pipeline --serve-reflector llamacpp``)
the RL and evaluation stages ask the frozen SFT reflector through an
inference server that the run starts (`reflectrl.serving`) instead of
generating in-process; the servers' exports and logs are in
``reflector-servers/``. It is not part of the run's settings (a float32
engine writes the same reflections), but the evaluation reflection caches of
served reflectors are kept apart from the in-process ones.

``report_to`` (``reflectrl pipeline --report-to``) names the experiment
trackers of the SFT and RL stages (`reflectrl.trainers.trackers`), each
stage a tracker run named ``FOLDER/STAGE``; it is not part of the run's
settings either (the trackers only show what the stages compute).
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflectrl.envs import lookup
from reflectrl.evaluation.viewer import PAGE_FILE, write_page
from reflectrl.pipeline.console import LOG_FILE, StageLines
from reflectrl.pipeline.presets import Preset, saved_defaults
from reflectrl.pipeline.report import ComparisonRow, read_curve, write_report, write_timing
from reflectrl.pipeline.stages import Stage, StageRunner
from reflectrl.trainers.rl_config import TRAINED_REFLECTOR
from reflectrl.trainers.trackers import DEFAULT_REPORT_TO

if TYPE_CHECKING:
    from reflectrl.trainers.online import RLConfig

SFT_JOBS: tuple[tuple[str, str, str], ...] = (
    ("sft-reflector", "reflector", "reflector.jsonl"),
    ("sft-policy", "policy", "policy.jsonl"),
    ("sft-plain", "plain", "plain.jsonl"),
    ("sft-reflector-positive", "reflector", "reflector_positive.jsonl"),
    ("sft-policy-positive", "policy", "policy_positive.jsonl"),
)
"""(stage, role, data file) of every SFT run."""
RL_JOBS: tuple[tuple[str, str, str | None, str], ...] = (
    ("rl-reflect", "sft-policy", "sft-reflector", "Reflect-RL"),
    ("rl-reflect-positive", "sft-policy-positive", "sft-reflector-positive", "Reflect-RL, no negative examples"),
    ("rl-plain", "sft-plain", None, "SFT + RL, no reflection"),
)
"""(stage, SFT policy stage, SFT reflector stage or None, curve label) of every RL run."""
RL_FINAL = "final"
RL_RUN = "run"
REFLECTION_CACHE = "reflection-cache"
"""Folder of the evaluation reflection caches (one JSON-lines file per reflector)."""
REFLECTOR_SERVERS = "reflector-servers"
"""Folder of the managed reflector servers (export and log per reflector) with ``serve_reflector``."""


@dataclass(frozen=True)
class Setting:
    """One row of the comparison."""

    key: str
    """Evaluation stage name is ``eval-<key>``."""
    label: str
    """Row label in the report (``{model}`` is replaced by the model spec)."""
    kind: str
    """Agent kind (see `reflectrl.evaluation.agent_loader`)."""
    policy: str | None = None
    """Policy adapter, relative to the run folder."""
    reflector: str | None = None
    """Reflector adapter, relative to the run folder."""
    reference: bool = False
    """A scripted reference player, or a diagnostic row (shown apart from the compared settings)."""
    teacher: bool = False
    """The policy reads the data's teacher, live, instead of a reflector (the ceiling; `reflectrl.teachers.live`)."""


SETTINGS: tuple[Setting, ...] = (
    Setting("sft-plain", "SFT only, no reflection", "plain", "sft-plain"),
    Setting("sft-reflect", "SFT only, with reflection", "reflect", "sft-policy", "sft-reflector"),
    Setting("sft-reflect-dagger", "SFT only, with reflection, reflector after its DAgger round", "reflect", "sft-policy", "sft-reflector-dagger"),
    Setting("rl-plain", "SFT + RL, no reflection", "plain", f"rl-plain/{RL_FINAL}"),
    Setting("rl-reflect-positive", "Reflect-RL, no negative examples", "reflect", f"rl-reflect-positive/{RL_FINAL}", "sft-reflector-positive"),
    Setting("rl-reflect", "Reflect-RL", "reflect", f"rl-reflect/{RL_FINAL}", "sft-reflector"),
    Setting("sft-ceiling", "SFT reflective policy reading the teacher's reflections (ceiling)", "reflect", "sft-policy", reference=True, teacher=True),
    Setting("rl-ceiling", "Reflect-RL policy reading the teacher's reflections (ceiling)", "reflect", f"rl-reflect/{RL_FINAL}", reference=True, teacher=True),
    Setting("prompted", "{model}, prompted", "prompted"),
    Setting("oracle", "Oracle (upper bound)", "oracle", reference=True),
    Setting("random", "Random (chance level)", "random", reference=True),
)
"""The report's rows, in the paper's order, then the reference players."""


@dataclass
class PipelineResult:
    """What a pipeline run produced."""

    out: Path
    report: Path
    rows: list[ComparisonRow]
    records: dict[str, dict[str, Any]]
    """DONE record of every stage."""
    verdict: str
    """The report's first sentence."""


ROWS = ("core", "all")
"""Which rows a run makes: ``core`` (prompted, SFT with and without reflection, Reflect-RL, RL without
reflection, oracle, random) or ``all`` (adds the paper's ablation: Reflect-RL without negative examples)."""
ABLATION_STAGES = frozenset({"sft-reflector-positive", "sft-policy-positive", "rl-reflect-positive", "eval-rl-reflect-positive"})
"""Stages of the rows that only ``--rows all`` makes."""
DAGGER_DATA = "dagger-data"
DAGGER_REFLECTOR = "sft-reflector-dagger"
DAGGER_STAGES = frozenset({DAGGER_DATA, DAGGER_REFLECTOR, "eval-sft-reflect-dagger"})
"""Stages that only a preset with a DAgger round (`Preset.dagger`) makes."""


def stage_names(rows: str = "all", dagger: bool = False) -> list[str]:
    """Every stage `rows` makes, in the order they run (with `dagger`: a preset with a DAgger round)."""
    if rows not in ROWS:
        raise ValueError(f"unknown rows {rows!r}; choose from {', '.join(ROWS)}")
    names = (
        ["data"] + [job[0] for job in SFT_JOBS] + [DAGGER_DATA, DAGGER_REFLECTOR] + [job[0] for job in RL_JOBS]
        + [f"eval-{s.key}" for s in SETTINGS]
    )
    return [n for n in names if (rows == "all" or n not in ABLATION_STAGES) and (dagger or n not in DAGGER_STAGES)]


def evaluated_settings(rows: str = "all", dagger: bool = False) -> list[Setting]:
    """The rows of the comparison that `stage_names(rows, dagger)` evaluates, in `SETTINGS` order."""
    names = set(stage_names(rows, dagger))
    return [s for s in SETTINGS if f"eval-{s.key}" in names]


def has_dagger(preset: Preset) -> bool:
    """Whether `preset` trains the reflector a DAgger round (`Preset.dagger`)."""
    return preset.dagger.episodes > 0


def trained_reflector(preset: Preset, stage: str) -> str:
    """The reflector stage an RL run and its evaluation use: the DAgger round's where the preset has one."""
    return DAGGER_REFLECTOR if stage == "sft-reflector" and has_dagger(preset) else stage


def with_trained_reflector(setting: Setting, preset: Preset) -> Setting:
    """`setting` with the reflector its RL run trained with (`trained_reflector`), or the one it trained
    (`RLConfig.train_reflector`: saved beside the RL policy); other settings as they are."""
    if setting.key.startswith("rl-reflect") and setting.reflector and preset.rl.train_reflector:
        return replace(setting, reflector=f"{setting.policy}/{TRAINED_REFLECTOR}")
    if setting.key == "rl-reflect" and setting.reflector:
        return replace(setting, reflector=trained_reflector(preset, setting.reflector))
    return setting


def run_pipeline(
    env: str,
    preset: Preset,
    out: str | os.PathLike,
    *,
    command: str | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    rows: str = "core",
    serve_reflector: str | None = None,
    server_options: dict[str, Any] | None = None,
    verbose: bool = False,
    report_to: tuple[str, ...] = DEFAULT_REPORT_TO,
) -> PipelineResult:
    """Run (or finish) the pipeline for `env` with `preset` in the folder `out`; returns the report's path and rows.

    `command` is recorded in the report as the way to reproduce it. `rows` (see `ROWS`) is not part of
    the run's settings: every stage is the same either way, so ``all`` later adds the ablation's stages.
    `serve_reflector` names an engine (`reflectrl.serving.engines.ENGINES`) that serves the reflectors;
    `server_options` are `start_reflector_server` keywords (threads, engine_python_path, ...). `report_to`
    names the trackers of the SFT and RL stages (not part of the run's settings either).

    `log` gets one line per stage (`reflectrl.pipeline.console`); with `progress` the running stage's line is
    drawn live on a terminal. Third-party progress bars and known warnings are kept off the console unless
    `verbose`, which also logs each stage's details (RL iterations, SFT losses); all of it is appended to
    the run folder's log file (`LOG_FILE`).
    """
    from reflectrl.run_log import run_log

    lines = StageLines(log, live=progress, verbose=verbose)
    with run_log(Path(out) / LOG_FILE, verbose):
        if serve_reflector is None:
            return _run_stages(env, preset, out, command, lines, rows, _local_reflector, report_to)
        from reflectrl.serving.reflector_pool import ReflectorServers

        with ReflectorServers(serve_reflector, Path(out) / REFLECTOR_SERVERS, **(server_options or {})) as servers:
            return _run_stages(env, preset, out, command, lines, rows, servers.spec_for, report_to)


def _local_reflector(adapter: Path) -> str:
    return str(adapter)


def _run_stages(
    env: str, preset: Preset, out: str | os.PathLike, command: str | None, lines: StageLines, rows: str,
    reflector_for: Callable[[Path], str], report_to: tuple[str, ...],
) -> PipelineResult:
    wanted = set(stage_names(rows, has_dagger(preset)))
    entry = lookup(env)
    out = Path(out)
    if preset.threads:
        import torch

        torch.set_num_threads(int(preset.threads))
    runner = StageRunner(out, {"env": entry.name, "preset": saved_settings(entry.name, preset)}, defaults={"preset": saved_defaults()}, lines=lines)
    lines.note(f"{command or 'run_pipeline'} in {out}")
    started = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    records["data"] = runner.run(Stage("data", partial(_data_stage, entry.name, preset, lines)))
    for name, role, data_file in SFT_JOBS:
        if name in wanted:
            stage = partial(_sft_stage, preset, role, out / "data" / data_file, lines, report_to=report_to)
            records[name] = runner.run(Stage(name, stage))
    if DAGGER_DATA in wanted:
        from reflectrl.datagen.dagger import ROUND_FILE

        records[DAGGER_DATA] = runner.run(Stage(DAGGER_DATA, partial(_dagger_stage, entry.name, preset, out, lines)))
        stage = partial(
            _sft_stage, preset, "reflector", out / DAGGER_DATA / ROUND_FILE, lines, report_to=report_to,
            changes={"init_adapter": str(out / "sft-reflector"), "max_steps": preset.dagger.steps},
        )
        records[DAGGER_REFLECTOR] = runner.run(Stage(DAGGER_REFLECTOR, stage))
    for name, policy, reflector, _ in RL_JOBS:
        if name in wanted:
            reflector = trained_reflector(preset, reflector) if reflector else None
            stage = partial(
                _rl_stage, entry.name, preset, out / policy, out / reflector if reflector else None, reflector_for, lines, report_to=report_to
            )
            records[name] = runner.run(Stage(name, stage))
    for setting in SETTINGS:
        name = f"eval-{setting.key}"
        if name in wanted:
            stage = partial(_eval_stage, entry.name, preset, with_trained_reflector(setting, preset), out, lines, reflector_for)
            records[name] = runner.run(Stage(name, stage))
    verdict = _verdict(preset, records)
    report = _write_report(entry, preset, out, records, verdict, command, time.perf_counter() - started)
    lines.note(f"{verdict} Report: {report}")
    return PipelineResult(out, report, _rows(preset, records), records, verdict)


def _tracker_run_name(folder: Path) -> str:
    """A stage's name in the trackers: the run folder's name, then the stage's (``pipeline-taxi/rl-reflect``)."""
    return f"{folder.absolute().parent.name}/{folder.name}"


# ------------------------------------------------------------------ stages
def _data_stage(env: str, preset: Preset, lines: StageLines, folder: Path) -> dict[str, Any]:
    from reflectrl.datagen import GenConfig, generate

    config = GenConfig(
        env=env, out=str(folder), teacher=preset.data.teacher, episodes=preset.data.episodes,
        random_prob=preset.data.random_prob, decoy_prob=preset.data.decoy_prob, negatives=preset.data.negatives, misleading=preset.data.misleading,
        split="train", seed=preset.seed,
        level=preset.level, horizon=preset.horizon, env_kwargs=dict(preset.env_kwargs), model=preset.model,
        shuffle_labels=preset.shuffle_labels, label_after=preset.label_after,
    )
    result = generate(config, show_progress=False, on_progress=lambda done, planned: lines.update(done, planned, "episodes"))
    stats = result.stats
    lines.update(
        preset.data.episodes, preset.data.episodes, "episodes",
        f"{sum(stats['rows'].values())} rows, the teacher won {stats['expert']['success_rate']:.0%}",
    )
    return {
        "episodes": preset.data.episodes,
        "rows": stats["rows"],
        "negative_share": stats["negative_share"],
        "expert_success_rate": stats["expert"]["success_rate"],
        "level": stats["level"],
    }


def _sft_stage(
    preset: Preset, role: str, data: Path, lines: StageLines, folder: Path, *, report_to: tuple[str, ...] = DEFAULT_REPORT_TO,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One SFT run with the preset's settings for `role`, and `changes` (a DAgger round's start and steps) over them."""
    from reflectrl.trainers.sft import WarmupConfig, run_warmup, step_callback

    config = WarmupConfig(
        role=role, data=str(data), out=str(folder), model=preset.model, seed=preset.train_seed, threads=preset.threads,
        eval_steps=0, save_total_limit=1, report_to=report_to, run_name=_tracker_run_name(folder),
        # Always "resume": with no checkpoint it starts afresh, after a kill it continues.
        resume=True, **{**preset.sft, **preset.sft_by_role.get(role, {}), **(changes or {})},
    )

    def report(step: int, steps: int, logs: dict[str, float]) -> None:
        if logs:
            lines.detail(f"[{lines.name}] step {step}/{steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        if "loss" in logs:  # the latest logged training loss
            lines.update(step, steps, "steps", f"loss {logs['loss']:.3f}")
        elif "train_loss" in logs and not lines.metric:  # a run shorter than its logging interval: its mean
            lines.update(step, steps, "steps", f"mean loss {logs['train_loss']:.3f}")
        else:
            lines.update(step, steps, "steps")

    metrics = run_warmup(config, show_progress=False, callbacks=[step_callback(report)]).metrics
    if "label_accuracy" in metrics:
        held_out = f"held-out label accuracy {metrics['label_accuracy']:.0%}"
    else:
        held_out = f"held-out loss {metrics['eval_loss']:.3f}" if "eval_loss" in metrics else ""
    lines.update(metrics["global_step"], metrics["max_steps"], "steps", ", ".join(filter(None, (lines.metric, held_out))))
    keys = (
        "role", "global_step", "max_steps", "stopped_by_time_limit", "train_rows", "eval_rows", "eval_loss",
        "label_accuracy", "chance_accuracy", "resumed_from",
    )
    return {k: metrics[k] for k in keys if k in metrics}


def _dagger_stage(env: str, preset: Preset, root: Path, lines: StageLines, folder: Path) -> dict[str, Any]:
    """The DAgger round's rows: the SFT reflective agent's visited states with the teacher's reflections (see
    `reflectrl.datagen.dagger`), mixed with a share of the first round's reflector rows."""
    from reflectrl.datagen.dagger import VisitStats, advice_share, mix_rows, teacher_rows, visited_states, write_round
    from reflectrl.datagen.generate import load_rows
    from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
    from reflectrl.evaluation.harness import EvalConfig, evaluate, plan_episodes
    from reflectrl.models.tokens import token_counter
    from reflectrl.protocol import LabelSet
    from reflectrl.teachers.registry import make_teacher

    spec = AgentSpec(
        kind="reflect", policy=str(root / "sft-policy"), reflector=str(root / "sft-reflector"), reflection_tokens=preset.reflection_tokens,
        seed=preset.train_seed, device=preset.device, env=env,
    )
    config = EvalConfig(
        env=env, split="train", episodes=preset.dagger.episodes, level=preset.level, horizon=preset.horizon,
        batch_size=preset.eval.batch_size, seed=preset.train_seed, env_kwargs=dict(preset.env_kwargs),
    )
    loaded = load_agent(spec)
    try:
        played = evaluate(
            loaded.agent, config, max_actions=loaded.max_actions, description="SFT reflective agent (DAgger round)",
            on_progress=lambda done, planned, wins: lines.update(done, planned, "episodes", f"success {wins}/{done}"),
        )
    finally:
        loaded.close()
    plan = plan_episodes(config)
    kwargs = {**plan.env_kwargs, **({"max_actions": loaded.max_actions} if loaded.max_actions is not None else {})}
    visits = visited_states(env, played.episodes, kwargs)
    tokenizer = loaded.agent.policy.tokenizer
    teacher = make_teacher(preset.data.teacher, seed=preset.seed)
    try:
        visited = teacher_rows(
            env, visits, teacher, level=plan.level, label_set=LabelSet.for_tokenizer(tokenizer), count=token_counter(tokenizer),
        )
    finally:
        teacher.close()
    distinct, agreed = len(visited), sum(row["agreed"] for row in visited)
    if preset.dagger.disagreements_only:
        visited = [row for row in visited if not row["agreed"]]
    first_round = load_rows(root / "data" / "reflector.jsonl")
    mixed = mix_rows(visited, first_round, preset.dagger.first_round_share, preset.train_seed)
    stats = VisitStats(
        episodes=len(played.episodes), success=float(played.summary["success"]), states=sum(e.length for e in played.episodes),
        distinct=distinct,
        agreed=agreed, rows=len(visited), advice_optimal=advice_share(played.episodes), round_rows=len(mixed),
    )
    write_round(folder, visited, mixed, stats)
    lines.update(stats.episodes, stats.episodes, "episodes", f"{stats.rows} visited states, reflection right in {stats.advice_optimal or 0:.0%}")
    return stats.to_dict()


def rl_config(env: str, preset: Preset) -> RLConfig:
    """The RL run settings of `preset` (RLConfig checks them, so a bad preset fails before any model loads)."""
    from dataclasses import replace

    levels = preset.rl.levels or ((preset.level,) if preset.level else ())
    return replace(preset.rl, env=env, levels=levels, horizon=preset.horizon, seed=preset.train_seed)


def saved_settings(env: str, preset: Preset) -> dict[str, Any]:
    """The preset as pipeline.json and the report show it: its RL part is what the RL stages run (`rl_config`).

    `Preset.rl` holds overrides of `RLConfig` whose env, levels, horizon and seed are only
    defaults until `rl_config` fills them in; stored as they are they would name another environment.
    """
    return {**preset.to_dict(), "rl": rl_config(env, preset).to_dict()}


def _rl_stage(
    env: str, preset: Preset, policy: Path, reflector: Path | None, reflector_for: Callable[[Path], str], lines: StageLines,
    folder: Path, *, report_to: tuple[str, ...] = DEFAULT_REPORT_TO,
) -> dict[str, Any]:
    from reflectrl.trainers.recipe import build_rl_run
    from reflectrl.trainers.trackers import RunTrackers

    config = rl_config(env, preset)
    settings = {"preset": preset.name, "policy": str(policy), "reflector": str(reflector) if reflector else None, "config": config.to_dict()}
    name = lines.name

    def report(record: dict[str, Any]) -> None:
        if "train/success" in record:
            seconds = record.get("time/iteration", 0.0)
            lines.detail(
                f"[{name}] iteration {record['iteration']}/{config.iterations}: training success {record['train/success']:.0%}, "
                f"return {record['train/return']:+.2f}, {record['train/length']:.1f} steps per episode ({seconds:.0f} s)"
            )
            lines.update(record["iteration"], config.iterations, "iterations", f"training success {record['train/success']:.0%}")

    run = build_rl_run(
        config, str(policy), reflector_for(reflector) if reflector is not None else None, run_dir=folder / RL_RUN,
        env_kwargs=preset.env_kwargs, max_concurrent=max(1, config.episodes_per_iter), log=report,
        reflector_max_new_tokens=preset.reflection_tokens, device=preset.device,
        trackers=RunTrackers(report_to, folder / RL_RUN, _tracker_run_name(folder), settings),
    )
    trainer = run.trainer
    try:
        resumed = trainer.resume()
        if resumed:
            lines.detail(f"[{name}] resuming after iteration {resumed}")
        lines.update(resumed, config.iterations, "iterations")
        trainer.train()
        if trainer.stopped_by_time_limit:
            lines.say(f"[{name}] time limit of {config.max_minutes} min reached: stopping after iteration {trainer.iteration}")
        trainer.save_final(folder / RL_FINAL)
    finally:
        run.close()  # its engines' environments (and Ray actors with a Ray engine) outlive the trainer otherwise
    history = _curve(folder, "train/success")
    return {
        "iterations": trainer.iteration,
        "planned_iterations": config.iterations,
        "stopped_by_time_limit": trainer.stopped_by_time_limit,
        "resumed_from_iteration": resumed,
        "last_training_success": history[-1][1] if history else None,
    }


def _eval_stage(
    env: str, preset: Preset, setting: Setting, root: Path, lines: StageLines, reflector_for: Callable[[Path], str], folder: Path
) -> dict[str, Any]:
    from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
    from reflectrl.evaluation.harness import EvalConfig, evaluate, summarize_played
    from reflectrl.players.reflection_cache import CachedReflector

    from reflectrl.evaluation.reflection_diagnostics import reflection_diagnostics
    from reflectrl.teachers.live import TEACHER_PREFIX

    if setting.teacher:
        reflector = TEACHER_PREFIX + preset.data.teacher
    else:
        reflector = reflector_for(root / setting.reflector) if setting.reflector else None
    # A served reflector's reflections may differ in float rounding from the in-process ones: separate caches.
    cache_name = f"{str(setting.reflector).replace('/', '-')}{'' if reflector == str(root / str(setting.reflector)) else '.served'}.jsonl"
    spec = AgentSpec(
        kind=setting.kind,
        model=preset.model if setting.kind == "prompted" else None,
        policy=str(root / setting.policy) if setting.policy else None,
        reflector=reflector,
        reflection_tokens=preset.reflection_tokens,
        answer_tokens=preset.answer_tokens,
        seed=preset.seed,
        device=preset.device,
        # Rows that share a reflector meet the same states (same seeds): reuse its greedy reflections.
        reflection_cache=str(root / REFLECTION_CACHE / cache_name) if setting.reflector else None,
        env=env,
        teacher_seed=preset.seed,
    )
    levels = _eval_level_names(lookup(env), preset)
    episodes_wanted = preset.eval.episodes
    if setting.kind == "prompted" and preset.eval.prompted_episodes is not None:
        episodes_wanted = preset.eval.prompted_episodes
    loaded = load_agent(spec)
    episodes, plans, seconds, exact = [], [], 0.0, True

    def report(done: int, planned: int, successes: int) -> None:
        # Levels one after the other on one line: the episodes of the finished ones come first.
        wins = sum(e.success for e in episodes) + successes
        lines.update(len(episodes) + done, len(episodes) + planned, "episodes", f"success {wins}/{len(episodes) + done}")

    try:
        for level in levels:
            config = EvalConfig(
                env=env, split="test", episodes=episodes_wanted, level=level, horizon=preset.horizon,
                batch_size=preset.eval.batch_size, seed=preset.seed, env_kwargs=dict(preset.env_kwargs),
            )
            result = evaluate(
                loaded.agent, config, max_actions=loaded.max_actions, description=_label(setting, preset), on_progress=report
            )
            result.write(folder / level)
            episodes += result.episodes
            plans.append(result.plan)
            exact = exact and bool(result.summary.get("exact"))
            seconds += result.seconds
        cache = getattr(getattr(loaded.agent, "reflector", None), "inner", None)
    finally:
        loaded.close()
    reflections = {"generated": cache.misses, "from_cache": cache.hits} if isinstance(cache, CachedReflector) else None
    return {
        "reflections": reflections,
        "setting": _label(setting, preset),
        "agent": {"kind": setting.kind, "policy": setting.policy, "reflector": setting.reflector},
        "summary": summarize_played(episodes, exact),
        "reflection_diagnostics": reflection_diagnostics(episodes),
        "episodes_played": plans,
        "eval_seconds": round(seconds, 1),
    }


def _label(setting: Setting, preset: Preset) -> str:
    return setting.label.replace("{model}", preset.model)


# ------------------------------------------------------------------ report
def _curve(rl_folder: Path, key: str) -> list[tuple[float, float]]:
    """(iteration, value) of one metric from the stage's RL run."""
    return read_curve(rl_folder / RL_RUN / "metrics.jsonl", key)


def _rows(preset: Preset, records: dict[str, dict[str, Any]]) -> list[ComparisonRow]:
    return [
        ComparisonRow(_label(s, preset), records[f"eval-{s.key}"]["summary"]["summary"], s.reference)
        for s in SETTINGS if f"eval-{s.key}" in records
    ]


PAIRED: tuple[tuple[str, str], ...] = (("rl-reflect", "sft-reflect"), ("rl-plain", "sft-plain"))
"""(RL setting, the SFT setting it started from) pairs compared seed by seed in the report."""


def _eval_level_names(entry, preset: Preset) -> list[str]:
    """The evaluated levels by name (the preset's None: the environment's hardest), as the eval folders are named."""
    return [level or entry.env_class().levels[-1] for level in preset.eval_levels]


def _episodes(out: Path, key: str, level: str) -> list[dict[str, Any]]:
    import json

    path = out / f"eval-{key}" / level / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _exact(out: Path, key: str, level: str) -> bool:
    """Whether the evaluation `key` played every start state of `level` once (`EvalPlan.exact`)."""
    import json

    from reflectrl.evaluation.harness import RESULT_FILE

    return bool(json.loads((out / f"eval-{key}" / level / RESULT_FILE).read_text(encoding="utf-8"))["summary"].get("exact"))


def _paired(entry, preset: Preset, out: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """Each RL row against its SFT start over every evaluated episode, then level by level when there are several
    (AutoExplore's depth 1 and depth 2 differ in difficulty; a pooled gain could hide a loss at one level)."""
    from reflectrl.evaluation.paired import compare_paired

    labels = {s.key: _label(s, preset) for s in SETTINGS}
    levels = _eval_level_names(entry, preset)
    played = {(key, level): _episodes(out, key, level) for pair in PAIRED for key in pair for level in levels}
    groups = [(None, levels)] + ([(level, [level]) for level in levels] if len(levels) > 1 else [])
    comparisons = []
    for group, group_levels in groups:
        for after, before in PAIRED:
            first = [e for level in group_levels for e in played[before, level]]
            second = [e for level in group_levels for e in played[after, level]]
            suffix = f", level {group}" if group else ""
            # Every start state of every level on both sides: the differences are the levels' own, not estimates.
            exact = all(_exact(out, key, level) for key in (after, before) for level in group_levels)
            comparisons.append((
                labels[after] + suffix, labels[before] + suffix, {**compare_paired(first, second, seed=preset.seed).to_dict(), "exact": exact}
            ))
    return comparisons


def _verdict(preset: Preset, records: dict[str, dict[str, Any]]) -> str:
    """The report's first sentence: the two RL rows against each other and against their SFT starts."""
    def rate(key: str) -> str:
        return f"{100 * records[f'eval-{key}']['summary']['summary']['success']:.1f}%"

    summary = records["eval-rl-reflect"]["summary"]["summary"]
    played = (
        f"all {summary['episodes']} held-out start states (exact rates)" if summary.get("exact") else f"{summary['episodes']} held-out episodes"
    )
    return (
        f"Reflect-RL {rate('rl-reflect')} vs RL without reflection {rate('rl-plain')} success on {played}; "
        f"their SFT starts: {rate('sft-reflect')} with reflection, {rate('sft-plain')} without."
    )


def _write_report(
    entry, preset: Preset, out: Path, records: dict[str, dict[str, Any]], verdict: str, command: str | None, seconds: float
) -> Path:
    import peft
    import torch
    import transformers

    rows = _rows(preset, records)
    curves: dict[str, list[tuple[float, float]]] = {}
    for name, _, _, label in RL_JOBS:
        if name not in records:
            continue
        curves[f"{label} (training)"] = _curve(out / name, "train/success")
        validation = _curve(out / name, "val/success")
        if validation:
            curves[f"{label} (validation)"] = validation
    data = records["data"]["summary"]
    plans = records["eval-rl-reflect"]["summary"]["episodes_played"]
    stage_seconds = [(name, rec["seconds"], "resumed after an interruption" if rec.get("resumed") else "") for name, rec in records.items()]
    device = preset.device or ("cuda" if torch.cuda.is_available() else "cpu")
    meta = {
        "command": f"`{command}`" if command else "(called from Python)",
        "environment": f"{entry.name} ({entry.gym_id}), level {data['level']}, horizon {preset.horizon or 'default'}",
        "model": f"{preset.model} for both players (LoRA adapters) and the prompted baseline",
        "evaluation": "; ".join(plans) + "; greedy decisions, "
        + (f"labels shuffled with seed {preset.seed}" if preset.shuffle_labels else "fixed labels (menu order)")
        + (", written after each action" if preset.label_after else "")
        + "; the same episodes for every row",
        "teacher data": f"{data['episodes']} {preset.data.teacher} teacher episodes on the train split (seed {preset.seed}): "
        # sorted: a resumed run reads this record back from DONE.json, whose keys are sorted
        + ", ".join(f"{n} {name} rows" for name, n in sorted(data["rows"].items()))
        + f"; negative share {data['negative_share']:.1%}",
        "RL": f"{_algo_text(preset.rl)}, {preset.rl.iterations} iterations x {preset.rl.episodes_per_iter} episodes (train seeds), "
        f"reflections up to {preset.reflection_tokens} tokens"
        + (
            f"; Reflect-RL's reflector after a DAgger round ({preset.dagger.episodes} train episodes of the SFT reflective agent, "
            f"{preset.dagger.steps} SFT steps)" if has_dagger(preset) else ""
        )
        + (
            f"; reflections sampled at temperature {preset.rl.reflection_temperature:g} while training"
            if preset.rl.reflection_temperature > 0 else ""
        )
        + (
            f"; Reflect-RL trains its reflector too (policy gradient on its sampled reflections, Adam {preset.rl.reflector_lr:g}, "
            f"KL weight {preset.rl.reflector_kl_coef:g} to its start) and is evaluated with it" if preset.rl.train_reflector else ""
        ),
    }
    total = sum(r["seconds"] for r in records.values())
    timing_meta = {
        "wall time": f"{total:.0f} s summed over the stages ({total / 60:.1f} min; time lost to interrupted attempts not counted); "
        f"this invocation {seconds:.0f} s",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"device {device}, {torch.get_num_threads()} torch threads, CPU kernels {torch.backends.cpu.get_cpu_capability()}",
        "CPU": cpu_description(),
        "packages": f"transformers {transformers.__version__}, peft {peft.__version__}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    title = f"Reflect-RL comparison on {entry.name} (preset {preset.name})"
    exact_rows = [bool(r.summary.get("exact")) for r in rows]
    if all(exact_rows):
        intervals = (
            "every row played every start state once, and with greedy decisions each start state has one outcome, "
            "so the rates are exact, with no interval (\"exact\" in the table)."
        )
    elif any(exact_rows):
        intervals = (
            "a row that played a sample of episodes has a 95% Wilson score interval; a row that played every start "
            "state once has none: with greedy decisions each start state has one outcome, so its rate is exact "
            "(\"exact\" in the table)."
        )
    else:
        intervals = "intervals are 95% Wilson score intervals."
    intro = (
        f"Held-out success of every setting on {entry.name}, level {data['level']}: {'; '.join(plans)}. "
        f"Rows follow the paper's comparison (METHOD.md); {intervals}"
    )
    if preset.eval.prompted_episodes is not None:
        played = f"{preset.eval.prompted_episodes} seeded episodes" if any(exact_rows) else f"the first {preset.eval.prompted_episodes} of these episodes"
        intro += (
            f" The prompted row plays {played} only: its invalid "
            "answers do not end an episode, so each runs to the horizon."
        )
    write_timing(out, title, stage_seconds, timing_meta)
    stages = [(name, _note(rec)) for name, rec in records.items()]
    level = _eval_level_names(entry, preset)[0]
    # Named "run", not by its folder, so the same run gives the same bytes wherever it is written.
    write_page([out], out / PAGE_FILE, f"Episodes of the {title}", sources=["run"], shown=(f"eval-rl-reflect/{level}", f"eval-sft-reflect/{level}"))
    return write_report(
        out, title, verdict, intro, rows, _paired(entry, preset, out), curves, stages, meta,
        saved_settings(entry.name, preset), diagnostics=_diagnostics(preset, records), viewer=PAGE_FILE,
    )


def _diagnostics(preset: Preset, records: dict[str, dict[str, Any]]) -> str:
    """The reflection diagnostics of every reflective row, the ceilings included (markdown, or "")."""
    from reflectrl.evaluation.reflection_diagnostics import diagnostics_table

    rows = [
        (_label(s, preset), records[f"eval-{s.key}"].get("summary", {}).get("reflection_diagnostics"))
        for s in SETTINGS if s.kind == "reflect" and f"eval-{s.key}" in records
    ]
    return diagnostics_table(rows)


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU model and the instruction sets that decide which kernels torch runs.

    Two CPU models train different adapters from the same data and seed (the kernels sum float32
    in their own order; experiments/taxi_pipeline, "Another machine"), so a timing file names the
    CPU it was made on. `cpuinfo`: the text of Linux's /proc/cpuinfo (read when None).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:  # not Linux
            return platform.processor() or "unknown"
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    sets = [name for name in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile") if name in flags]
    return f"{fields.get('model name') or platform.processor() or 'unknown'}; {' '.join(sets) or 'no AVX2'}"


def _algo_text(rl: RLConfig) -> str:
    if rl.algo == "grpo":
        return f"grpo (groups of {rl.group_size} episodes per start seed, {rl.epochs} epoch{'s' if rl.epochs > 1 else ''})"
    return f"ppo ({rl.epochs} epochs)" if rl.algo == "ppo" else rl.algo


def _note(record: dict[str, Any]) -> str:
    summary = record.get("summary", {})
    notes = []
    if "expert_success_rate" in summary:
        rows = summary["rows"]
        notes.append(
            f"{summary['episodes']} teacher episodes (the teacher won {summary['expert_success_rate']:.0%}); "
            f"{rows['reflector']} reflector rows, {rows['policy']} policy rows "
            f"({summary['negative_share']:.0%} negatives), {rows['plain']} plain rows"
        )
    if "round_rows" in summary:
        advice = summary.get("advice_optimal")
        notes.append(
            f"the SFT reflective agent played {summary['episodes']} train episodes (success {summary['success']:.0%}): "
            f"{summary['states']} states, {summary['distinct']} distinct ({summary['agreed']} of them with the teacher's own reflection)"
            + (f", its reflection right in {advice:.0%} of them" if advice is not None else "")
            + f"; {summary['round_rows']} rows in the reflector's round"
        )
    if "global_step" in summary:
        notes.append(f"{summary['global_step']} of {summary['max_steps']} steps")
    if "planned_iterations" in summary:
        notes.append(f"{summary['iterations']} of {summary['planned_iterations']} iterations")
    if "label_accuracy" in summary:
        notes.append(f"held-out label accuracy {summary['label_accuracy']:.0%} (chance {summary.get('chance_accuracy', 0):.0%})")
    elif "eval_loss" in summary:
        notes.append(f"held-out loss {summary['eval_loss']:.3f}")
    if summary.get("stopped_by_time_limit"):
        done = summary.get("global_step", summary.get("iterations"))
        planned = summary.get("max_steps", summary.get("planned_iterations"))
        notes.append(f"stopped by its time limit after {done} of {planned} {'steps' if 'global_step' in summary else 'iterations'}")
    if "last_training_success" in summary and summary["last_training_success"] is not None:
        notes.append(f"last training success {summary['last_training_success']:.0%}")
    if "eval_seconds" in summary:
        notes.append(f"{summary['summary']['episodes']} episodes")
    return "; ".join(notes)
