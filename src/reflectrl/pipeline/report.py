"""The comparison report of a pipeline run: what it says (markdown tables in the paper's layout) and draws (two plots).

``report.md`` opens with the verdict in one sentence, then holds the
comparison (one row per setting, in the paper's order, success with its 95%
Wilson interval first, or "exact" for a row that played every start state
once), the reference players, success per group, each RL row against its SFT
start episode by episode, the plots, what each stage did and
how the run was made (command, model, seeds, episodes, preset): only what
the run computed, so the same command and seed give the same bytes.
``timing.md`` has the wall time of every stage, the machine and the date. ``success.png``
shows success bars with their intervals; ``learning_curves.png`` the RL
runs' success per iteration.

`write_report` and `write_timing` lay out whatever they are given (the report over training seeds,
`reflectrl.pipeline.aggregate`, uses them too); `write_run_report` gives them a pipeline run's content, read
from its stages' DONE records and folders: the rows (`comparison_rows`), the verdict (`verdict_sentence`),
the paired comparisons (`paired_comparisons`), each stage's note, the learning curves and how the run was made.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflectrl.evaluation.tables import group_table, summary_table
from reflectrl.pipeline.plan import PAIRED, RL_JOBS, RL_RUN, SETTINGS, eval_level_names, has_dagger, row_label, saved_settings
from reflectrl.pipeline.presets import Preset
from reflectrl.storage import atomic_write_bytes

if TYPE_CHECKING:
    from reflectrl.envs import EnvEntry
    from reflectrl.trainers.online import RLConfig

REPORT = "report.md"
SUCCESS_PLOT = "success.png"
CURVES_PLOT = "learning_curves.png"
TIMING = "timing.md"


@dataclass(frozen=True)
class ComparisonRow:
    """One evaluated setting."""

    setting: str
    """Row label, e.g. 'Reflect-RL'."""
    summary: Mapping[str, Any]
    """An evaluation summary: success, ci_low, ci_high, episodes, mean_return, mean_steps, invalid_rate, groups."""
    reference: bool = False
    """A scripted reference player (oracle, random) rather than a learned setting."""


Curve = Sequence[tuple[float, float]]


def read_curve(metrics_path: Path, key: str) -> list[tuple[float, float]]:
    """(iteration, value) of one metric from an RL run's metrics.jsonl (missing file: no points)."""
    points = []
    if Path(metrics_path).is_file():
        # Line by line from bytes: a line cut inside a character must not take the other lines with it.
        for line in Path(metrics_path).read_bytes().splitlines():
            try:
                record = json.loads(line.decode("utf-8"))
            except ValueError:
                continue  # a line cut by a kill; the resumed run rewrote it
            if key in record and isinstance(record[key], (int, float)):
                points.append((float(record["iteration"]), float(record[key])))
    return points


def plot_success_bars(rows: Sequence[ComparisonRow], path: Path, title: str) -> None:
    """Horizontal bars of success rates with 95% Wilson intervals (reference players in grey); an exact row
    (every start state played once) has none."""
    import matplotlib

    matplotlib.use("Agg")  # reports are written on machines without a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.6))
    names = [r.setting for r in rows]
    rates = [100 * r.summary["success"] for r in rows]
    # max(0, ...): at 0% or 100% the interval's end equals the rate up to float rounding
    lo = [max(0.0, 100 * (r.summary["success"] - r.summary["ci_low"])) for r in rows]
    hi = [max(0.0, 100 * (r.summary["ci_high"] - r.summary["success"])) for r in rows]
    colors = ["#b0b0b0" if r.reference else "#4c72b0" for r in rows]
    exact = [bool(r.summary.get("exact")) for r in rows]
    ax.barh(names, rates, color=colors)
    # Error bars for the sampled rows only: a zero-width bar with caps would still draw an interval at an exact rate.
    sampled = [i for i, whole in enumerate(exact) if not whole]
    if sampled:
        ax.errorbar(
            [rates[i] for i in sampled], sampled, xerr=[[lo[i] for i in sampled], [hi[i] for i in sampled]],
            fmt="none", ecolor="black", capsize=4,
        )
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(success_axis(exact))
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def success_axis(exact: Sequence[bool]) -> str:
    """The success plot's axis label (lines short enough for the plot's width) for rows of which `exact` ones
    played every start state once."""
    if all(exact):
        return "success rate (%),\nexact: every start state played once,\nno interval"
    if any(exact):
        return "success rate (%),\n95% Wilson interval where sampled;\nnone where exact (every start state once)"
    return "success rate (%) with 95% Wilson interval"


