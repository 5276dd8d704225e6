"""The report over training seeds: every row seed by seed, its mean and 95% t-interval, paired differences, curves.

`write_aggregate` reads the finished seed folders of a multi-seed run (`reflectrl.pipeline.seeds`) and writes
into the run folder:

* ``report.md``: the verdict (the two RL rows' mean success with their intervals, and their difference);
  success and mean return of every row seed by seed, with the mean over the seeds and its 95% Student
  t-interval; per-seed paired differences of each RL row against its SFT start and of Reflect-RL against
  RL without reflection, with their mean and t-interval; each reflective row's reflection diagnostics
  (reflector right, follow rate, step and episode outcomes by whether the reflection was right) seed by seed;
  the learning curves; how the run was made.
* ``learning_curves.png``: every seed's training success per RL iteration (thin) and their mean (thick), one
  panel per RL row on a shared scale (overlaid, a row at the same rate as another would hide it).
* ``timing.md``: the seconds each seed's stages took.

The seeds of a run are paired: the same teacher data and the same evaluation episodes, so the difference
of two rows is taken within each seed first, and the interval is over those per-seed differences. The
t-interval (mean +- t(0.975, n-1) * sd / sqrt(n)) treats the seeds as a sample of training runs; with
exact evaluation (every start state played once) nothing else varies, so it measures training noise alone.
With a sample of episodes every seed plays the same sample, so the interval leaves out which episodes were
drawn: it is about these episodes, not the level. Rows that train nothing (`UNTRAINED`) are evaluated once
and copied into every seed, so they get no interval; a rate's bounds are cut to what a rate can be.
Like the single-seed report, ``report.md`` holds only what the runs computed (no times), so the same seeds
give the same bytes however they were run.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectrl.evaluation.reflection_diagnostics import DIAGNOSTIC_COLUMNS
from reflectrl.pipeline.plan import PAIRED, RL_JOBS, SETTINGS, row_label, saved_settings
from reflectrl.pipeline.presets import Preset
from reflectrl.pipeline.report import CURVES_PLOT, REPORT, TIMING, precision_meta, rl_curve, write_timing
from reflectrl.pipeline.stages import DONE
from reflectrl.run_settings import read_saved

COMPARISONS: tuple[tuple[str, str], ...] = PAIRED + (("rl-reflect", "rl-plain"),)
"""(row, the row it is compared with) seed by seed: each RL row against its SFT start, then Reflect-RL against RL
without reflection."""
CONFIDENCE = 0.95
UNTRAINED = frozenset(s.key for s in SETTINGS if not (s.policy or s.reflector))
"""Rows without a trained adapter (prompted model, oracle, random): no training seed changes them."""
RATE = (0.0, 1.0)
"""What a success rate can be."""
RATE_DIFFERENCE = (-1.0, 1.0)
"""What a difference of two success rates can be."""


def seed_folder(seed: int) -> str:
    """The run folder of training seed `seed`, under the multi-seed run folder."""
    return f"seed-{seed}"


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its t-interval (None bounds with fewer than two seeds)."""

    mean: float
    low: float | None
    high: float | None


def t_quantile(probability: float, df: int) -> float:
    """The `probability` quantile (> 0.5) of Student's t distribution with `df` degrees of freedom.

    Found by bisection on the closed-form distribution function for whole degrees of freedom (the
    finite series in cos(theta), theta = atan(t / sqrt(df))), which is all a t-interval over seeds needs.
    """
    if df < 1 or not 0.5 < probability < 1:
        raise ValueError("need df >= 1 and 0.5 < probability < 1")
    wanted = 2 * probability - 1  # P(|T| <= t)
    low, high = 0.0, 1.0
    while _central(high, df) < wanted:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if _central(middle, df) < wanted else (low, middle)
    return (low + high) / 2


def _central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with whole `df`."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return (2 / math.pi) * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean of `values` with its Student t-interval."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half)


@dataclass
class SeedRuns:
    """What the finished seed folders of a run hold."""

    seeds: list[int]
    summaries: dict[str, list[dict[str, Any]]]
    """eval key -> each seed's evaluation summary, in seed order (rows every seed evaluated)."""
    curves: dict[str, list[list[tuple[float, float]]]]
    """RL stage -> each seed's training success per iteration."""
    records: dict[int, dict[str, dict[str, Any]]]
    """seed -> stage -> DONE record."""


