"""Does the menu's layout decide whether a policy learns to find its reflection's command? (ALFWorld.)

`render` rewrites the menus of a gen-data policy file in another layout and leaves everything else of
each row as it was (state, reflection, which action is right, and with `after` the shuffled labels):

* ``first``: "G. go to drawer 1", labels shuffled (what gen-data writes by default);
* ``fixed``: "0. close cabinet 9", labels in menu order;
* ``after``: "go to drawer 1 (G)", labels shuffled (`protocol.Menu.label_after`).

`score` plays a trained policy (greedy, its label head) on every held-out row of such a file (the
episodes `reflectrl sft` held out with its default seed and share) whose reflection names the right
command, and counts how often it picks that command, by the command's verb.

    python experiments/alfworld_rl/menu_layout.py render POLICY_JSONL OUT_JSONL --layout after
    reflectrl sft --role policy --data OUT_JSONL --out FOLDER ...
    python experiments/alfworld_rl/menu_layout.py score FOLDER OUT_JSONL
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from reflectrl.protocol import ACTION_CUE, LabelSet, Menu


def render(source: str, target: str, layout: str) -> None:
    from reflectrl.models import load_model

    _, tokenizer = load_model("smollm2-135m")
    label_set = LabelSet.for_tokenizer(tokenizer)
    with open(source) as rows, open(target, "w") as out:
        for line in rows:
            row = json.loads(line)
            head = row["prompt"][: row["prompt"].rindex("\nActions:\n")]
            actions = row["menu_actions"]
            if layout == "fixed":
                menu = Menu.build(actions, label_set)
            else:
                menu = Menu(tuple(actions), tuple(row["labels"]), label_after=layout == "after")
            row["prompt"] = f"{head}\nActions:\n{menu.render()}\n{ACTION_CUE}"
            row["labels"], row["completion"] = list(menu.labels), menu.labels[row["action_index"]]
            row["label_after"] = menu.label_after
            out.write(json.dumps(row) + "\n")


def score(policy_folder: str, data: str) -> None:
    import torch
    from peft import PeftModel

    from reflectrl.models import load_model
    from reflectrl.players.policy import LabelPolicy
    from reflectrl.trainers.sft import load_rows, split_rows

    _, held = split_rows(load_rows(data, "policy"), 0.1, 0)
    # Misleading rows name a wrong command on purpose; the rest name the right one.
    held = [row for row in held if not row.get("misleading_hint")]
    model, tokenizer = load_model("smollm2-135m", dtype=torch.float32)
    model = PeftModel.from_pretrained(model, policy_folder).eval()
    label_set = LabelSet.for_tokenizer(tokenizer)
    token = dict(zip(label_set.labels, label_set.token_ids))
    policy = LabelPolicy(model, tokenizer, label_set, prefix_reuse=False)
    right, total = Counter(), Counter()
    with torch.no_grad():
        for start in range(0, len(held), 8):
            batch = held[start : start + 8]
            log_probs = policy.label_log_probs(
                policy.encode([row["prompt"] for row in batch]), [[token[x] for x in row["labels"]] for row in batch]
            )
            for row, lp in zip(batch, log_probs):
                verb = row["menu_actions"][row["action_index"]].split()[0]
                total[verb] += 1
                right[verb] += int(int(lp.argmax()) == row["action_index"])
    by_verb = ", ".join(f"{verb} {right[verb]}/{total[verb]}" for verb in sorted(total))
    print(f"| {policy_folder} | {sum(right.values())}/{sum(total.values())} | {by_verb} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    r = commands.add_parser("render")
    r.add_argument("source")
    r.add_argument("target")
    r.add_argument("--layout", choices=("first", "fixed", "after"), required=True)
    s = commands.add_parser("score")
    s.add_argument("policy")
    s.add_argument("data")
    args = parser.parse_args()
    if args.command == "render":
        render(args.source, args.target, args.layout)
    else:
        score(args.policy, args.data)


if __name__ == "__main__":
    main()
