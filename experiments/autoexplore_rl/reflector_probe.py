"""Does an SFT reflector tell a file that answers from one that does not, on test repositories? (AutoExplore.)

For test tasks at one level, the oracle walks to the moment it would read the answer file; there the
probe makes two states: after reading the answer file, and after reading another file of the same
folder (`AutoExploreEnv.decoy_action`). The reflector writes a reflection for each (greedy, as in
evaluation), and the probe counts how often it recommends ``id`` in each; a reflector that has learned
to read the file view recommends ``id`` after the answer and not after the other file.

It also walks the oracle's whole path on every test task at the level and counts how often the
reflection names the oracle's command, per kind of command (``cd``, ``cat``, ``id``) and at the first
step (the folder chosen from the question at the root).

With ``--policy`` the probe also asks a policy (greedy, as in evaluation) what it does in the same
states: with the reflector's reflection, or with ``none`` as the reflector the plain policy, which
reads the same file view without a reflection. So it shows whether a policy can tell the two files
apart where the reflector cannot.

    python experiments/autoexplore_rl/reflector_probe.py REFLECTOR_FOLDER [--policy POLICY_FOLDER] \
        [--tasks 24] [--level depth1] [--view-chars 300] [--view-start head]
    python experiments/autoexplore_rl/reflector_probe.py none --policy PLAIN_POLICY_FOLDER

(the view settings must be those of the players' training data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reflectrl.envs import make_env
from reflectrl.players.load import load_rl_players
from reflectrl.protocol import State

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


def path_states(level: str, view_chars: int = 300, horizon: int = 8, view_start: str = "head"):
    """(state, the oracle's command) at every step of the oracle's path, on every test task at `level`."""
    env = make_env("autoexplore", split="test", level=level, horizon=horizon, view_chars=view_chars, view_start=view_start)
    made = []
    for index in range(len(env.tasks_at(level))):
        _, info = env.reset(seed=index, options={"index": index})
        for step in range(horizon):
            command = env.oracle_action()
            made.append((State.from_info(info), command, step))
            _, _, terminated, truncated, info = env.step(command)
            if terminated or truncated:
                break
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reflector", help="SFT reflector folder, or none (with --policy: the plain policy)")
    parser.add_argument("--policy", help="policy folder: also count the commands it takes in the same states")
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--level", default="depth1")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--view-chars", type=int, default=300)
    parser.add_argument("--view-start", default="head", choices=("head", "question"))
    args = parser.parse_args()
    from reflectrl.protocol import reflector_prompt

    pairs = states(args.level, args.tasks, view_chars=args.view_chars, view_start=args.view_start)
    reflector = None if args.reflector == "none" else args.reflector
    if reflector is None and args.policy is None:
        parser.error("give a reflector folder, or none with --policy")
    players = load_rl_players(
        args.policy or "smollm2-135m", reflector, reflection_tokens=args.tokens, device="cpu", cache_reflections=True
    )
    policy = players.agent.policy
    flat = [s for pair in pairs for s, _ in pair]
    kinds = [(kind, name) for pair in pairs for kind, (_, name) in zip(("answer", "other"), pair)]
    n = len(pairs)
    if reflector is not None:
        # The agent below asks the same cached reflector, so each state is reflected on once.
        texts = players.reflector.reflect([reflector_prompt(s, policy.count_tokens, policy.max_prompt_tokens) for s in flat])
        ids = {"answer": 0, "other": 0}
        for text, (kind, name) in zip(texts, kinds):
            ids[kind] += recommendation(text) == f"id {name}"
        print(f"{args.reflector}: {n} test tasks at {args.level}; recommends id of the file just read: "
              f"after the answer file {ids['answer']}/{n}, after another file {ids['other']}/{n}")
        for text in texts[:4]:
            print("  ", text)
        path = path_states(args.level, view_chars=args.view_chars, view_start=args.view_start)
        said = players.reflector.reflect(
            [reflector_prompt(s, policy.count_tokens, policy.max_prompt_tokens) for s, _, _ in path]
        )
        right: dict[str, list[int]] = {}
        for text, (_, command, step) in zip(said, path):
            for key in (command.split(" ")[0], "first step") if step == 0 else (command.split(" ")[0],):
                right.setdefault(key, []).append(recommendation(text) == command)
        print(f"on the oracle's path ({len(path)} states, every test task at {args.level}), names the oracle's command: "
              + ", ".join(f"{key} {sum(v)}/{len(v)}" for key, v in right.items()))
    if args.policy is not None:
        actions, _ = players.agent.act(flat, greedy=True)
        ids = {"answer": 0, "other": 0}
        for state, action, (kind, name) in zip(flat, actions, kinds):
            ids[kind] += action is not None and state.actions[action] == f"id {name}"
        with_what = "with its reflections" if reflector is not None else "without reflection"
        print(f"{args.policy} ({with_what}): {n} test tasks at {args.level}; takes id of the file just read: "
              f"after the answer file {ids['answer']}/{n}, after another file {ids['other']}/{n}")


if __name__ == "__main__":
    main()
