"""The oracle's explainer for DangerousTaxi: reflections from the true state and shortest routes.

Shortest-route lengths come from the taxi module's own distance tables
(`_distances`, `_transitions`), so "optimal" here means exactly what the
environment's oracle optimises. A reflection says what the last move did (and
how many steps a detour cost), where the taxi and its current target are,
which direction leads there and why (walls included), and which moves would
crash. Wording is drawn from several phrasings with the caller's RNG.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from reflectrl.envs.base import TextEnv
from reflectrl.envs.taxi import (
    ACTIONS,
    IN_TAXI,
    STOP_NAMES,
    _distances,
    _offset_words,
    _stop,
    _taxi,
    _transitions,
)
from reflectrl.teachers.base import Assessment, ReflectionRequest
from reflectrl.teachers.explainers import Explainer, pick

MOVES = {"move south": (1, 0), "move north": (-1, 0), "move east": (0, 1), "move west": (0, -1)}
DIRECTION = {name: name.split()[1] for name in MOVES}


def _goal(env) -> str:
    return "pickup" if env.level == "pickup" else "deliver"


def action_costs(env) -> dict[str, int | None]:
    """Steps to finish after each action from the current state (None: the action crashes)."""
    nxt, done = _transitions()
    dist = _distances(_goal(env))
    state = env._state  # the encoded state; reading it is how the oracle sees the truth
    passenger_before = env.state[2]
    costs: dict[str, int | None] = {}
    for a, name in enumerate(ACTIONS):
        s2 = int(nxt[state, a])
        if env.level == "pickup":
            finish = passenger_before != IN_TAXI and _taxi().decode(s2)[2] == IN_TAXI
        else:
            finish = bool(done[state, a])
        costs[name] = 1 if finish else (None if s2 == state else 1 + int(dist[s2]))
    return costs


def taxi_facts(env: TextEnv) -> dict[str, Any]:
    row, col, passenger, dest = env.state
    costs = action_costs(env)
    carrying = passenger == IN_TAXI
    if carrying:
        target, target_name = _stop(dest), f"the destination {STOP_NAMES[dest]}"
    else:
        target, target_name = _stop(passenger), f"the passenger at {STOP_NAMES[passenger]}"
    feasible = [c for c in costs.values() if c is not None]
    return {
        "taxi": [int(row), int(col)],
        "carrying": bool(carrying),
        "target": [int(target[0]), int(target[1])],
        "target_name": target_name,
        "crashing_moves": [name for name in MOVES if costs[name] is None],
        "steps_left": min(feasible) if feasible else None,
    }


def taxi_assess(env: TextEnv, action: str) -> Assessment:
    costs = action_costs(env)
    feasible = {name: c for name, c in costs.items() if c is not None}
    best_cost = min(feasible.values())
    cost = costs.get(action)
    best = env.oracle_action()
    if cost is not None and cost == best_cost:
        return Assessment(action=action, mistake=False)
    details = {"crash": cost is None, "extra_steps": None if cost is None else cost - best_cost}
    return Assessment(action=action, mistake=True, better=best, details=details)


def _offset(facts: dict[str, Any]) -> tuple[int, int]:
    (row, col), (trow, tcol) = facts["taxi"], facts["target"]
    return trow - row, tcol - col


def _where(facts: dict[str, Any], rng: np.random.Generator) -> str:
    dr, dc = _offset(facts)
    bits = []
    if dr:
        bits.append(f"{abs(dr)} row{'s' if abs(dr) > 1 else ''} {'down' if dr > 0 else 'up'}")
    if dc:
        bits.append(f"{abs(dc)} column{'s' if abs(dc) > 1 else ''} to the {'right' if dc > 0 else 'left'}")
    (row, col), (trow, tcol) = facts["taxi"], facts["target"]
    name = facts["target_name"]
    if not bits:
        return pick(rng, (f"The taxi is right on the square of {name}.", f"The taxi has reached {name} at row {row}, column {col}."))
    gap = " and ".join(bits)
    return pick(
        rng,
        (
            f"The taxi is at row {row}, column {col}, and {name} is at row {trow}, column {tcol}: {gap}.",
            f"{name[0].upper() + name[1:]} is {gap} from the taxi (row {row}, column {col}).",
            f"From row {row}, column {col}, {name} lies {gap}.",
        ),
    )


def _last_move(request: ReflectionRequest, rng: np.random.Generator) -> str | None:
    last = request.last
    if last is None:
        return None
    facts = request.facts
    if last.action == "pick up passenger" and not last.mistake:
        return pick(
            rng,
            (
                f"Picking up the passenger worked; now the job is to reach {facts['target_name']}.",
                f"The passenger is on board now, so the next goal is {facts['target_name']}.",
            ),
        )
    if last.mistake:
        extra = last.details.get("extra_steps")
        cost = f" and added {extra} steps to the trip" if extra else ""
        if last.action in MOVES:
            way = DIRECTION[last.action]
            text = pick(
                rng,
                (
                    f"Going {way} was a detour: it took the taxi away from the shortest route{cost}.",
                    f"The last move ({way}) was a mistake{cost}; it did not bring the taxi closer to {facts['target_name']}.",
                    f"Moving {way} did not help: it led off the shortest path{cost}.",
                ),
            )
        else:
            text = f"'{last.action}' was the wrong move here{cost}."
        if last.better in MOVES:
            text += pick(rng, (f" Heading {DIRECTION[last.better]} would have been better.", f" {DIRECTION[last.better].capitalize()} was the better choice."))
        return text
    if last.action in MOVES:
        way = DIRECTION[last.action]
        return pick(
            rng,
            (
                f"Moving {way} was a good move: it kept the taxi on the shortest route.",
                f"The last move, {way}, brought the taxi one step closer to {facts['target_name']}.",
                f"Going {way} was right; the taxi is making progress.",
            ),
        )
    return pick(rng, (f"'{last.action}' was the right call.", "The last action went as planned."))


def _next_move(request: ReflectionRequest, rng: np.random.Generator) -> str:
    facts, best = request.facts, request.best_action
    if best == "pick up passenger":
        return pick(
            rng,
            (
                "The taxi is on the passenger's square, so the passenger should be picked up now.",
                "Since the taxi stands where the passenger waits, picking them up is the next step.",
                "Time to pick up the passenger: the taxi is right there.",
            ),
        )
    if best == "drop off passenger":
        return pick(
            rng,
            (
                "The taxi is at the destination with the passenger inside, so dropping them off finishes the trip.",
                "This is the destination; drop off the passenger now.",
                "With the passenger on board at the destination, the next step is to drop them off.",
            ),
        )
    way = DIRECTION.get(best, best)
    closer = best in MOVES and _closes_gap(facts, best)
    blocked = [DIRECTION[m] for m in facts["crashing_moves"]]
    if closer:
        return pick(
            rng,
            (
                f"So the taxi should move {way}.",
                f"Moving {way} closes the gap, so that is the next move.",
                f"The shortest route starts by going {way}.",
            ),
        )
    wall = f" (going {' or '.join(blocked)} would hit a wall)" if blocked else ""
    return pick(
        rng,
        (
            f"A wall is in the way{wall}, so the shortest route goes {way} first.",
            f"The direct way is blocked by walls{wall}; moving {way} is how to get around them.",
            f"Walls force a detour here{wall}: the taxi should move {way}.",
        ),
    )


def _danger(request: ReflectionRequest, rng: np.random.Generator) -> str | None:
    blocked = [DIRECTION[m] for m in request.facts["crashing_moves"]]
    if not blocked or rng.random() < 0.4:
        return None
    listed = " or ".join(blocked)
    return pick(
        rng,
        (
            f"Careful: moving {listed} would crash into a wall.",
            f"Driving {listed} from here would hit a wall and end the trip.",
            f"Avoid going {listed}; there is a wall there.",
        ),
    )


def taxi_explain(request: ReflectionRequest, rng: np.random.Generator) -> str:
    parts = [_last_move(request, rng), _where(request.facts, rng)]
    danger = _danger(request, rng)
    nxt = _next_move(request, rng)
    parts += [danger, nxt] if rng.random() < 0.5 else [nxt, danger]
    return " ".join(p for p in parts if p)


def _offset_text(facts: dict[str, Any]) -> str:
    dr, dc = _offset(facts)
    bits = ([f"{abs(dr)} {'down' if dr > 0 else 'up'}"] if dr else []) + ([f"{abs(dc)} {'right' if dc > 0 else 'left'}"] if dc else [])
    return ", ".join(bits) if bits else "here"


def taxi_explain_concise(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """Next move first, then why, then the verdict on the last move; one template, no wording draws.

    e.g. "Next: move north. Y is 1 down, 3 left; blocked: west. Last move (south) was a detour."
    """
    facts, best = request.facts, request.best_action
    name = facts["target_name"]
    parts = [f"Next: {best}.", f"{name[0].upper() + name[1:]} is {_offset_text(facts)}"]
    blocked = [DIRECTION[m] for m in facts["crashing_moves"]]
    parts[-1] += f"; blocked: {', '.join(blocked)}." if blocked else "."
    last = request.last
    if last is not None:
        done = f"({DIRECTION[last.action]})" if last.action in MOVES else f"({last.action})"
        parts.append(f"Last move {done} was {'a mistake' if last.mistake else 'good'}.")
    return " ".join(parts)


def taxi_explain_reasoned(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """The verdict on the last move, what the observation states, then the next move; one template.

    e.g. "Last move (south) was good. Taxi at row 2, column 3; destination Y at row 4, column 0: 2 rows
    south and 3 columns west; blocked: east. Next: move south."

    The paper's teacher order (consequence of the last action, good or bad, next action), with the analysis
    right before the move so that the move is conditioned on it. Every fact is written in the observation's
    own words (its offsets, less "of the taxi" to fit 60 tokens; "at the taxi's square"; the compass names of
    the blocked moves), so a small reflector copies them instead of converting them, and the one decision left,
    the move, reads the offset's direction next to the blocked list. The same sentence shape on the target's
    square as anywhere else: with a shape of its own ("Taxi at row 4, column 3, on B.") the choice came before
    the reflector had written the target's position, and SFT reflectors wrote "move north" there in most
    episodes (experiments/taxi_reflection).
    """
    return " ".join(_verdict_and_facts(request, wall_sentence=True) + [f"Next: {request.best_action}."])


def _verdict_and_facts(request: ReflectionRequest, *, wall_sentence: bool) -> list[str]:
    """The reasoned style's sentences before "Next:"; `wall_sentence` adds "A wall is in the way." before a move that
    does not close the gap."""
    facts, best = request.facts, request.best_action
    (row, col), (trow, tcol) = facts["taxi"], facts["target"]
    name = facts["target_name"].removeprefix("the ")
    parts = []
    last = request.last
    if last is not None:
        done = f"({DIRECTION[last.action]})" if last.action in MOVES else f"({last.action})"
        parts.append(f"Last move {done} was {'a mistake' if last.mistake else 'good'}.")
    offset = _offset_words(trow - row, tcol - col).removesuffix(" of the taxi")
    where = f"Taxi at row {row}, column {col}; {name} at row {trow}, column {tcol}: {offset}"
    if (row, col) != (trow, tcol):
        blocked = [DIRECTION[m] for m in facts["crashing_moves"]]
        where += f"; blocked: {', '.join(blocked) or 'none'}"
        if wall_sentence and best in MOVES and not _closes_gap(facts, best):
            where += ". A wall is in the way"
    return parts + [where + "."]


def taxi_explain_mapped(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """The reasoned reflection with the rows the map leaves open between the taxi's and the target's columns.

    e.g. "Taxi at row 0, column 1; destination G at row 0, column 4: 3 columns east; blocked: north, east. Open
    across: row 2. Next: move south."

    Why: reasoned reflectors stayed wrong on the squares where a wall further on forces a detour; they had to
    memorise each such square from the few rows that hold it (experiments/taxi_focal). The rows on which no wall
    stands between two columns depend on the two columns alone (three different answers for the taxi's stops),
    so every row teaches them, and from them the oracle's move follows by one rule on every state of every level
    (`move_by_open_rows`). The walls are drawn in the map of the observation, so the reflector states nothing the policy
    could not read. At most 62 tokens of SmolLM2's tokenizer (the reasoned style: 59).
    """
    return " ".join(_mapped_facts(request, waypoint=False) + [f"Next: {request.best_action}."])


def taxi_explain_waypoint(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """The mapped reflection plus, where the taxi stands on a row that the walls close, the open row it must reach first.

    e.g. "Taxi at row 1, column 0; destination G at row 0, column 4: 1 row north and 4 columns east; blocked: west.
    Open across: row 2. Row 1 is closed: first to row 2. Next: move south."

    Why: mapped reflectors wrote every fact right and still chose the wrong move in 26 to 50 of the 42 to 51 wrong
    steps of each seed's evaluation, nearly all with the taxi off the open rows (row 1, target north: "move north"
    where the rule says south; experiments/taxi_seeds_v4). The rule's first clause, towards the nearest open row,
    is the one step that mapped reflections leave unwritten; written out, the move only compares two row numbers.
    """
    return " ".join(_mapped_facts(request, waypoint=True) + [f"Next: {request.best_action}."])


def _mapped_facts(request: ReflectionRequest, *, waypoint: bool) -> list[str]:
    """The mapped style's sentences before "Next:"; `waypoint` adds the open row to reach first when the taxi is off them."""
    parts = _verdict_and_facts(request, wall_sentence=False)
    (row, col), (trow, tcol) = request.facts["taxi"], request.facts["target"]
    if col != tcol:
        rows = open_rows_across(col, tcol)
        parts.append(f"Open across: {rows_text(rows)}." if len(rows) < len(_taxi().desc[1:-1]) else "No walls across.")
        if waypoint and row not in rows:
            parts.append(f"Row {row} is closed: first to row {first_open_row(row, trow, rows)}.")
    return parts