def read_seed_runs(out: Path, seeds: Sequence[int]) -> SeedRuns:
    """The evaluation summaries, learning curves and stage records of `seeds`' folders under `out`."""
    records = {}
    for seed in seeds:
        folder = Path(out) / seed_folder(seed)
        records[seed] = {p.parent.name: read_saved(p) for p in sorted(folder.glob(f"*/{DONE}"))}
    summaries = {}
    for setting in SETTINGS:
        name = f"eval-{setting.key}"
        if all(name in records[seed] for seed in seeds):
            summaries[setting.key] = [records[seed][name]["summary"]["summary"] for seed in seeds]
    curves = {
        name: [rl_curve(Path(out) / seed_folder(seed) / name, "train/success") for seed in seeds]
        for name, *_ in RL_JOBS if all(name in records[seed] for seed in seeds)
    }
    return SeedRuns(list(seeds), summaries, curves, records)


def _clean(value: float) -> float:
    # A mean of +0.01 and -0.01 is a float a hair off zero, which would print as "-0.0".
    return 0.0 if abs(value) < 1e-9 else value


def _pct(value: float) -> str:
    return f"{100 * _clean(value):.1f}%"


def _points(value: float) -> str:
    return f"{100 * _clean(value):+.1f}"


def _return(value: float) -> str:
    return f"{_clean(value):+.2f}"


def _interval(values: Sequence[float], show, limits: tuple[float, float] | None = None) -> str:
    """The t-interval of `values`, its bounds cut to `limits` (a rate's t-interval over few seeds reaches past 0% and 100%)."""
    estimate = t_interval(values)
    if estimate.low is None:
        return "(needs two seeds)"
    low, high = estimate.low, estimate.high
    if limits is not None:
        low, high = max(low, limits[0]), min(high, limits[1])
    text = f"[{show(low)}, {show(high)}]"
    # sd = 0 when every seed agrees: that is the seeds' agreement, not a mean known to be exact.
    return text + " (seeds equal)" if len(set(values)) == 1 else text


@dataclass(frozen=True)
class TableRow:
    """One row of a seed-by-seed table."""

    label: str
    values: list[float]
    """One value per seed, in seed order."""
    untrained: bool = False
    """The row trains nothing: one evaluation copied into every seed, so it has no interval over seeds."""


