"""Where do the agents of an AutoExplore pipeline run go wrong? Each held-out episode replayed against the oracle.

Every evaluated episode (`eval-*/<level>/episodes.jsonl` of a `reflectrl pipeline autoexplore` run folder) is
replayed in the environment it was played in (same task, seed and actions; AutoExplore is deterministic given
those), and at every step the oracle's next command (a shortest path to a target) is compared with

* the action the agent took (``agent = oracle``),
* for reflective agents, the command the reflection recommends first ("Next: cd data. ..." is what the concise
  teacher wrote and the reflector imitates; ``reflection = oracle``), and whether the agent took it (``followed``).

The first step is reported on its own: it is the step that reads the question and picks the folder at the root,
the one decision that needs an understanding of the question; the rest is mostly reading file names.
Each episode ends in one of: success, a wrong ``id`` (answered with another file), or the horizon.

    python experiments/autoexplore_rl/decisions.py RUN_FOLDER
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from reflectrl.envs import make_env

NEXT = re.compile(r"^\s*Next:\s*(.+?)\.(?:\s|$)")
"""The concise teacher's first sentence ("Next: cd beat_ops. ..."); commands contain no '. ' of their own."""


def recommendation(reflection: str | None) -> str | None:
    found = NEXT.match(reflection or "")
    return found.group(1).strip() if found else None


def replay(settings: dict, level: str, episode: dict) -> list[str]:
    """The oracle's command before each step of `episode`."""
    env = make_env("autoexplore", split="test", level=level, horizon=settings["horizon"], **settings["env_kwargs"])
    env.reset(seed=episode["seed"], options=episode["options"])
    oracle = []
    for step in episode["trajectory"]:
        oracle.append(env.oracle_action())
        env.step(step["action"])
    return oracle


def summarise(run: Path) -> dict[str, dict[str, dict[str, float]]]:
    settings = json.loads((run / "pipeline.json").read_text())["preset"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for folder in sorted(run.glob("eval-*")):
        for level_dir in sorted(p for p in folder.iterdir() if (p / "episodes.jsonl").is_file()):
            counts: dict[str, float] = defaultdict(float)
            for line in (level_dir / "episodes.jsonl").read_text().splitlines():
                episode = json.loads(line)
                oracle = replay(settings, level_dir.name, episode)
                counts["episodes"] += 1
                last = episode["trajectory"][-1] if episode["trajectory"] else {}
                if episode["success"]:
                    counts["success"] += 1
                elif str(last.get("action", "")).startswith("id "):
                    counts["wrong_id"] += 1
                else:
                    counts["horizon"] += 1
                for i, (step, best) in enumerate(zip(episode["trajectory"], oracle)):
                    counts["steps"] += 1
                    counts["agent_right"] += step["action"] == best
                    if i == 0:
                        counts["first_right"] += step["action"] == best
                    advice = recommendation(step.get("reflection"))
                    if step.get("reflection") is not None:
                        counts["reflected"] += 1
                        counts["reflection_right"] += advice == best
                        counts["followed"] += advice == step["action"]
                        if i == 0:
                            counts["first_reflection_right"] += advice == best
            table.setdefault(folder.name.removeprefix("eval-"), {})[level_dir.name] = dict(counts)
    return table


def render(table: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| row | level | episodes | success | wrong id | horizon | agent = oracle (steps) | first step = oracle "
        "| reflection = oracle | first reflection = oracle | agent followed reflection |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def share(part: float, whole: float) -> str:
        return f"{100 * part / whole:.0f}%" if whole else "-"

    for row, levels in table.items():
        for level, c in levels.items():
            n, steps, reflected = c["episodes"], c["steps"], c.get("reflected", 0)
            lines.append(
                f"| {row} | {level} | {n:.0f} | {share(c.get('success', 0), n)} | {share(c.get('wrong_id', 0), n)} | "
                f"{share(c.get('horizon', 0), n)} | {share(c.get('agent_right', 0), steps)} | {share(c.get('first_right', 0), n)} | "
                f"{share(c.get('reflection_right', 0), reflected)} | {share(c.get('first_reflection_right', 0), n if reflected else 0)} | "
                f"{share(c.get('followed', 0), reflected)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(render(summarise(Path(sys.argv[1]))))
