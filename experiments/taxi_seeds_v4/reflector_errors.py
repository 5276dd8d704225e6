"""Where do the mapped reflector's wrong recommendations come from? Reads each seed's evaluated episodes.

Every step whose reflection names a move other than the oracle's is put in one class, the first that applies:

* position wrong: the taxi's or the target's square is not the observation's;
* open rows wrong: "Open across: ..." names other rows than the map's between the two columns;
* facts right, off the open rows: every written fact is right, the taxi stands on a row the walls close between
  the columns (the step towards the nearest open row, `move_by_open_rows`, is the oracle's move there, so a wrong
  recommendation on such a row is never that step);
* facts right, elsewhere: every written fact is right and the taxi is on an open row or in the target's column.

A wrong step usually repeats (north, then back south, until the horizon), so the episodes are counted too, with the
class of their first wrong step.

    python experiments/taxi_seeds_v4/reflector_errors.py experiments/taxi_seeds_v4 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
from pathlib import Path

from reflectrl.teachers.oracle_taxi import open_rows_across, written_open_rows

ROWS = ("eval-sft-reflect", "eval-rl-reflect")
CLASSES = ("position wrong", "open rows wrong", "facts right, off the open rows", "facts right, elsewhere")
WRITTEN = re.compile(r"Taxi at row (\d), column (\d); [^:]*? at row (\d), column (\d)")
SHOWN = re.compile(r"Taxi at row (\d), column (\d)[^;]*?;[^(]*\(row (\d), column (\d)\)")


def classify(step: dict) -> str:
    """The class of one wrong step (see the module docstring)."""
    shown = tuple(map(int, SHOWN.search(" ".join(step["observation"].split())).groups()))
    written = WRITTEN.search(step["reflection"] or "")
    if written is None or tuple(map(int, written.groups())) != shown:
        return CLASSES[0]
    row, col, _, tcol = shown
    if col == tcol:
        return CLASSES[3]
    rows = open_rows_across(col, tcol)
    if written_open_rows(step["reflection"]) != rows:
        return CLASSES[1]
    return CLASSES[2] if row not in rows else CLASSES[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="multi-seed run folder (seed-K/eval-*/dropoff/episodes.jsonl.gz)")
    parser.add_argument("seeds", type=int, nargs="+")
    args = parser.parse_args()
    print("| seed | row | judged steps | wrong steps | " + " | ".join(CLASSES) + " | episodes with a wrong step | of them, the first off the open rows |")
    print("|---" * (6 + len(CLASSES)) + "|")
    for seed in args.seeds:
        for row in ROWS:
            path = args.folder / f"seed-{seed}" / row / "dropoff" / "episodes.jsonl.gz"
            counts, steps, episodes, first_off = collections.Counter(), 0, 0, 0
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                for episode in map(json.loads, lines):
                    wrong = [s for s in episode["trajectory"] if s.get("judged") and not s["judged"]["recommended_ok"]]
                    steps += sum(1 for s in episode["trajectory"] if s.get("judged"))
                    episodes += bool(wrong)
                    first_off += bool(wrong) and classify(wrong[0]) == CLASSES[2]
                    counts.update(classify(s) for s in wrong)
            cells = " | ".join(str(counts[c]) for c in CLASSES)
            print(f"| {seed} | {row.removeprefix('eval-')} | {steps} | {sum(counts.values())} | {cells} | {episodes} | {first_off} |")


if __name__ == "__main__":
    main()
