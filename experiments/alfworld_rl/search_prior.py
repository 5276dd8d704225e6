"""How far can a player get that does not know where the object is? A scripted prior-ordered search.

The oracle knows where every object is; an agent does not, so its success on unseen rooms is bounded by how
quickly a search finds the goal object. This script reads the true state of every game of a game set (the
engine's facts) and counts, for each test game, the steps a searcher needs that goes to the receptacles in a fixed
order and opens the closed ones (one step per `go to`, one more per `open`) until it reaches one that holds an
object of the goal type; the errand after that (take, go to the target, move; sometimes an open) is counted as 4.

Orders: **prior by object**, receptacle types by how often the train games hide this object type in them (ties
broken by how often any object is hidden there); **overall prior**, by how often any object is hidden there. A
greedy student of the oracle's search steps (the label is where the object really is) learns the first.

    ALFWORLD_DATA=GAMES python experiments/alfworld_rl/search_prior.py [--horizon 15]
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter, defaultdict

from reflectrl.envs import make_env
from reflectrl.envs.alfworld.tasks import goal_types, instance_type

ERRAND_STEPS = 4


def rooms(split: str) -> list[dict]:
    env = make_env("alfworld", split=split, level="full")
    found = []
    for index in range(len(env.games)):
        env.reset(seed=0, options={"index": index})
        obj, _ = goal_types(env.game.game_id)
        facts = env.true_facts()  # the hidden state, which only this analysis (not a player) reads
        pairs = [(name, args) for name, args in facts if len(args) == 2]
        found.append({
            "object": obj,
            "receptacles": sorted({r for name, (r, _) in pairs if name == "receptacleatlocation"}),
            "holders": {r for name, (o, r) in pairs if name == "inreceptacle" and instance_type(o) == obj},
            "closed": {a[0] for name, a in facts if name == "openable"} - {a[0] for name, a in facts if name == "opened"},
        })
    return found


def search_steps(room: dict, order: list[str]) -> int | None:
    steps = 0
    for receptacle in order:
        steps += 1 + (receptacle in room["closed"])
        if receptacle in room["holders"]:
            return steps
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizon", type=int, default=15)
    args = parser.parse_args()
    train, test = rooms("train"), rooms("valid_unseen")
    by_object: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for room in train:
        for holder in room["holders"]:
            by_object[room["object"]][instance_type(holder)] += 1
            overall[instance_type(holder)] += 1
    orders = {
        "prior by object": lambda room: sorted(
            room["receptacles"],
            key=lambda r: (-by_object[room["object"]][instance_type(r)], -overall[instance_type(r)], r),
        ),
        "overall prior": lambda room: sorted(room["receptacles"], key=lambda r: (-overall[instance_type(r)], r)),
    }
    print(f"train games {len(train)}, valid_unseen games {len(test)}, mean receptacles per test room "
          f"{statistics.mean(len(r['receptacles']) for r in test):.1f}; horizon {args.horizon}")
    print("| order | split | search steps (median) | found and finished within the horizon |")
    print("|---|---|---|---|")
    for name, order in orders.items():
        for split, games in (("train", train), ("valid_unseen", test)):
            steps = [search_steps(room, order(room)) for room in games]
            done = sum(s is not None and s + ERRAND_STEPS <= args.horizon for s in steps)
            median = statistics.median(s if s is not None else 10**3 for s in steps)
            print(f"| {name} | {split} | {median:g} | {done} / {len(games)} ({100 * done / len(games):.0f}%) |")


if __name__ == "__main__":
    main()
