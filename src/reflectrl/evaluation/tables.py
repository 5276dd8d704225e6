"""Markdown tables of evaluation summaries (one row per agent or setting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = tuple[str, Mapping[str, Any]]
"""(row label, summary from `reflectrl.evaluation.summary.summarize`)."""


def pct(x: float) -> str:
    """A rate as a percentage with one decimal."""
    return f"{100 * x:.1f}%"


def interval(summary: Mapping[str, Any]) -> str:
    """The 95% interval of a summary's success, or "exact" for one over every start state (no sampling)."""
    return "exact" if summary.get("exact") else f"[{pct(summary['ci_low'])}, {pct(summary['ci_high'])}]"


def _cell(text: str) -> str:
    # A '|' inside a cell would split it; row labels can hold paths and model names.
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_table(rows: Sequence[Row], first_column: str = "setting") -> str:
    """Success with its 95% Wilson interval, episodes, mean return, mean steps and invalid-action rate."""
    lines = [
        f"| {first_column} | success | 95% interval | episodes | mean return | mean steps | invalid actions |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in rows:
        lines.append(
            f"| {_cell(label)} | {pct(s['success'])} | {interval(s)} | {s['episodes']} "
            f"| {s['mean_return']:+.2f} | {s['mean_steps']:.1f} | {pct(s['invalid_rate'])} |"
        )
    return "\n".join(lines)


def group_table(rows: Sequence[Row], first_column: str = "setting") -> str:
    """Success per group (level, depth, question kind, task type) for each row; empty without groups."""
    keys = sorted({k for _, s in rows for k in s.get("groups", {})})
    if not keys:
        return ""
    lines = [f"| {first_column} | " + " | ".join(_cell(k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for label, s in rows:
        groups = s.get("groups", {})
        cells = [f"{pct(groups[k]['success'])} (n={groups[k]['episodes']})" if k in groups else "-" for k in keys]
        lines.append(f"| {_cell(label)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
