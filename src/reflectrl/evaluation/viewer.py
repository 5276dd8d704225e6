"""`reflectrl view`: the episodes of evaluations as one self-contained HTML page.

The page reads the ``episodes.jsonl`` files that `EvalResult.write` leaves
(`harness.episode_record`): an evaluation folder is one row, a run folder
(`reflectrl pipeline --out`) has one row per evaluation below it. It lists
the episodes of a row with filters (won, lost, crashed, out of steps, an
invalid action); an episode opens step by step, and each step expands into
the observation, the reflection, the menu with the agent's probability of
every entry, the chosen and the oracle's entry (where the evaluation judged
its steps) and the reward. The first step the judge found not optimal (or an
invalid action) is marked as where the episode went wrong. A second row,
from the same or another folder, shows the same seeds side by side.

Everything is in the one file: the data as JSON in a ``<script>`` element,
inline CSS and script, no network, no server. It is written with the
standard library rather than a template engine: the page is one fixed
skeleton, and the browser builds the rest from the data with `textContent`,
so no recorded text (observations hold ``<``, ``|`` and quotes) is ever
parsed as HTML. Older episode files without menus or probabilities show the
chosen and the oracle's entries only.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectrl.evaluation.harness import EPISODES_FILE, RESULT_FILE
from reflectrl.storage import atomic_write_bytes

PAGE_FILE = "view.html"
"""The page's file name in a run folder (the pipeline writes it next to report.md)."""
WON, CRASHED, OUT_OF_STEPS = "won", "crashed", "out of steps"
"""Episode outcomes: success, ended by the environment without success (Taxi: a crash), ended by the horizon."""


@dataclass
class Evaluation:
    """One evaluation's episodes, as a row of the page."""

    source: str
    """Label of the folder it was found in (the command's PATH)."""
    name: str
    """Its folder relative to that PATH (the folder's own name for an evaluation folder)."""
    agent: str | None
    """The agent's description from eval.json, when there is one."""
    episodes: list[dict[str, Any]]
    """Its `episode_record`s, in file order."""


def find_episode_files(path: Path) -> list[Path]:
    """The episodes files of `path`: the file itself, the folder's own, or every one in the folders below it.

    Hidden folders are left out: a data stage's resume journal (``.progress/episodes.jsonl``) is no evaluation.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    if (path / EPISODES_FILE).is_file():
        return [path / EPISODES_FILE]
    found = sorted(
        p for p in path.rglob(EPISODES_FILE) if not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not found:
        raise ValueError(
            f"{path} holds no {EPISODES_FILE}: give an evaluation folder (`reflectrl eval --out`), "
            "a run folder (`reflectrl pipeline --out`) or an episodes file"
        )
    return found


def read_episodes(path: Path) -> list[dict[str, Any]]:
    """The episode records of an episodes file (`harness.episode_record`, one JSON object a line)."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("trajectory"), list):
            raise ValueError(
                f"{path}, line {number}: not an evaluated episode (no trajectory); "
                "give files written by `reflectrl eval --out` or `reflectrl pipeline`"
            )
        records.append(record)
    return records


def load_evaluations(path: str | Path, source: str | None = None) -> list[Evaluation]:
    """Every evaluation at `path` (see `find_episode_files`), labelled `source` (default: the folder's name)."""
    path = Path(path)
    root = path.parent if path.is_file() else path
    source = source if source is not None else root.resolve().name
    evaluations = []
    for file in find_episode_files(path):
        folder = file.parent
        name = folder.relative_to(root).as_posix() if folder != root else root.resolve().name
        if file.name != EPISODES_FILE:
            name = file.relative_to(root).as_posix()
        evaluations.append(Evaluation(source, name, _agent(folder / RESULT_FILE), read_episodes(file)))
    return evaluations


