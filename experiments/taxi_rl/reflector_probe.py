"""How often does a reflection recommend the oracle's next action? (DangerousTaxi only.)

Reads a `reflectrl reflect-data` output (policy rows whose reflection was written by a
trained reflector, with the teacher's reflection and the oracle's action kept beside it)
and finds the recommendation in each reflection: the library's own reading
(`reflectrl.evaluation.reflection_diagnostics.recommended_action`, the entry after the teacher
styles' "Next:" cue), else, for the ``full`` style that this study's data used (no cue), its
recommendation sentences as the oracle explainer worded them when the data was made (frozen
here on purpose: the files this script reads keep that wording). The teacher's own reflections
score about 100%, so the number for the trained reflector is the share of states where reading
its reflection leads to the right move. Usage: python experiments/taxi_rl/reflector_probe.py OUT/policy.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

from reflectrl.envs.taxi import ACTIONS
from reflectrl.evaluation.reflection_diagnostics import recommended_action
from reflectrl.protocol import reflection_in
from reflectrl.teachers.base import NEXT_CUE

MOVE_PATTERNS = (
    r"should move (north|south|east|west)",
    r"[Mm]oving (north|south|east|west) closes the gap",
    r"starts by going (north|south|east|west)",
    r"goes (north|south|east|west) first",
    r"moving (north|south|east|west) is how",
)
PICKUP_PATTERNS = (r"should be picked up", r"picking them up is the next step", r"Time to pick up the passenger")
DROPOFF_PATTERNS = (r"dropping them off finishes", r"drop off the passenger now", r"next step is to drop them off")


def recommendation(reflection: str) -> str | None:
    """The action the reflection recommends (after its "Next:" cue, else its last recommendation sentence), or None."""
    if NEXT_CUE in reflection:
        return recommended_action(reflection, ACTIONS)
    found: list[tuple[int, str]] = []
    for pattern in MOVE_PATTERNS:
        found += [(m.start(), f"move {m.group(1)}") for m in re.finditer(pattern, reflection)]
    for patterns, action in ((PICKUP_PATTERNS, "pick up passenger"), (DROPOFF_PATTERNS, "drop off passenger")):
        for pattern in patterns:
            found += [(m.start(), action) for m in re.finditer(pattern, reflection)]
    return max(found)[1] if found else None


def main(path: str) -> None:
    counts = Counter()
    for line in open(path, encoding="utf-8"):
        row = json.loads(line)
        if row.get("negative"):
            continue
        oracle = row["oracle_action"]
        student = recommendation(reflection_in(row["prompt"]))
        counts["states"] += 1
        counts["trained reflector right"] += student == oracle
        counts["trained reflector silent"] += student is None
        counts["teacher right"] += recommendation(row["teacher_reflection"]) == oracle
    n = counts["states"]
    print(f"{path}: {n} states")
    for key in ("trained reflector right", "trained reflector silent", "teacher right"):
        print(f"  {key}: {counts[key]} ({100 * counts[key] / max(n, 1):.1f}%)")


if __name__ == "__main__":
    main(sys.argv[1])