def first_open_row(row: int, trow: int, open_rows: list[int]) -> int:
    """The open row a taxi off them heads for: the nearest, and of two as near, the one nearer the target's row."""
    return min(open_rows, key=lambda r: (abs(r - row), abs(r - trow)))


def open_rows_across(col: int, tcol: int) -> list[int]:
    """The rows on which the map has no wall between columns `col` and `tcol`."""
    lines = _taxi().desc[1:-1]  # the grid rows, without the top and bottom borders
    boundaries = range(min(col, tcol), max(col, tcol))  # boundary b lies between columns b and b + 1
    return [r for r, line in enumerate(lines) if all(line[2 * b + 2] != b"|" for b in boundaries)]


def move_by_open_rows(taxi: tuple[int, int], target: tuple[int, int], open_rows: list[int]) -> str | None:
    """The move that the mapped style's rule gives from its written facts (None on the target's square): off the
    open rows, towards the nearest one; on them, towards the target's row while the next row is open, then along
    the row, then down or up. It is the oracle's own move in every state of every level (`tests/test_teachers.py`),
    and it tells a mapped reflection that follows its own facts from one that does not."""
    (row, col), (trow, tcol) = taxi, target
    if (row, col) == (trow, tcol):
        return None
    vertical = "move south", "move north"
    if row not in open_rows:
        nearest = first_open_row(row, trow, open_rows)
        return vertical[0] if nearest > row else vertical[1]
    if row != trow and row + (1 if trow > row else -1) in open_rows:
        return vertical[0] if trow > row else vertical[1]
    if col != tcol:
        return "move east" if tcol > col else "move west"
    return vertical[0] if trow > row else vertical[1]


