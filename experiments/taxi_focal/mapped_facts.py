"""How a mapped reflector's reflections hold up: the fact it adds and whether its move follows from its own facts.

For every judged step of an evaluation (its episodes.jsonl, gzipped or not) where the taxi is not in the
destination's column: is the written "Open across: ..." (or "No walls across.") the map's
(`teachers.oracle_taxi.open_rows_across`), and is its "Next:" the move that its own written facts give
(`teachers.oracle_taxi.move_by_open_rows`)? Also the detour squares (the oracle's move is none of the directions the
observation gives to the destination): right / wrong, and how many wrong ones recommend a move the observation lists
as blocked.

    python experiments/taxi_focal/mapped_facts.py EPISODES [EPISODES ...]
"""

from __future__ import annotations

import gzip
import json
import re
import sys

from reflectrl.teachers.oracle_taxi import move_by_open_rows, open_rows_across, written_open_rows

POSITIONS = re.compile(r"Taxi at row (\d), column (\d), with the passenger; destination \w \(row (\d), column (\d)\)")


def check(path: str) -> dict[str, int]:
    opener = gzip.open if path.endswith(".gz") else open
    counts = dict.fromkeys(["steps", "fact right", "own rule", "both", "detour right", "detour wrong", "blocked"], 0)
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            for step in json.loads(line)["trajectory"]:
                judged, text, observation = step.get("judged"), step["reflection"], step["observation"]
                if not judged:
                    continue
                row, col, trow, tcol = map(int, POSITIONS.search(observation).groups())
                towards = observation.split("The destination is ")[1].split(".")[0]
                oracle = judged["oracle"]
                if oracle.startswith("move") and oracle.split()[1] not in towards:
                    counts["detour right" if judged["recommended_ok"] else "detour wrong"] += 1
                    blocked = observation.split("Blocked moves here: ")[1].split(".")[0]
                    recommended = judged["recommended"] or ""
                    counts["blocked"] += (not judged["recommended_ok"] and recommended.startswith("move")
                                          and recommended.split()[1] in blocked)
                if col == tcol:
                    continue
                counts["steps"] += 1
                rows = written_open_rows(text)
                fact = rows == open_rows_across(col, tcol)
                nxt = text.split("Next: ")[-1].rstrip(".") if "Next: " in text else None
                own = rows is not None and move_by_open_rows((row, col), (trow, tcol), rows) == nxt
                counts["fact right"] += fact
                counts["own rule"] += own
                counts["both"] += fact and own
    return counts


def main() -> None:
    for path in sys.argv[1:]:
        c = check(path)
        n = max(c["steps"], 1)
        print(f"{path}: {c['steps']} steps off the destination's column: open rows right {c['fact right'] / n:.1%}, "
              f"move follows its own facts {c['own rule'] / n:.1%}, both {c['both'] / n:.1%}; detour squares right "
              f"{c['detour right']}, wrong {c['detour wrong']} (a blocked move: {c['blocked']})")


if __name__ == "__main__":
    main()
