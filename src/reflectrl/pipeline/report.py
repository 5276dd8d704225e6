"""The comparison report: markdown tables in the paper's layout plus two plots.

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
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectrl.evaluation.tables import group_table, summary_table
from reflectrl.storage import atomic_write_bytes

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