def rows_text(rows: list[int]) -> str:
    """'row 2', 'rows 0-2', 'rows 0 and 2-4' for sorted row numbers."""
    runs: list[list[int]] = []
    for r in rows:
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    spans = [f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}" for run in runs]
    return ("rows " if len(rows) > 1 else "row ") + " and ".join(spans)


def written_open_rows(text: str) -> list[int] | None:
    """The rows a mapped reflection says are open across (`rows_text` read back; every row for "No walls across."),
    None where it says neither (the taxi in the target's column, or a reflection in another style)."""
    if "No walls across." in text:
        return list(range(len(_taxi().desc[1:-1])))
    found = re.search(r"Open across: rows? ([\d\- and]+)\.", text)
    if not found:
        return None
    spans = [span.split("-") for span in found.group(1).split(" and ")]
    return [r for span in spans for r in range(int(span[0]), int(span[-1]) + 1)]


def _closes_gap(facts: dict[str, Any], move: str) -> bool:
    dr, dc = _offset(facts)
    step_r, step_c = MOVES[move]
    return bool((step_r and np.sign(step_r) == np.sign(dr)) or (step_c and np.sign(step_c) == np.sign(dc)))


EXPLAINER = Explainer(
    facts=taxi_facts, assess=taxi_assess, explain=taxi_explain, concise=taxi_explain_concise, reasoned=taxi_explain_reasoned,
    mapped=taxi_explain_mapped, waypoint=taxi_explain_waypoint,
)