def plot_learning_curves(curves: Mapping[str, Curve], path: Path, title: str, ylabel: str = "success rate (%)", percent: bool = True) -> None:
    """A metric per RL iteration for each run (validation curves dashed); `percent` scales 0..1 values to %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    # One colour per run ("NAME (kind)"), so a run's training and validation curves read as a pair.
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    runs: dict[str, str] = {}
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points)
            color = runs.setdefault(name.split(" (")[0], palette[len(runs) % len(palette)])
            style = "--" if "validation" in name else "-"
            ax.plot(xs, [100 * y if percent else y for y in ys], style, color=color, marker="o", markersize=3, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("RL iteration")
    ax.set_ylabel(ylabel)
    if percent:
        ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no RL iterations ran", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render_tables(rows: Sequence[ComparisonRow]) -> str:
    """The comparison table, the reference players and success per group."""
    learned = [(r.setting, r.summary) for r in rows if not r.reference]
    references = [(r.setting, r.summary) for r in rows if r.reference]
    parts = [summary_table(learned)]
    if references:
        parts += ["", "Reference players (scripted, same episodes):", "", summary_table(references, "player")]
    groups = group_table(learned + references)
    if groups:
        parts += ["", "Success by group:", "", groups]
    return "\n".join(parts)


PAIRED_SAMPLED = (
    "Episodes won / lost: episodes the RL row won and its SFT start lost, and the reverse; McNemar's exact test "
    "asks whether that split could be chance. The return interval is a 95% bootstrap over the episodes."
)
PAIRED_EXACT = (
    "Where both rows played every start state once (\"exact\"), their rates, the difference between them and the "
    "mean return difference are the level's own, with no sampling interval. Episodes won / lost then counts start "
    "states: those the RL row won and its SFT start lost, and the reverse. McNemar's p only describes that split "
    "(how often one at least as uneven would come about if each of those states had gone either way with even "
    "odds); it does not test the rates, which are known."
)


def render_paired(comparisons: Sequence[tuple[str, str, Mapping[str, Any]]]) -> str:
    """What the paired comparisons mean and their markdown table, from (RL row, its SFT start,
    `PairedComparison.to_dict()`) comparisons; one with ``"exact": true`` compared every start state once, so it
    has exact differences and no bootstrap interval."""
    exact = [bool(c.get("exact")) for _, _, c in comparisons]
    text = " ".join(([PAIRED_SAMPLED] if not all(exact) else []) + ([PAIRED_EXACT] if any(exact) else []))
    returns = "" if all(exact) else " [95% bootstrap]"
    lines = [
        text, "",
        f"| RL row | against its SFT start | success | difference (points) | episodes won / lost | McNemar p | mean return difference{returns} |",
        "|---|---|---|---|---|---|---|",
    ]
    for (after, before, c), whole in zip(comparisons, exact):
        interval = "(exact)" if whole else f"[{c['return_ci_low']:+.2f}, {c['return_ci_high']:+.2f}]"
        lines.append(
            f"| {after} | {before} | {100 * c['success_before']:.1f}% -> {100 * c['success_after']:.1f}% | "
            f"{100 * (c['success_after'] - c['success_before']):+.1f}{' (exact)' if whole else ''} | "
            f"{c['won']} / {c['lost']} | {c['mcnemar_p']:.2g} | {c['return_difference']:+.2f} {interval} |"
        )
    return "\n".join(lines)


def write_report(
    folder: Path,
    title: str,
    verdict: str,
    intro: str,
    rows: Sequence[ComparisonRow],
    paired: Sequence[tuple[str, str, Mapping[str, Any]]],
    curves: Mapping[str, Curve],
    stages: Sequence[tuple[str, str]],
    meta: Mapping[str, Any],
    settings: Mapping[str, Any],
    diagnostics: str = "",
    viewer: str | None = None,
) -> Path:
    """Write report.md, success.png and learning_curves.png into `folder`; returns the report path.

    The report holds only what the run computed, so the same command and seed
    write the same bytes (times and the machine go to `write_timing`'s file).
    `verdict` is its first sentence; `paired` lists (RL row, SFT row,
    comparison); `stages` lists (stage, note); `meta` is shown as a list
    ("command", "model", ...); `settings` (the preset) as a JSON block; `diagnostics` is the
    reflection diagnostics table (`reflection_diagnostics.diagnostics_table`), "" for none; `viewer` is the file
    name of the episode page in `folder` (`reflectrl.evaluation.viewer`) to link, None for none.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_success_bars(rows, folder / SUCCESS_PLOT, title)
    plot_learning_curves(curves, folder / CURVES_PLOT, title)
    parts = [f"# {title}", "", f"**{verdict}**", "", intro, "", render_tables(rows), ""]
    if paired:
        parts += [
            "## Each RL row against its SFT start (same episodes, paired)", "",
            render_paired(paired), "",
        ]
    if diagnostics:
        parts += [
            "## Reflections: the reflector's advice, the policy's obedience and the ceiling", "",
            "Every decision of the reflective rows judged against the oracle in the state it was taken in: the "
            "reflection is right when the entry it recommends (after its \"Next:\") is optimal there (ties with the "
            "oracle's count); the policy follows it when it plays that entry. The ceiling rows give the same policy "
            "the teacher's own reflections, written live from the true state: the reflective agent with a perfect "
            "reflector.", "",
            diagnostics, "",
        ]
    caption = success_axis([bool(r.summary.get("exact")) for r in rows]).replace("\n", " ")
    parts += [f"![{caption}]({SUCCESS_PLOT})", "", f"![RL learning curves]({CURVES_PLOT})", ""]
    if viewer:
        parts += [
            f"Every evaluated episode step by step, in a browser: [{viewer}]({viewer}) (reflections, the policy's "
            "probability of each menu entry, the oracle's moves; Reflect-RL beside its SFT start, any two rows "
            "can be chosen).", "",
        ]
    parts += ["## Run", ""] + [f"- **{key}**: {value}" for key, value in meta.items()] + [""]
    parts += [f"Time per stage, machine and date: [{TIMING}]({TIMING}).", ""]
    parts += ["## Stages", "", "| stage | what it did |", "|---|---|"]
    parts += [f"| {name} | {note} |" for name, note in stages]
    parts += ["", "## Settings (preset)", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", ""]
    path = folder / REPORT
    atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
    return path


def write_timing(folder: Path, title: str, stage_seconds: Sequence[tuple[str, float, str]], meta: Mapping[str, Any]) -> Path:
    """Write timing.md: wall time per stage (with `note`s such as resumed runs), machine and date."""
    total = sum(seconds for _, seconds, _ in stage_seconds)
    parts = [f"# Times of: {title}", ""] + [f"- **{key}**: {value}" for key, value in meta.items()] + [""]
    parts += ["| stage | seconds | notes |", "|---|---|---|"]
    parts += [f"| {name} | {seconds:.0f} | {note} |" for name, seconds, note in stage_seconds]
    parts += [f"| all stages | {total:.0f} | {total / 60:.1f} min |", ""]
    path = Path(folder) / TIMING
    atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
    return path


# ------------------------------------------------------------------ a pipeline run's report
def rl_curve(rl_folder: Path, key: str) -> list[tuple[float, float]]:
    """(iteration, value) of one metric from the RL stage in `rl_folder`."""
    return read_curve(rl_folder / RL_RUN / "metrics.jsonl", key)


def eval_episodes(out: Path, key: str, level: str) -> list[dict[str, Any]]:
    """The episodes the evaluation of setting `key` played on `level`, from the run folder `out`."""
    path = out / f"eval-{key}" / level / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _exact(out: Path, key: str, level: str) -> bool:
    """Whether the evaluation `key` played every start state of `level` once (`EvalPlan.exact`)."""
    from reflectrl.evaluation.harness import RESULT_FILE

    return bool(json.loads((out / f"eval-{key}" / level / RESULT_FILE).read_text(encoding="utf-8"))["summary"].get("exact"))


def comparison_rows(preset: Preset, records: dict[str, dict[str, Any]]) -> list[ComparisonRow]:
    """The report's rows, in `SETTINGS` order, from the evaluation stages' DONE records."""
    return [
        ComparisonRow(row_label(s, preset), records[f"eval-{s.key}"]["summary"]["summary"], s.reference)
        for s in SETTINGS if f"eval-{s.key}" in records
    ]


def paired_comparisons(entry: EnvEntry, preset: Preset, out: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """Each RL row against its SFT start over every evaluated episode, then level by level when there are several
    (AutoExplore's depth 1 and depth 2 differ in difficulty; a pooled gain could hide a loss at one level)."""
    from reflectrl.evaluation.paired import compare_paired

    labels = {s.key: row_label(s, preset) for s in SETTINGS}
    levels = eval_level_names(entry, preset)
    played = {(key, level): eval_episodes(out, key, level) for pair in PAIRED for key in pair for level in levels}
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


def verdict_sentence(preset: Preset, records: dict[str, dict[str, Any]]) -> str:
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


def write_run_report(
    entry: EnvEntry, preset: Preset, out: Path, records: dict[str, dict[str, Any]], verdict: str, command: str | None, seconds: float
) -> Path:
    """Write a pipeline run's report.md with its plots, timing.md and the episode page into the run folder `out`,
    from the stages' DONE `records`; `seconds`: this invocation's wall time. Returns the report's path."""
    from reflectrl.evaluation.viewer import PAGE_FILE, write_page

    rows = comparison_rows(preset, records)
    title = f"Reflect-RL comparison on {entry.name} (preset {preset.name})"
    import torch

    write_timing(out, title, _stage_seconds(records, torch.get_num_threads()), _timing_meta(preset, records, seconds))
    stages = [(name, _note(rec)) for name, rec in records.items()]
    level = eval_level_names(entry, preset)[0]
    # Named "run", not by its folder, so the same run gives the same bytes wherever it is written.
    write_page([out], out / PAGE_FILE, f"Episodes of the {title}", sources=["run"], shown=(f"eval-rl-reflect/{level}", f"eval-sft-reflect/{level}"))
    return write_report(
        out, title, verdict, _intro(entry, preset, records, rows), rows, paired_comparisons(entry, preset, out), _curves(out, records),
        stages, _run_meta(entry, preset, records, command), saved_settings(entry.name, preset),
        diagnostics=_diagnostics(preset, records), viewer=PAGE_FILE,
    )


def _curves(out: Path, records: dict[str, dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """The training (and validation, where the run validated) success per iteration of every RL stage that ran."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for name, _, _, label in RL_JOBS:
        if name not in records:
            continue
        curves[f"{label} (training)"] = rl_curve(out / name, "train/success")
        validation = rl_curve(out / name, "val/success")
        if validation:
            curves[f"{label} (validation)"] = validation
    return curves


def _run_meta(entry: EnvEntry, preset: Preset, records: dict[str, dict[str, Any]], command: str | None) -> dict[str, str]:
    """How the run was made, for the report's "Run" list: only settings and what the stages computed."""
    data = records["data"]["summary"]
    plans = records["eval-rl-reflect"]["summary"]["episodes_played"]
    return {
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
        "RL": _rl_text(preset),
        **precision_meta(preset),
    }


def _device(preset: Preset):
    """The device the run's stages use (`Preset.device`, else `models.loading.default_device`)."""
    import torch

    from reflectrl.models.loading import default_device

    return torch.device(preset.device) if preset.device else default_device()


def _runs_bf16(preset: Preset) -> bool:
    """Whether the stages compute under bfloat16 autocast: `Preset.bf16` as `resolve_bf16` resolves it on the device."""
    from reflectrl.models.precision import resolve_bf16

    return resolve_bf16(preset.bf16, _device(preset))


def precision_text(preset: Preset) -> str:
    """The precision the run's stages compute in: "bfloat16 autocast", or "float32" on a CPU without it."""
    if _runs_bf16(preset):
        return "bfloat16 autocast"
    return "float32" if _device(preset).type == "cpu" else "no bfloat16 autocast (the weights' own dtype)"


def precision_meta(preset: Preset) -> dict[str, str]:
    """The report's "precision" item where the stages run under bfloat16 autocast, else none: a float32 run's report
    keeps the bytes it had before `Preset.bf16` existed (its timing.md names the precision either way)."""
    if not _runs_bf16(preset):
        return {}
    return {"precision": "bfloat16 autocast in every stage (SFT, the DAgger round's play, RL, evaluation)"}


def _rl_text(preset: Preset) -> str:
    return (
        f"{_algo_text(preset.rl)}, {preset.rl.iterations} iterations x {preset.rl.episodes_per_iter} episodes (train seeds), "
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
        )
    )


def _stage_seconds(records: dict[str, dict[str, Any]], threads: int) -> list[tuple[str, float, str]]:
    """Each stage's seconds with its notes: resumed, and its torch threads where they were not the invocation's
    `threads` (stages of `--parallel` run in workers with a share of them)."""
    def notes(rec: dict[str, Any]) -> str:
        said = ["resumed after an interruption"] if rec.get("resumed") else []
        own = rec.get("torch_threads")  # absent from records written before it was kept
        if own is not None and own != threads:
            said.append(f"{own} torch thread{'s' if own > 1 else ''}")
        return "; ".join(said)

    return [(name, rec["seconds"], notes(rec)) for name, rec in records.items()]


def _timing_meta(preset: Preset, records: dict[str, dict[str, Any]], seconds: float) -> dict[str, str]:
    """The times, machine and date for timing.md (kept out of report.md, whose bytes a re-run reproduces)."""
    import peft
    import torch
    import transformers

    device = str(_device(preset))
    total = sum(r["seconds"] for r in records.values())
    return {
        "wall time": f"{total:.0f} s summed over the stages ({total / 60:.1f} min; time lost to interrupted attempts not counted); "
        f"this invocation {seconds:.0f} s",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"device {device} ({precision_text(preset)}), {torch.get_num_threads()} torch threads (a stage's own where its notes say), "
        f"CPU kernels {torch.backends.cpu.get_cpu_capability()}",
        "CPU": cpu_description(),
        "packages": f"transformers {transformers.__version__}, peft {peft.__version__}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _intro(entry: EnvEntry, preset: Preset, records: dict[str, dict[str, Any]], rows: Sequence[ComparisonRow]) -> str:
    """The paragraph under the verdict: what was evaluated and what the intervals mean."""
    data = records["data"]["summary"]
    plans = records["eval-rl-reflect"]["summary"]["episodes_played"]
    exact_rows = [bool(r.summary.get("exact")) for r in rows]
    intro = (
        f"Held-out success of every setting on {entry.name}, level {data['level']}: {'; '.join(plans)}. "
        f"Rows follow the paper's comparison (METHOD.md); {_intervals_text(exact_rows)}"
    )
    if preset.eval.prompted_episodes is not None:
        played = f"{preset.eval.prompted_episodes} seeded episodes" if any(exact_rows) else f"the first {preset.eval.prompted_episodes} of these episodes"
        intro += (
            f" The prompted row plays {played} only: its invalid "
            "answers do not end an episode, so each runs to the horizon."
        )
    return intro


def _intervals_text(exact_rows: Sequence[bool]) -> str:
    if all(exact_rows):
        return (
            "every row played every start state once, and with greedy decisions each start state has one outcome, "
            "so the rates are exact, with no interval (\"exact\" in the table)."
        )
    if any(exact_rows):
        return (
            "a row that played a sample of episodes has a 95% Wilson score interval; a row that played every start "
            "state once has none: with greedy decisions each start state has one outcome, so its rate is exact "
            "(\"exact\" in the table)."
        )
    return "intervals are 95% Wilson score intervals."


def _diagnostics(preset: Preset, records: dict[str, dict[str, Any]]) -> str:
    """The reflection diagnostics of every reflective row, the ceilings included (markdown, or "")."""
    from reflectrl.evaluation.reflection_diagnostics import diagnostics_table

    rows = [
        (row_label(s, preset), records[f"eval-{s.key}"].get("summary", {}).get("reflection_diagnostics"))
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
