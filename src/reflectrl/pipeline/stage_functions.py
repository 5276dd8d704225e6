"""The work of each pipeline stage: one function per kind of stage, called by `StageRunner` with its folder.

`reflectrl.pipeline.run` binds each to its arguments (`functools.partial`) in the order `reflectrl.pipeline.plan`
gives; `reflectrl.pipeline.seeds` runs the stages no training seed changes with the same functions, and
scripts can run one stage outside a pipeline the same way. Each returns the summary kept in the stage's
DONE.json and reports its progress on `lines` (`reflectrl.pipeline.console`). The heavy libraries (torch,
the trainers, the evaluation) are imported inside the functions, so importing this module loads no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflectrl.envs import lookup
from reflectrl.pipeline.console import StageLines
from reflectrl.pipeline.plan import REFLECTION_CACHE, RL_FINAL, RL_RUN, Setting, eval_level_names, rl_config, row_label
from reflectrl.pipeline.presets import Preset
from reflectrl.pipeline.report import rl_curve
from reflectrl.trainers.trackers import DEFAULT_REPORT_TO

if TYPE_CHECKING:
    from reflectrl.evaluation.agent_loader import AgentSpec


def local_reflector(adapter: Path) -> str:
    """The reflector spec of an adapter that generates in this process (the default `reflector_for` of the RL and
    evaluation stages; a served run gives the server's spec instead); the stage loads it with its players, under
    `Preset.bf16`."""
    return str(adapter)


def _tracker_run_name(folder: Path) -> str:
    """A stage's name in the trackers: the run folder's name, then the stage's (``pipeline-taxi/rl-reflect``)."""
    return f"{folder.absolute().parent.name}/{folder.name}"


def data_stage(env: str, preset: Preset, lines: StageLines, folder: Path) -> dict[str, Any]:
    """The teacher data of `preset` on the train split, into `folder` (a killed run continues where it stopped)."""
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


def sft_stage(
    preset: Preset, role: str, data: Path, lines: StageLines, folder: Path, *, report_to: tuple[str, ...] = DEFAULT_REPORT_TO,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One SFT run with the preset's settings for `role`, and `changes` (a DAgger round's start and steps) over them."""
    from reflectrl.trainers.sft import run_warmup, step_callback
    from reflectrl.trainers.sft_config import SFTConfig

    config = SFTConfig(
        role=role, data=str(data), out=str(folder), model=preset.model, seed=preset.train_seed, threads=preset.threads,
        bf16=preset.bf16, eval_steps=0, save_total_limit=1, report_to=report_to, run_name=_tracker_run_name(folder),
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


def dagger_stage(env: str, preset: Preset, root: Path, lines: StageLines, folder: Path) -> dict[str, Any]:
    """The DAgger round's rows: the SFT reflective agent's visited states with the teacher's reflections (see
    `reflectrl.datagen.dagger`), mixed with a share of the first round's reflector rows."""
    from reflectrl.datagen.dagger import VisitStats, advice_share, mix_rows, write_round
    from reflectrl.datagen.generate import load_rows

    played, visited = _sft_agent_visits(env, preset, root, lines)
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


def _sft_agent_visits(env: str, preset: Preset, root: Path, lines: StageLines) -> tuple[Any, list[dict[str, Any]]]:
    """The SFT reflective agent's greedy play of the round's train episodes, and every distinct state it visited
    as a reflector row with the teacher's reflection (`teacher_rows`)."""
    from reflectrl.datagen.dagger import teacher_rows, visited_states
    from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
    from reflectrl.evaluation.harness import EvalConfig, evaluate, plan_episodes
    from reflectrl.models.tokens import token_counter
    from reflectrl.protocol import LabelSet
    from reflectrl.teachers.registry import make_teacher

    spec = AgentSpec(
        kind="reflect", policy=str(root / "sft-policy"), reflector=str(root / "sft-reflector"), reflection_tokens=preset.reflection_tokens,
        seed=preset.train_seed, device=preset.device, bf16=preset.bf16, env=env,
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
    return played, visited


def rl_stage(
    env: str, preset: Preset, policy: Path, reflector: Path | None, reflector_for: Callable[[Path], str], lines: StageLines,
    folder: Path, *, report_to: tuple[str, ...] = DEFAULT_REPORT_TO,
) -> dict[str, Any]:
    """Online RL of the SFT `policy` (with the frozen `reflector` as `reflector_for` gives it; None: no reflection)
    with the preset's settings (`rl_config`), resuming from its checkpoints; the final policy in ``final/``."""
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
        reflection_tokens=preset.reflection_tokens, device=preset.device, bf16=preset.bf16,
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
    history = rl_curve(folder, "train/success")
    return {
        "iterations": trainer.iteration,
        "planned_iterations": config.iterations,
        "stopped_by_time_limit": trainer.stopped_by_time_limit,
        "resumed_from_iteration": resumed,
        "last_training_success": history[-1][1] if history else None,
    }


def eval_stage(
    env: str, preset: Preset, setting: Setting, root: Path, lines: StageLines, reflector_for: Callable[[Path], str], folder: Path
) -> dict[str, Any]:
    """`setting` on the test split of every evaluated level (`eval_level_names`), each level's files in its folder
    under `folder`; adapters are found under the run folder `root`."""
    from reflectrl.evaluation.agent_loader import load_agent
    from reflectrl.evaluation.harness import EvalConfig, evaluate, summarize_played
    from reflectrl.evaluation.reflection_diagnostics import reflection_diagnostics
    from reflectrl.players.reflection_cache import CachedReflector

    spec = _eval_agent(env, preset, setting, root, reflector_for)
    levels = eval_level_names(lookup(env), preset)
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
                loaded.agent, config, max_actions=loaded.max_actions, description=row_label(setting, preset), on_progress=report
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
        "setting": row_label(setting, preset),
        "agent": {"kind": setting.kind, "policy": setting.policy, "reflector": setting.reflector},
        "summary": summarize_played(episodes, exact),
        "reflection_diagnostics": reflection_diagnostics(episodes),
        "episodes_played": plans,
        "eval_seconds": round(seconds, 1),
    }


def _eval_agent(env: str, preset: Preset, setting: Setting, root: Path, reflector_for: Callable[[Path], str]) -> AgentSpec:
    """The `AgentSpec` of `setting`: its adapters under `root`, its reflector as `reflector_for` serves it (or the
    live teacher), and the reflection cache it shares with the rows of the same reflector."""
    from reflectrl.evaluation.agent_loader import AgentSpec
    from reflectrl.teachers.live import TEACHER_PREFIX

    if setting.teacher:
        reflector = TEACHER_PREFIX + preset.data.teacher
    else:
        reflector = reflector_for(root / setting.reflector) if setting.reflector else None
    # A served reflector's reflections may differ in float rounding from the in-process ones: separate caches.
    cache_name = f"{str(setting.reflector).replace('/', '-')}{'' if reflector == str(root / str(setting.reflector)) else '.served'}.jsonl"
    return AgentSpec(
        kind=setting.kind,
        model=preset.model if setting.kind == "prompted" else None,
        policy=str(root / setting.policy) if setting.policy else None,
        reflector=reflector,
        reflection_tokens=preset.reflection_tokens,
        answer_tokens=preset.answer_tokens,
        seed=preset.seed,
        device=preset.device,
        bf16=preset.bf16,
        # Rows that share a reflector meet the same states (same seeds): reuse its greedy reflections.
        reflection_cache=str(root / REFLECTION_CACHE / cache_name) if setting.reflector else None,
        env=env,
        teacher_seed=preset.seed,
    )