def _agent(result_file: Path) -> str | None:
    try:
        return str(json.loads(result_file.read_text(encoding="utf-8"))["agent"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no eval.json next to the episodes (a copied file): the row is named by its folder only


def outcome(record: dict[str, Any]) -> str:
    """`WON`, `OUT_OF_STEPS` (the horizon ended it) or `CRASHED` (the environment ended it without success)."""
    if record.get("success"):
        return WON
    return OUT_OF_STEPS if record.get("truncated") else CRASHED


def invalid_steps(record: dict[str, Any]) -> int:
    """How many of the episode's actions the environment rejected."""
    return sum(1 for step in record["trajectory"] if step.get("invalid"))


def went_wrong(record: dict[str, Any]) -> int | None:
    """Index of the first step the judge found not optimal or the environment rejected; None if there is none.

    An evaluation without judged steps (scripted players, judging off) marks its invalid actions only.
    """
    for index, step in enumerate(record["trajectory"]):
        judged = step.get("judged") or {}
        if step.get("invalid") or (judged.get("oracle") is not None and judged.get("chosen_ok") is False):
            return index
    return None


def episode_key(record: dict[str, Any]) -> str:
    """What identifies an episode across evaluations: level, seed and reset options (the same start state)."""
    return json.dumps([record.get("level"), record.get("seed"), record.get("options")], sort_keys=True)


def page_data(
    evaluations: Sequence[Evaluation], title: str, compare: bool = False, shown: tuple[str, str | None] | None = None
) -> dict[str, Any]:
    """The JSON the page script reads: one row per evaluation, each episode with its outcome and first mistake.

    The page opens on the first evaluation; `compare`: next to the one of the same name from the second source
    (two PATHs), else the second source's first; `shown`: the names of the evaluations to open on the left and
    the right instead, where there are such.
    """
    if not evaluations:
        raise ValueError("no evaluation to show")
    rows = []
    for evaluation in evaluations:
        episodes = [
            {
                **record,
                "key": episode_key(record),
                "outcome": outcome(record),
                "invalid_steps": invalid_steps(record),
                "wrong": went_wrong(record),
            }
            for record in evaluation.episodes
        ]
        rows.append({"source": evaluation.source, "name": evaluation.name, "agent": evaluation.agent, "episodes": episodes})
    right = None
    if compare:
        first = evaluations[0].source
        others = [i for i, e in enumerate(evaluations) if e.source != first]
        same_name = [i for i in others if evaluations[i].name == evaluations[0].name]
        right = (same_name or others or [None])[0]
    left = 0
    if shown is not None:
        names = [e.name for e in evaluations]
        left = names.index(shown[0]) if shown[0] in names else left
        right = names.index(shown[1]) if shown[1] in names else right
    return {"title": title, "rows": rows, "left": left, "right": right}


def render_page(data: dict[str, Any]) -> str:
    """The page: fixed skeleton, inline CSS and script, `data` (see `page_data`) as embedded JSON."""
    # Inside a <script> element the HTML parser ends the element at "</script" and treats "<!--" specially,
    # whatever the JSON means there; \u003c spells "<" for JSON.parse without either.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    title = html.escape(data["title"])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        # An empty icon: otherwise the browser asks for /favicon.ico, an error on a page opened from disk.
        "<link rel=\"icon\" href=\"data:,\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{title}</h1><p class=\"legend\">Filters pick episodes of the left row. In a step, the menu "
        "shows the agent's probability of each entry; <span class=\"mark chosen\">chosen</span> is what it played, "
        "<span class=\"mark oracle\">oracle</span> the oracle's move and <span class=\"mark advised\">advised</span> "
        "the entry the reflection recommends, where the evaluation judged its steps.</p></header>\n"
        "<div id=\"controls\">"
        "<label>Left <select id=\"row-left\"></select></label>"
        "<label id=\"right-choice\">Right <select id=\"row-right\"></select></label>"
        "<button type=\"button\" id=\"swap\" title=\"swap the two rows\">swap</button>"
        "<span id=\"filters\"></span><span id=\"count\"></span></div>\n"
        "<main><nav><ul id=\"episodes\"></ul></nav><section id=\"detail\"></section></main>\n"
        f"<script type=\"application/json\" id=\"reflectrl-data\">{payload}</script>\n"
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def write_page(
    paths: Sequence[str | Path],
    out: str | Path,
    title: str | None = None,
    sources: Sequence[str] | None = None,
    shown: tuple[str, str | None] | None = None,
) -> tuple[Path, list[Evaluation]]:
    """Write the page of the evaluations at `paths` (one or two) to `out`; returns its path and the evaluations.

    `sources` labels each path (default: its folder's name); `shown`: see `page_data`.
    """
    if not 1 <= len(paths) <= 2:
        raise ValueError(f"give one or two folders, not {len(paths)}")
    labels = list(sources) if sources is not None else [None] * len(paths)
    per_path = [load_evaluations(path, label) for path, label in zip(paths, labels)]
    if len(per_path) == 2 and per_path[0][0].source == per_path[1][0].source:
        # Two folders of the same name (two runs' eval-rl-reflect): tell them apart by their parents.
        for path, evaluations in zip(paths, per_path):
            for evaluation in evaluations:
                evaluation.source = "/".join(Path(path).resolve().parts[-2:])
    evaluations = [e for group in per_path for e in group]
    if title is None:
        title = "Episodes of " + " and ".join(group[0].source for group in per_path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, render_page(page_data(evaluations, title, compare=len(paths) == 2, shown=shown)).encode("utf-8"))
    return out, evaluations


_CSS = """
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
header { padding: 10px 16px 4px; background: #fff; border-bottom: 1px solid #dde1e7; }
h1 { font-size: 18px; margin: 0 0 4px; }
.legend { margin: 0 0 6px; color: #555; font-size: 12.5px; }
#controls { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; padding: 8px 16px;
  background: #fff; border-bottom: 1px solid #dde1e7; position: sticky; top: 0; z-index: 2; }
#controls select { max-width: 420px; }
#filters button, #swap { border: 1px solid #b8c0cc; background: #fff; border-radius: 12px; padding: 2px 10px; cursor: pointer; }
#filters button[aria-pressed="true"] { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
#count { color: #555; }
main { display: grid; grid-template-columns: 300px 1fr; min-height: calc(100vh - 120px); }
nav { border-right: 1px solid #dde1e7; background: #fff; overflow-y: auto; max-height: calc(100vh - 110px); position: sticky; top: 42px; }
#episodes { list-style: none; margin: 0; padding: 0; }
#episodes button { display: block; width: 100%; text-align: left; border: 0; border-bottom: 1px solid #eef0f3;
  background: none; padding: 6px 10px; cursor: pointer; font: inherit; }
#episodes button:hover { background: #f0f4ff; }
#episodes button.selected { background: #dbe6ff; }
.where { display: block; font-weight: 600; }
.chip { display: inline-block; font-size: 12px; border-radius: 8px; padding: 0 6px; margin-right: 4px; }
.won { background: #dcfce7; color: #166534; }
.crashed { background: #fee2e2; color: #991b1b; }
.out-of-steps { background: #fef3c7; color: #92400e; }
.missing { background: #e5e7eb; color: #374151; }
#detail { padding: 10px 16px; display: grid; gap: 16px; align-content: start; }
#detail.two { grid-template-columns: 1fr 1fr; }
.column { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 8px 12px; min-width: 0; }
.column h2 { font-size: 15px; margin: 2px 0 4px; }
.facts { margin: 0 0 6px; color: #333; }
.task { margin-bottom: 6px; }
details.step { border-top: 1px solid #eef0f3; }
details.step > summary { cursor: pointer; padding: 4px 0; list-style-position: inside; }
details.step.mistake > summary .act { color: #991b1b; }
details.step.first-mistake { background: #fff5f5; }
summary .num { display: inline-block; min-width: 2.2em; color: #666; }
summary .reward { margin-left: 8px; color: #555; }
summary .oracle { margin-left: 8px; color: #1e40af; }
.badge { margin-left: 8px; font-size: 12px; background: #991b1b; color: #fff; border-radius: 8px; padding: 0 6px; }
.step .body { padding: 2px 0 10px 2.2em; }
.step h4 { margin: 6px 0 2px; font-size: 12px; text-transform: uppercase; color: #666; letter-spacing: .04em; }
pre { margin: 0; font: 13px/1.25 ui-monospace, Menlo, Consolas, monospace; background: #f3f4f6; padding: 6px 8px;
  border-radius: 4px; white-space: pre-wrap; overflow-wrap: anywhere; }
.reflection { margin: 0; white-space: pre-wrap; background: #f5f3ff; padding: 6px 8px; border-radius: 4px; }
.advice { margin: 2px 0 0; color: #555; font-size: 12.5px; }
table.menu { border-collapse: collapse; margin-top: 2px; width: 100%; }
table.menu td { padding: 2px 6px; border-bottom: 1px solid #f0f1f4; vertical-align: middle; }
table.menu tr.chosen td { background: #eef4ff; }
td.label { color: #666; width: 2em; }
td.prob, td.marks { width: 1%; white-space: nowrap; }
.bar { display: inline-block; width: 80px; height: 9px; background: #e5e7eb; border-radius: 4px; vertical-align: middle; margin-right: 6px; }
.bar span { display: block; height: 100%; background: #3b82f6; border-radius: 4px; }
.mark { font-size: 11.5px; border-radius: 8px; padding: 0 6px; margin-right: 3px; }
.mark.chosen { background: #1d4ed8; color: #fff; }
.mark.oracle { background: #15803d; color: #fff; }
.mark.advised { background: #7c3aed; color: #fff; }
.hint { color: #666; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("reflectrl-data").textContent);
  const rows = DATA.rows;
  for (const row of rows) row.byKey = new Map(row.episodes.map((e) => [e.key, e]));
  const FILTERS = [
    ["all", "all", () => true],
    ["won", "won", (e) => e.outcome === "won"],
    ["lost", "lost", (e) => e.outcome !== "won"],
    ["crashed", "crashed", (e) => e.outcome === "crashed"],
    ["out-of-steps", "out of steps", (e) => e.outcome === "out of steps"],
    ["invalid", "invalid action", (e) => e.invalid_steps > 0],
    ["differ", "outcomes differ", null],
  ];
  const state = { left: DATA.left, right: DATA.right, filter: "all", key: null };

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  const SOURCES = new Set(rows.map((r) => r.source)).size;
  function rowLabel(row) {
    // An evaluation folder given as PATH is its own source: its name once.
    const own = row.source === row.name || row.source.endsWith("/" + row.name);
    const name = SOURCES > 1 && !own ? row.source + ": " + row.name : row.name;
    return row.agent ? name + " (" + row.agent + ")" : name;
  }
  function steps(n) { return n + (n === 1 ? " step" : " steps"); }
  function signed(x) {
    const text = String(Number(x.toFixed(3)));
    return x > 0 ? "+" + text : text;
  }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function slug(text) { return text.replace(/ /g, "-"); }

  function entries() {
    const left = rows[state.left];
    const right = state.right === null ? null : rows[state.right];
    const list = left.episodes.map((e) => ({ key: e.key, left: e, right: right ? right.byKey.get(e.key) || null : null }));
    if (right) for (const e of right.episodes) if (!left.byKey.has(e.key)) list.push({ key: e.key, left: null, right: e });
    return list;
  }
  function passes(entry, filter) {
    if (filter === "differ") return Boolean(entry.left && entry.right) && entry.left.success !== entry.right.success;
    return FILTERS.find((f) => f[0] === filter)[2](entry.left || entry.right);
  }

  function fillSelects() {
    const left = document.getElementById("row-left");
    const right = document.getElementById("row-right");
    rows.forEach((row, i) => {
      const a = el("option", null, rowLabel(row)); a.value = String(i); left.append(a);
    });
    const none = el("option", null, "(none)"); none.value = ""; right.append(none);
    rows.forEach((row, i) => {
      const b = el("option", null, rowLabel(row)); b.value = String(i); right.append(b);
    });
    left.value = String(state.left);
    right.value = state.right === null ? "" : String(state.right);
    if (rows.length < 2) {
      document.getElementById("right-choice").hidden = true;
      document.getElementById("swap").hidden = true;
    }
    left.addEventListener("change", () => { state.left = Number(left.value); render(); });
    right.addEventListener("change", () => { state.right = right.value === "" ? null : Number(right.value); render(); });
    document.getElementById("swap").addEventListener("click", () => {
      if (state.right === null) return;
      [state.left, state.right] = [state.right, state.left];
      left.value = String(state.left); right.value = String(state.right);
      render();
    });
  }

  function fillFilters() {
    const box = document.getElementById("filters");
    for (const [name] of FILTERS) {
      const button = el("button");
      button.type = "button";
      button.dataset.filter = name;
      button.addEventListener("click", () => { state.filter = name; render(); });
      box.append(button);
    }
  }

  function episodeTitle(e) {
    let text = "seed " + e.seed + " \u00b7 " + e.level;
    if (e.options) text += " \u00b7 " + Object.entries(e.options).map(([k, v]) => k + " " + JSON.stringify(v)).join(", ");
    const tags = Object.entries(e.tags || {});
    if (tags.length) text += " \u00b7 " + tags.map(([k, v]) => k + "=" + v).join(" ");
    return text;
  }
  function chip(e) {
    if (!e) return el("span", "chip missing", "not played");
    return el("span", "chip " + slug(e.outcome), e.outcome + " " + signed(e.return) + ", " + steps(e.steps));
  }

  function render() {
    if (state.filter === "differ" && state.right === null) state.filter = "all";
    const all = entries();
    for (const button of document.querySelectorAll("#filters button")) {
      const name = button.dataset.filter;
      button.hidden = name === "differ" && state.right === null;
      const label = FILTERS.find((f) => f[0] === name)[1];
      button.textContent = label + " (" + all.filter((entry) => passes(entry, name)).length + ")";
      button.setAttribute("aria-pressed", String(name === state.filter));
    }
    const shown = all.filter((entry) => passes(entry, state.filter));
    if (!shown.some((entry) => entry.key === state.key)) state.key = shown.length ? shown[0].key : null;
    document.getElementById("count").textContent = shown.length + " of " + all.length + " episodes";
    const list = document.getElementById("episodes");
    list.replaceChildren();
    for (const entry of shown) {
      const button = el("button", entry.key === state.key ? "selected" : null, el("span", "where", episodeTitle(entry.left || entry.right)));
      button.type = "button";
      button.dataset.key = entry.key;
      button.append(chip(entry.left));
      if (state.right !== null) button.append(chip(entry.right));
      button.addEventListener("click", () => { state.key = entry.key; render(); });
      list.append(el("li", null, button));
    }
    renderDetail(shown.find((entry) => entry.key === state.key) || null);
  }

  function renderDetail(entry) {
    const detail = document.getElementById("detail");
    detail.replaceChildren();
    detail.classList.toggle("two", state.right !== null);
    if (!entry) { detail.append(el("p", "hint", "No episode matches this filter.")); return; }
    detail.append(column(rows[state.left], entry.left));
    if (state.right !== null) detail.append(column(rows[state.right], entry.right));
  }

  function column(row, e) {
    const box = el("div", "column");
    box.dataset.row = row.name;
    box.append(el("h2", null, rowLabel(row)));
    if (!e) { box.append(el("p", "hint", "This row did not play this episode.")); return box; }
    const facts = el("p", "facts", chip(e), episodeTitle(e));
    if (e.invalid_steps) facts.append(" \u00b7 " + e.invalid_steps + " invalid");
    if (e.wrong !== null) facts.append(" \u00b7 went wrong at step " + (e.wrong + 1));
    box.append(facts);
    if (e.task) {
      const task = el("details", "task", el("summary", null, "Task"), el("pre", null, e.task));
      box.append(task);
    }
    e.trajectory.forEach((step, i) => box.append(stepView(step, i, e)));
    return box;
  }

  function stepView(step, index, e) {
    const judged = step.judged || null;
    const details = el("details", "step");
    details.dataset.step = String(index + 1);
    const missed = judged && judged.oracle !== null && judged.oracle !== undefined && judged.chosen_ok === false;
    if (missed || step.invalid) details.classList.add("mistake");
    if (e.wrong === index) details.classList.add("first-mistake");
    const played = step.action !== null ? step.action : "invalid" + (step.answer !== null && step.answer !== undefined ? " (answer " + JSON.stringify(step.answer) + ")" : "");
    const summary = el("summary", null, el("span", "num", String(index + 1)), el("span", "act", played), el("span", "reward", "reward " + signed(step.reward)));
    if (missed) summary.append(el("span", "oracle", "oracle: " + judged.oracle));
    if (e.wrong === index) summary.append(el("span", "badge", "went wrong here"));
    details.append(summary);
    const body = el("div", "body", el("h4", null, "Observation"), el("pre", "observation", step.observation));
    if (step.reflection !== null && step.reflection !== undefined) {
      body.append(el("h4", null, "Reflection"), el("p", "reflection", step.reflection));
      if (judged && "recommended" in judged) {
        body.append(el("p", "advice", judged.recommended === null ? "The reflection names no menu entry."
          : "It recommends \u201c" + judged.recommended + "\u201d: " + (judged.recommended_ok ? "optimal." : "not optimal.")));
      }
    }
    body.append(el("h4", null, "Menu"), menuView(step, judged));
    details.append(body);
    return details;
  }

  function marks(entry, step, judged) {
    const out = [];
    if (entry === step.action) out.push(el("span", "mark chosen", "chosen"));
    if (judged && entry === judged.oracle) out.push(el("span", "mark oracle", "oracle"));
    if (judged && entry === judged.recommended) out.push(el("span", "mark advised", "advised"));
    return out;
  }

  function menuView(step, judged) {
    if (!step.menu) {
      // Older episode files hold no menu: what was played and what the oracle would have played.
      const known = [step.action, judged && judged.oracle, judged && judged.recommended].filter((x, i, all) => x && all.indexOf(x) === i);
      if (!known.length) return el("p", "hint", "This episode file has no menu.");
      const table = el("table", "menu");
      for (const entry of known) table.append(el("tr", null, el("td", null, entry), el("td", null, ...marks(entry, step, judged))));
      return el("div", null, el("p", "hint", "This episode file has no menu or probabilities (written before they were recorded)."), table);
    }
    const table = el("table", "menu");
    step.menu.forEach((entry, i) => {
      const p = step.probs ? step.probs[i] : null;
      const prob = el("td", "prob");
      if (p === null || p === undefined) prob.append("\u2014");
      else {
        const fill = el("span");
        fill.style.width = (100 * p).toFixed(1) + "%";
        prob.append(el("span", "bar", fill), pct(p));
      }
      const tr = el("tr", entry === step.action ? "chosen" : null,
        el("td", "label", step.labels ? step.labels[i] : String(i + 1)), el("td", null, entry), prob, el("td", "marks", ...marks(entry, step, judged)));
      table.append(tr);
    });
    return table;
  }

  fillSelects();
  fillFilters();
  render();
})();
"""