def _table(
    first: str, seeds: Sequence[int], rows: Sequence[TableRow], show, limits: tuple[float, float] | None = None, extra: str | None = None,
) -> str:
    head = [first] + [f"seed {s}" for s in seeds] + ["mean", f"{CONFIDENCE:.0%} t-interval"] + ([extra] if extra else [])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in rows:
        spread = "none: trains nothing, one evaluation in every seed" if row.untrained else _interval(row.values, show, limits)
        cells = [row.label] + [show(v) for v in row.values] + [show(t_interval(row.values).mean), spread]
        if extra:
            cells.append(f"{sum(v > 0 for v in row.values)} / {sum(v < 0 for v in row.values)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _diagnostics_section(runs: SeedRuns, labels: Mapping[str, str]) -> list[str]:
    """Seed by seed, what limits each reflective row: the reflector, the policy reading it, or neither."""
    per_seed = {
        key: [runs.records[seed][f"eval-{key}"]["summary"].get("reflection_diagnostics") for seed in runs.seeds]
        for key in runs.summaries
    }
    rows = [
        TableRow(f"{labels[key]}: {title}", [found[measure] for found in diagnostics])
        for key, diagnostics in per_seed.items() if all(diagnostics)
        for measure, title in DIAGNOSTIC_COLUMNS
        if all(found.get(measure) is not None for found in diagnostics)
    ]
    if not rows:
        return []
    return [
        "## Reflection diagnostics, seed by seed", "",
        "Every step is judged against the oracle: is the move the reflection names (\"Next: ...\") the oracle's, does "
        "the policy play it, and which episodes are won when every reflection in them was right. A reflector right in "
        "most steps with a policy that follows it puts the limit on the reflector; a policy that does not follow right "
        "reflections puts it on the policy. The ceiling rows read the teacher's reflections.", "",
        _table("row: measure", runs.seeds, rows, _pct, RATE), "",
    ]


def _labels(preset: Preset) -> dict[str, str]:
    return {s.key: row_label(s, preset) for s in SETTINGS}


def _verdict(runs: SeedRuns, labels: Mapping[str, str]) -> str:
    success = {key: [s["success"] for s in summaries] for key, summaries in runs.summaries.items()}
    n = len(runs.seeds)

    def rate(key: str) -> str:
        values = success[key]
        return f"{labels[key]} {_pct(t_interval(values).mean)}" + ("" if n < 2 else f" {_interval(values, _pct, RATE)}")

    gap = [a - b for a, b in zip(success["rl-reflect"], success["rl-plain"])]
    return (
        f"Over {n} training seed{'s' if n > 1 else ''}: {rate('rl-reflect')} vs {rate('rl-plain')} held-out success "
        f"(mean{'' if n < 2 else ' and 95% t-interval'}); Reflect-RL minus RL without reflection "
        f"{_points(t_interval(gap).mean)} points" + ("" if n < 2 else f" {_interval(gap, _points, RATE_DIFFERENCE)}")
        + f", ahead in {sum(g > 0 for g in gap)} and behind in {sum(g < 0 for g in gap)} of {n} seeds."
    )


def plot_seed_curves(curves: Mapping[str, list[list[tuple[float, float]]]], labels: Mapping[str, str], path: Path, title: str) -> None:
    """Each RL row's training success per iteration in its own panel (shared axes): one thin line per seed and their
    mean (where every seed has the iteration)."""
    import matplotlib

    matplotlib.use("Agg")  # reports are written on machines without a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(4.2 * max(1, len(curves)) + 0.8, 4.5), sharex=True, sharey=True, squeeze=False)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, (ax, (name, runs)) in enumerate(zip(axes[0], curves.items())):
        color = palette[number % len(palette)]
        drawn = [points for points in runs if points]
        for index, points in enumerate(drawn):
            xs, ys = zip(*points)
            label = f"each seed ({len(drawn)})" if index == 0 else None
            ax.plot(xs, [100 * y for y in ys], "-", color=color, alpha=0.35, linewidth=1, label=label)
        common = sorted(set.intersection(*(set(x for x, _ in points) for points in runs))) if runs else []
        if common:
            means = [100 * sum(dict(points)[x] for points in runs) / len(runs) for x in common]
            ax.plot(common, means, "-", color=color, marker="o", markersize=4, linewidth=2.5, label=f"mean of {len(runs)} seeds")
        ax.set_title(labels[name], fontsize="medium")
        ax.set_xlabel("RL iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no RL iterations ran", ha="center", va="center", transform=ax.transAxes)
    axes[0][0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("training success rate (%)")
    axes[0][0].set_ylim(-2, 102)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_aggregate(
    out: Path, env: str, preset: Preset, seeds: Sequence[int], shared: Sequence[str] = ("data",), command: str | None = None,
    seconds: float | None = None,
) -> tuple[Path, str]:
    """Write report.md, learning_curves.png and timing.md over the finished `seeds` into `out`; returns (report, verdict).

    `shared` names the stages made once in `out` and copied into every seed's folder; `seconds` is this invocation's
    wall time (timing.md).
    """
    out = Path(out)
    runs = read_seed_runs(out, seeds)
    missing = [key for key in ("rl-reflect", "rl-plain", *(k for pair in PAIRED for k in pair)) if key not in runs.summaries]
    if missing:
        raise ValueError(f"the seed folders under {out} lack the evaluations {', '.join(sorted(set(missing)))}")
    labels = _labels(preset)
    rl_labels = {name: label for name, _, _, label in RL_JOBS}
    first = runs.records[runs.seeds[0]]
    plans = first["eval-rl-reflect"]["summary"]["episodes_played"]
    trained = [key for key in runs.summaries if key not in UNTRAINED]
    exact = all(s.get("exact") for key in trained for s in runs.summaries[key])
    n = len(runs.seeds)
    title = f"Reflect-RL comparison on {env} over {n} training seed{'s' if n > 1 else ''} (preset {preset.name})"
    verdict = _verdict(runs, labels)
    references = {s.key for s in SETTINGS if s.reference}
    compared = [key for key in runs.summaries if key not in references]
    others = [key for key in runs.summaries if key in references]

    def rows(keys: Sequence[str], metric: str) -> list[TableRow]:
        return [TableRow(labels[key], [s[metric] for s in runs.summaries[key]], key in UNTRAINED) for key in keys]

    def differences(metric: str) -> list[TableRow]:
        return [
            TableRow(f"{labels[a]} minus {labels[b]}", [x[metric] - y[metric] for x, y in zip(runs.summaries[a], runs.summaries[b])])
            for a, b in COMPARISONS
        ]

    if exact:
        noise = (
            "Each seed's rates are exact (every start state played once, greedy decisions), so the spread over the "
            "seeds is training noise alone, and an interval is for the mean over training runs on the whole level."
        )
    else:
        noise = (
            "Every seed plays the same sample of episodes, so the spread over the seeds is training noise as seen on "
            "those episodes: an interval is about these episodes, not the whole level, and leaves out which episodes "
            "were drawn (each seed's own report gives that as a 95% Wilson interval)."
        )
    if n > 1:
        quantile = t_quantile((1 + CONFIDENCE) / 2, n - 1)
        intervals = (
            f"intervals are 95% Student t-intervals over the seeds (mean +- t(0.975, n-1) * sd / sqrt(n); n = {n}, "
            f"t(0.975, {n - 1}) = {quantile:.2f}{', so they stay wide until more seeds run' if n < 5 else ''}), a rate's "
            "bounds cut to 0% and 100% (a difference of rates to -100 and +100 points); \"seeds equal\" marks a "
            "zero-width interval, every seed giving the same value"
        )
    else:
        intervals = "an interval over seeds needs two seeds"
    untrained = [labels[key] for key in runs.summaries if key in UNTRAINED]
    copied = (
        f" The rows that train nothing ({'; '.join(untrained)}) are evaluated once and copied into every seed: "
        "no interval over seeds."
        if untrained else ""
    )
    intro = (
        f"Each training seed is one complete pipeline run ({seed_folder(runs.seeds[0])}/ and so on, each with its own "
        f"report.md) from the same teacher data, evaluated on the same episodes: {'; '.join(plans)}. A training seed "
        "changes everything training draws (SFT's LoRA initialisation, held-out rows, data order and label shuffles; "
        "RL's episode seeds, action sampling, label shuffles, replay and minibatches) and nothing else, so the seeds "
        f"are paired. Means are over the seeds; {intervals}. {noise}{copied}"
    )
    parts = [f"# {title}", "", f"**{verdict}**", "", intro, "", "## Held-out success, seed by seed", "",
             _table("setting", runs.seeds, rows(compared, "success"), _pct, RATE), ""]
    if others:
        parts += ["Reference players and diagnostic rows (same episodes):", "", _table("row", runs.seeds, rows(others, "success"), _pct, RATE), ""]
    parts += ["## Mean return, seed by seed", "", _table("setting", runs.seeds, rows(compared + others, "mean_return"), _return), ""]
    parts += [
        "## Paired differences within each seed", "",
        "Each RL row against the SFT row it started from (same seed), and Reflect-RL against RL without reflection: "
        "the difference is taken within each seed, then averaged; ahead / behind counts the seeds where it is above / "
        "below zero.", "",
        "Success, in percentage points:", "",
        _table("comparison", runs.seeds, differences("success"), _points, RATE_DIFFERENCE, "seeds ahead / behind"), "",
        "Mean return:", "",
        _table("comparison", runs.seeds, differences("mean_return"), _return, extra="seeds ahead / behind"), "",
    ]
    parts += _diagnostics_section(runs, labels)
    plot_seed_curves(runs.curves, rl_labels, out / CURVES_PLOT, title)
    parts += [f"![training success per RL iteration, every seed and the mean, one panel per RL row]({CURVES_PLOT})", ""]
    data = read_saved(out / "data" / DONE) or first["data"]
    meta = {
        "command": f"`{command}`" if command else "(called from Python)",
        "training seeds": ", ".join(str(s) for s in runs.seeds),
        "environment": f"{env}, level {data['summary']['level']}, horizon {preset.horizon or 'default'}",
        "model": f"{preset.model} for both players (LoRA adapters) and the prompted baseline",
        "evaluation": "; ".join(plans) + f"; greedy decisions; data and evaluation seed {preset.seed} for every training seed",
        "teacher data": f"{data['summary']['episodes']} {preset.data.teacher} teacher episodes, made once and copied into every seed's folder",
        **precision_meta(preset),
    }
    parts += ["## Run", ""] + [f"- **{key}**: {value}" for key, value in meta.items()] + [""]
    parts += ["| training seed | run folder | report |", "|---|---|---|"]
    parts += [f"| {s} | {seed_folder(s)}/ | [{seed_folder(s)}/{REPORT}]({seed_folder(s)}/{REPORT}) |" for s in runs.seeds]
    parts += ["", f"Time per seed and machine: [{TIMING}]({TIMING}).", ""]
    parts += ["## Settings (preset; each seed's folder adds its training_seed)", "", "```json",
              json.dumps(saved_settings(env, preset), indent=2, sort_keys=True), "```", ""]
    report = out / REPORT
    report.write_text("\n".join(parts), encoding="utf-8")
    own = [(name, read_saved(out / name / DONE)) for name in shared]
    stage_seconds = [(name, record["seconds"], "made once, copied into every seed") for name, record in own if record]
    stage_seconds += [
        (seed_folder(s), sum(r["seconds"] for name, r in runs.records[s].items() if name not in shared), "its own stages")
        for s in runs.seeds
    ]
    timing_meta = {
        "this invocation": "(called from Python)" if seconds is None else f"{seconds:.0f} s, the seeds' stages run one after "
        "another or side by side",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs (each seed's own timing.md names the machine it ran on)",
    }
    write_timing(out, title, stage_seconds, timing_meta)
    return report, verdict
