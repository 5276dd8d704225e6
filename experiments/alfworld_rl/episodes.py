"""Where do the agents of an ALFWorld pipeline run go wrong? Each held-out episode replayed against the oracle.

A pick-and-place episode has two parts: a **search** (go to receptacles, open the closed ones, until an object of
the task's type is in view; where it is is hidden from the agent) and an **errand** (take it, go to a receptacle
of the target type, move it there; everything it needs is in view). Each evaluated episode
(`eval-*/valid_unseen/episodes.jsonl` or `eval-*/full/...` of a `reflectrl pipeline alfworld` run folder) is
replayed in the game it was played in (same game, seed and actions; the text engine is deterministic given
those), and per row this script counts

* how far episodes got: goal object seen (named in a step's feedback), taken, put into a target receptacle (= won),
* the search: receptacles visited, visits to a receptacle already visited in the episode (loops), and the
  commands that change nothing (look, inventory, examine, help),
* the agent's commands against the oracle's (the planner's next command, which knows where the object is; in
  the errand part the planner's command is the only sensible one, in the search part it is privileged),
* for reflective agents, whether the reflection's first command ("Next: go to shelf 4. ..." is what the
  concise teacher wrote) is the oracle's, whether it is on the step's menu at all, and whether the agent took it.

    python experiments/alfworld_rl/episodes.py RUN_FOLDER    (from the clone the run was made in, or with
                                                               ALFWORLD_DATA naming its game set)
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

from reflectrl.envs import lookup, make_env
from reflectrl.envs.alfworld.tasks import goal_types

NEXT = re.compile(r"(?:^|\s)Next:\s*(.+?)\.(?:\s|$)")
"""The teacher's "Next: <command>." sentence: first in the concise style, after the facts in the grounded style;
ALFWorld commands contain no '. ' of their own."""
IDLE = ("look", "inventory", "help", "examine ")


def recommended(reflection: str | None) -> str | None:
    found = NEXT.search(reflection or "")
    return found.group(1).strip() if found else None


def seen(text: str, obj_type: str) -> bool:
    """Does a step's text name an object of the goal type ('alarmclock 1')?"""
    return re.search(rf"\b{re.escape(obj_type)} \d+\b", text.lower()) is not None


def replay(env, episode: dict) -> tuple[list[str], list[bool], bool, list[list[str]]]:
    """The oracle's command before each step, whether the agent was in the errand part (goal object seen) when it
    chose, whether it had seen one by the end, and the menu of each step."""
    _, info = env.reset(seed=episode["seed"], options=episode["options"])
    obj_type, _ = goal_types(env.game.game_id)
    oracle, errand, in_view, menus = [], [], False, []
    for step in episode["trajectory"]:
        oracle.append(env.oracle_action())
        errand.append(in_view)
        menus.append(list(info["actions"]))
        obs, _, terminated, truncated, info = env.step(step["action"])
        in_view = in_view or seen(obs.split("Admissible actions:")[0].split("Observation:")[-1], obj_type)
        if terminated or truncated:
            break
    return oracle, errand, in_view, menus


def count(env, episode: dict) -> dict[str, float]:
    c: dict[str, float] = defaultdict(float)
    oracle, errand, found, menus = replay(env, episode)
    obj_type, _ = goal_types(env.game.game_id)
    c["episodes"] = 1
    c["success"] = float(episode["success"])
    visited: set[str] = set()
    took = False
    for step, best, in_errand, menu in zip(episode["trajectory"], oracle, errand, menus):
        action = step["action"]
        c["steps"] += 1
        part = "errand" if in_errand else "search"
        c[f"{part}_steps"] += 1
        c[f"{part}_right"] += action == best
        if action.startswith("go to "):
            c["go"] += 1
            c["revisits"] += action in visited
            visited.add(action)
        c["idle"] += action.startswith(IDLE)
        if action.startswith("take ") and action.split(" ")[1] == obj_type:
            took = True
        if step.get("reflection") is not None:
            advice = recommended(step["reflection"])
            c["reflected"] += 1
            c[f"{part}_reflected"] += 1
            c[f"{part}_reflection_right"] += advice == best
            c["followed"] += advice == action
            c["advice_on_menu"] += advice in menu
            c["followed_on_menu"] += advice in menu and advice == action
    c["found"] = float(found or took)
    c["took"] = float(took)
    c["places"] = len(visited)
    return c


def summarise(run: Path) -> dict[str, dict[str, float]]:
    settings = json.loads((run / "pipeline.json").read_text())["preset"]
    env_kwargs = dict(settings["env_kwargs"])
    if "ALFWORLD_DATA" in os.environ:  # the run's game set elsewhere than where it was recorded (relative to its clone)
        env_kwargs.pop("data_dir", None)
    table: dict[str, dict[str, float]] = {}
    for folder in sorted(run.glob("eval-*")):
        for level_dir in sorted(p for p in folder.iterdir() if (p / "episodes.jsonl").is_file()):
            env = make_env(
                "alfworld", split=lookup("alfworld").splits["test"], level=level_dir.name, horizon=settings["horizon"],
                **env_kwargs,
            )
            total: dict[str, float] = defaultdict(float)
            for line in (level_dir / "episodes.jsonl").read_text().splitlines():
                for key, value in count(env, json.loads(line)).items():
                    total[key] += value
            table[folder.name.removeprefix("eval-")] = dict(total)
    return table


def render(table: dict[str, dict[str, float]]) -> str:
    lines = [
        "| row | episodes | object seen | taken | won | places visited (mean) | revisits / go to | idle commands / steps "
        "| search: agent = oracle | errand: agent = oracle | search: reflection = oracle | errand: reflection = oracle "
        "| agent followed reflection | reflection's command on the menu | followed, when on the menu |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def share(part: float, whole: float) -> str:
        return f"{100 * part / whole:.0f}%" if whole else "-"

    for row, c in table.items():
        n = c["episodes"]
        lines.append(
            f"| {row} | {n:.0f} | {share(c['found'], n)} | {share(c['took'], n)} | {share(c['success'], n)} | "
            f"{c['places'] / n:.1f} | {share(c.get('revisits', 0), c.get('go', 0))} | {share(c.get('idle', 0), c['steps'])} | "
            f"{share(c.get('search_right', 0), c.get('search_steps', 0))} | {share(c.get('errand_right', 0), c.get('errand_steps', 0))} | "
            f"{share(c.get('search_reflection_right', 0), c.get('search_reflected', 0))} | "
            f"{share(c.get('errand_reflection_right', 0), c.get('errand_reflected', 0))} | {share(c.get('followed', 0), c.get('reflected', 0))} | "
            f"{share(c.get('advice_on_menu', 0), c.get('reflected', 0))} | {share(c.get('followed_on_menu', 0), c.get('advice_on_menu', 0))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(render(summarise(Path(sys.argv[1]))))
