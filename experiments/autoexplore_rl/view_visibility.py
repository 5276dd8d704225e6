"""How often does the answer file's view show what the question asks about? Head views against question views.

For every task of a split, reads the target file as `cat` would show it (`views.question_window`, or the head)
and counts the tasks whose view contains the question's evidence: the sentence a code or document question was
written from, or for a data question the phrase it quotes (its evidence is a normalised record such as
``closing_time = "18:30"``, never verbatim in the file). No model is involved.

    python experiments/autoexplore_rl/view_visibility.py [--split train] [--chars 200 300]
"""

from __future__ import annotations

import argparse
import re

from reflectrl.envs.autoexplore.env import AutoExploreEnv
from reflectrl.envs.autoexplore.sandbox import Sandbox, decode_text
from reflectrl.envs.autoexplore.views import SCAN_CHARS, question_window


def flat(text: str) -> str:
    return " ".join(text.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--chars", type=int, nargs="+", default=[200, 300])
    args = parser.parse_args()
    env = AutoExploreEnv(split=args.split, level="all")
    shown: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for task in env.tasks_at():
        evidence = flat(task.evidence)
        quoted = re.findall(r'"([^"]+)"', task.question)
        if task.kind == "data" and quoted:
            evidence = quoted[0]
        head, _ = Sandbox(task.root).read_head(task.target_parts()[0], SCAN_CHARS)
        text = decode_text(head) or ""
        totals[task.kind] = totals.get(task.kind, 0) + 1
        for chars in args.chars:
            for name, view in ((f"head {chars}", text[:chars]), (f"question {chars}", question_window(text, task.question, chars)[0])):
                shown[(task.kind, name)] = shown.get((task.kind, name), 0) + (evidence in flat(view))
    views = [f"{start} {chars}" for chars in args.chars for start in ("head", "question")]
    print(f"| {args.split} tasks | " + " | ".join(views) + " |")
    print("|---|" + "---|" * len(views))
    for kind, total in sorted(totals.items()):
        cells = [f"{shown[(kind, v)]}/{total} ({100 * shown[(kind, v)] / total:.0f}%)" for v in views]
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
