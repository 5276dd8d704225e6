"""Compare two evaluations of the same seeds pair by pair: success, crashes and return. (DangerousTaxi.)

Two agents played the same 100 test episodes, so their difference is measured more precisely per
seed than by comparing two Wilson intervals: McNemar's exact test counts the seeds one agent won
and the other lost, and a bootstrap over seeds gives an interval for the mean return difference.
A crash is counted as in `reflection_follow.py`.

    python experiments/taxi_rl/paired_compare.py BEFORE_EVAL_DIR AFTER_EVAL_DIR
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reflection_follow import is_crash  # noqa: E402

from reflectrl.evaluation.stats import mcnemar_exact  # noqa: E402


def episodes(folder: str) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]


def discordant(before: list[bool], after: list[bool]) -> tuple[int, int]:
    return sum(b and not a for b, a in zip(before, after)), sum(a and not b for b, a in zip(before, after))


def main(before_dir: str, after_dir: str, resamples: int = 10_000) -> None:
    before, after = episodes(before_dir), episodes(after_dir)
    if [e["seed"] for e in before] != [e["seed"] for e in after]:
        sys.exit("the two evaluations did not play the same seeds in the same order")
    for name, flag in (("success", lambda e: bool(e["success"])), ("crash", is_crash)):
        b, a = [flag(e) for e in before], [flag(e) for e in after]
        only_b, only_a = discordant(b, a)
        print(f"{name}: {sum(b)} -> {sum(a)} of {len(b)}; only before {only_b}, only after {only_a}; "
              f"McNemar exact p = {mcnemar_exact(only_b, only_a):.2g}")
    diffs = [a["return"] - b["return"] for b, a in zip(before, after)]
    rng = random.Random(0)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(resamples))
    print(f"return: mean difference {sum(diffs) / len(diffs):+.2f}, bootstrap 95% interval "
          f"[{means[int(0.025 * resamples)]:+.2f}, {means[int(0.975 * resamples)]:+.2f}] ({resamples} resamples over seeds)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
