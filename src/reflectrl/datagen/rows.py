"""Turn samples and their reflections into prompt/completion rows, all texts from `reflectrl.protocol`.

Row formats (one JSON object per line; `datasets.load_dataset("json", ...)`
reads them as they are):

* reflector: ``prompt`` = `reflector_prompt(state)`, ``completion`` = " " + reflection;
* policy: ``prompt`` = `policy_prompt(state, reflection, menu)`, ``completion`` = the label of the
  oracle's action, exactly the label token's text;
* plain: ``prompt`` = `plain_prompt(state, menu)`, ``completion`` = that label.

Metadata columns shared by all: env, level, split, episode, seed, step,
source ("expert" or "negative"), negative, after_mistake, last_action,
taken (actions since reset, for replay) and oracle_action. Policy and plain
rows add labels and menu_actions (menu order) and action_index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reflectrl.datagen.episodes import NEGATIVE, StepSample
from reflectrl.protocol import (
    LabelSet,
    Menu,
    plain_prompt,
    policy_prompt,
    reflector_prompt,
)

ROLES = ("reflector", "policy", "plain")


def _meta(sample: StepSample, env: str, level: str, split: str) -> dict[str, Any]:
    last = sample.last
    return {
        "env": env,
        "level": level,
        "split": split,
        "episode": sample.episode,
        "seed": sample.seed,
        "step": sample.step,
        "source": sample.source,
        "negative": sample.source == NEGATIVE,
        "after_mistake": bool(last is not None and last.mistake),
        "last_action": last.action if last is not None else None,
        "taken": list(sample.taken),
        "oracle_action": sample.best_action,
        "misleading_hint": None,
    }


def build_rows(
    samples: list[StepSample],
    reflections: list[str],
    *,
    env: str,
    level: str,
    split: str,
    label_set: LabelSet,
    rng: np.random.Generator | None,
    count: Callable[[str], int] | None,
    budget: int | None,
    roles: Sequence[str] = ROLES,
    label_after: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Rows of each of `roles` (each prompt costs a token count); a sample whose reflection is empty gets no reflector or policy row.

    `label_after` writes menus as "action (label)" (`protocol.Menu.label_after`); policy and plain
    rows say so in their ``label_after`` column, which SFT records with the trained policy.
    """
    rows: dict[str, list[dict[str, Any]]] = {role: [] for role in roles}
    for sample, reflection in zip(samples, reflections, strict=True):
        meta = _meta(sample, env, level, split)
        menu = Menu.build(sample.state.actions, label_set, rng, label_after=label_after)
        index = sample.state.actions.index(sample.best_action)
        choice = {
            "completion": menu.label_of(index),
            "labels": list(menu.labels),
            "menu_actions": list(menu.actions),
            "action_index": index,
            "label_after": menu.label_after,
        }
        if "plain" in rows:
            rows["plain"].append({"prompt": plain_prompt(sample.state, menu, count, budget), **choice, **meta})
        if not reflection.strip():
            continue
        if "reflector" in rows:
            rows["reflector"].append(
                {"prompt": reflector_prompt(sample.state, count, budget), "completion": " " + reflection.strip(), **meta}
            )
        if "policy" in rows:
            rows["policy"].append({"prompt": policy_prompt(sample.state, reflection, menu, count, budget), **choice, **meta})
    return rows
