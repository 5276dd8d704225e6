"""How often does a reflective agent do what its reflection recommends, and which crashes follow it? (DangerousTaxi.)

Reads the `episodes.jsonl` of `reflectrl eval --agent reflect --out DIR` runs and finds each
step's recommendation with `reflector_probe.recommendation` (the oracle explainer's phrasings,
which the reflector imitates). A crash is an unsuccessful episode whose last step cost 20 or
more; it "followed" the reflection when that last action was the recommended one. This tells
apart the two ways a reflective agent fails: the reflector recommends a bad move and the
policy obeys, or the reflector is right and the policy does something else. It also counts the
crashes that drive into a wall the state text lists ("Moves blocked by a wall or the edge
here: ..."), which the policy could have read, and those that are a pickup or drop-off.
Usage: python experiments/taxi_rl/reflection_follow.py NAME=DIR [NAME=DIR ...]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reflector_probe import recommendation  # noqa: E402

CRASH_REWARD = -20.0
BLOCKED = re.compile(r"Moves blocked by a wall or the edge here: ([a-z, ]+)\.")


def listed_as_blocked(action: str, observation: str) -> bool:
    found = BLOCKED.search(observation)
    return action.startswith("move ") and found is not None and action[len("move "):] in found.group(1).split(", ")


def is_crash(episode: dict) -> bool:
    """An unsuccessful episode ended by a move that cost a crash (not by the horizon)."""
    steps = episode["trajectory"]
    return not episode["success"] and bool(steps) and steps[-1]["reward"] <= CRASH_REWARD


def follow_stats(path: Path) -> dict[str, float]:
    stats = dict(episodes=0, successes=0, decisions=0, followed=0, crashes=0, crashes_followed=0, into_listed_wall=0, timeouts=0)
    for line in path.read_text(encoding="utf-8").splitlines():
        episode = json.loads(line)
        steps = episode["trajectory"]
        stats["episodes"] += 1
        stats["successes"] += bool(episode["success"])
        for step in steps:
            stats["decisions"] += 1
            stats["followed"] += recommendation(step["reflection"] or "") == step["action"]
        if is_crash(episode):
            last = steps[-1]
            stats["crashes"] += 1
            stats["crashes_followed"] += recommendation(last["reflection"] or "") == last["action"]
            stats["into_listed_wall"] += listed_as_blocked(last["action"], last["observation"])
        elif not episode["success"] and steps:
            stats["timeouts"] += 1
    return stats


def main(specs: list[str]) -> None:
    print("| agent | success | decisions | follows the reflection | crashes | of which obeyed the reflection | of which went against it | of which into a listed wall | timeouts |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in specs:
        name, _, folder = spec.rpartition("=")
        s = follow_stats(Path(folder) / "episodes.jsonl")
        print(
            f"| {name or folder} | {s['successes']}/{s['episodes']} | {s['decisions']} | {100 * s['followed'] / max(s['decisions'], 1):.1f}% "
            f"| {s['crashes']} | {s['crashes_followed']} | {s['crashes'] - s['crashes_followed']} | {s['into_listed_wall']} | {s['timeouts']} |"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
