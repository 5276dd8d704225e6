"""Does an SFT reflector name the expert's next command on unseen rooms? (ALFWorld, the expert's own states.)

Plays the oracle of a pipeline run's settings (with ``oracle_search="prior"``: the search a player could make)
on every game of a split, and at each state asks the reflector (greedy, as in evaluation) for its reflection.
Counts per kind of step whether the reflection's command ("Next: go to cabinet 2. ...") is the expert's, is on
the menu at all, and, for a ``go to`` while searching, whether it names a place already visited. The policy
plays no part, so this measures the reflector alone, on the states the teacher data is made of.

    ALFWORLD_DATA=GAMES python experiments/alfworld_rl/reflector_probe.py RUN_FOLDER [REFLECTOR] [--split valid_unseen] \
        [--show errand] [--tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

from reflectrl.envs import make_env
from reflectrl.players.load import load_rl_players
from reflectrl.protocol import State, reflector_prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from episodes import recommended  # noqa: E402


def kind(env, command: str) -> str:
    searching = env.searching()  # nothing held, no goal object seen: carrying it to the target is the errand
    verb = command.split(" ", 1)[0]
    if command.startswith("go to "):
        return "search: go to" if searching else "errand: go to"
    return f"search: {verb}" if searching else f"errand: {verb}"


def expert_states(settings: dict, split: str) -> list[tuple[State, str, str, set[str]]]:
    """(state, expert command, kind of step, places visited) along the expert's episodes of every game."""
    env_kwargs = dict(settings["env_kwargs"])
    if "ALFWORLD_DATA" in os.environ:
        env_kwargs.pop("data_dir", None)
    env = make_env("alfworld", split=split, level="full", horizon=settings["horizon"], **env_kwargs)
    states = []
    for index in range(len(env.games)):
        _, info = env.reset(seed=0, options={"index": index})
        visited: set[str] = set()
        while True:
            command = env.oracle_action()
            states.append((State.from_info(info), command, kind(env, command), set(visited)))
            if command.startswith("go to "):
                visited.add(command[6:])
            _, _, terminated, truncated, info = env.step(command)
            if terminated or truncated:
                break
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("reflector", nargs="?", help="default: RUN/sft-reflector")
    parser.add_argument("--split", default="valid_unseen")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, help="reflection token budget (default: the run's)")
    parser.add_argument("--show", default="", help="print the reflections of the steps whose kind starts with this")
    args = parser.parse_args()
    settings = json.loads((args.run / "pipeline.json").read_text())["preset"]
    reflector = args.reflector or str(args.run / "sft-reflector")
    states = expert_states(settings, args.split)
    players = load_rl_players(settings["model"], reflector, reflection_tokens=args.tokens or settings["reflection_tokens"], device="cpu")
    policy = players.agent.policy
    prompts = [reflector_prompt(s, policy.count_tokens, policy.max_prompt_tokens) for s, *_ in states]
    texts = []
    for start in range(0, len(prompts), args.batch_size):
        texts += players.reflector.reflect(prompts[start : start + args.batch_size])
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (state, command, step_kind, visited), text in zip(states, texts):
        named = recommended(text)
        row = table[step_kind]
        row["steps"] += 1
        row["expert's command"] += named == command
        row["on the menu"] += named in state.actions
        row["a visited place"] += bool(named) and named.startswith("go to ") and named[6:] in visited
    for (state, command, step_kind, _), text in zip(states, texts):
        if args.show and step_kind.startswith(args.show):
            print(f"{step_kind} | expert: {command} | {text} | {state.observation[-120:]}".replace("\n", " "))
    print(f"{reflector} on the expert's states of {args.split} ({len(states)} steps)\n")
    print("| step | steps | reflection = expert | command on the menu | go to a visited place |")
    print("|---|---|---|---|---|")
    for step_kind in sorted(table):
        row = table[step_kind]
        n = row["steps"]
        cells = [f"{row[k]} ({100 * row[k] / n:.0f}%)" for k in ("expert's command", "on the menu", "a visited place")]
        print(f"| {step_kind} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
