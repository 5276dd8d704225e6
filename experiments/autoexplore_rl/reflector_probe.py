"""Does an SFT reflector tell a file that answers from one that does not, on test repositories? (AutoExplore.)

For test tasks at one level, the oracle walks to the moment it would read the answer file; there the
probe makes two states: after reading the answer file, and after reading another file of the same
folder (`AutoExploreEnv.decoy_action`). The reflector writes a reflection for each (greedy, as in
evaluation), and the probe counts how often it recommends ``id`` in each; a reflector that has learned
to read the file view recommends ``id`` after the answer and not after the other file.

    python experiments/autoexplore_rl/reflector_probe.py REFLECTOR_FOLDER [--tasks 24] [--level depth1] \
        [--view-chars 300] [--view-start head]

(the view settings must be those of the reflector's training data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reflectrl.envs import make_env
from reflectrl.protocol import State
from reflectrl.trainers.rl_players import load_rl_players

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decisions import recommendation  # noqa: E402


def states(level: str, tasks: int, view_chars: int = 300, horizon: int = 8, view_start: str = "head"):
    """(after the answer, after another file) state pairs, with the file names."""
    rng = np.random.default_rng(0)
    pairs = []
    env = make_env("autoexplore", split="test", level=level, horizon=horizon, view_chars=view_chars, view_start=view_start)
    count = len(env.tasks_at(level))
    for k in range(tasks):
        index = k * count // tasks
        env.reset(seed=k, options={"index": index})
        steps = 0
        while not env.oracle_action().startswith("cat "):
            env.step(env.oracle_action())
            steps += 1
        decoy = env.decoy_action(rng)
        if decoy is None:
            continue
        answer = env.oracle_action()
        made = []
        for action in (answer, decoy):
            env.reset(seed=k, options={"index": index})
            for _ in range(steps):
                env.step(env.oracle_action())
            _, _, _, _, info = env.step(action)
            made.append((State.from_info(info), action.removeprefix("cat ")))
        pairs.append(made)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reflector")
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--level", default="depth1")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--view-chars", type=int, default=300)
    parser.add_argument("--view-start", default="head", choices=("head", "question"))
    args = parser.parse_args()
    from reflectrl.protocol import reflector_prompt

    pairs = states(args.level, args.tasks, view_chars=args.view_chars, view_start=args.view_start)
    players = load_rl_players("smollm2-135m", args.reflector, reflector_max_new_tokens=args.tokens, device="cpu")
    policy = players.agent.policy
    flat = [s for pair in pairs for s, _ in pair]
    texts = players.reflector.reflect([reflector_prompt(s, policy.count_tokens, policy.max_prompt_tokens) for s in flat])
    ids = {"answer": 0, "other": 0}
    for i, (kind, (state, name)) in enumerate((k, p) for pair in pairs for k, p in zip(("answer", "other"), pair)):
        ids[kind] += recommendation(texts[i]) == f"id {name}"
    n = len(pairs)
    print(f"{args.reflector}: {n} test tasks at {args.level}; recommends id of the file just read: "
          f"after the answer file {ids['answer']}/{n}, after another file {ids['other']}/{n}")
    for text in texts[:4]:
        print("  ", text)


if __name__ == "__main__":
    main()
