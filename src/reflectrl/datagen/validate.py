"""Checks every dataset row before it is written.

* policy/plain: the completion is one of the labels listed in the prompt's
  action block, and it is listed there next to the row's oracle action;
* reflector: the reflection is non-empty and follows the cue with one space;
* rows that claim to follow an off-path action (``negative`` or
  ``after_mistake``): replaying ``taken`` from ``seed`` and judging the last
  action in the state where it was taken really finds a mistake, and the
  episode is still running after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from reflectrl.datagen.episodes import ReplayError, replay
from reflectrl.envs.base import TextEnv
from reflectrl.protocol import ACTION_CUE, REFLECT_CUE
from reflectrl.teachers.explainers import Explainer


class InvalidRows(ValueError):
    """Some rows failed validation (the message lists the first problems)."""


_MENU_LINE = re.compile(r"^(\S+)\. (.*)$")
_MENU_LINE_LABEL_AFTER = re.compile(r"^(.*) \((\S+)\)$")


def menu_in_prompt(prompt: str, label_after: bool = False) -> dict[str, str]:
    """label -> action as listed in a policy or plain prompt's "Actions:" block (`Menu.label_after` layout if set)."""
    if not prompt.endswith(ACTION_CUE):
        return {}
    body = prompt[: -len(ACTION_CUE)]
    start = body.rfind("\nActions:\n")
    if start == -1:
        return {}
    line_pattern, label_group = (_MENU_LINE_LABEL_AFTER, 2) if label_after else (_MENU_LINE, 1)
    listed = {}
    for line in body[start + len("\nActions:\n") :].rstrip("\n").split("\n"):
        match = line_pattern.match(line)
        if match:
            listed[match.group(label_group)] = match.group(3 - label_group)
    return listed


def check_choice_row(row: dict[str, Any]) -> str | None:
    """Problem with a policy/plain row, or None."""
    listed = menu_in_prompt(row.get("prompt", ""), bool(row.get("label_after")))
    label = row.get("completion")
    if not listed:
        return "the prompt has no labelled action list ending with the action cue"
    if label not in listed:
        return f"completion {label!r} is not one of the prompt's labels {sorted(listed)}"
    if listed[label] != row.get("oracle_action"):
        return f"label {label!r} stands for {listed[label]!r}, not the oracle action {row.get('oracle_action')!r}"
    return None


def check_reflector_row(row: dict[str, Any]) -> str | None:
    """Problem with a reflector row, or None."""
    completion = row.get("completion")
    if not isinstance(completion, str) or not completion.strip():
        return "empty reflection"
    if not completion.startswith(" ") or completion.startswith("  "):
        return "the reflection must follow the cue after exactly one space"
    if not row.get("prompt", "").endswith(REFLECT_CUE):
        return "the prompt does not end with the reflection cue"
    return None


def check_off_path(env: TextEnv, explainer: Explainer, seed: int, taken: list[str]) -> str | None:
    """None when the last of `taken` left the optimal path and the episode went on."""
    if not taken:
        return "marked as following a mistake but no action was taken"
    try:
        replay(env, seed, taken[:-1])
    except ReplayError as err:
        return str(err)
    if not explainer.assess(env, taken[-1]).mistake:
        return f"the last action {taken[-1]!r} is on the optimal path"
    _, _, terminated, truncated, info = env.step(taken[-1])
    if terminated or truncated or info["invalid_action"]:
        return f"the episode did not go on after {taken[-1]!r}"
    return None


def validate(
    rows_by_role: dict[str, list[dict[str, Any]]],
    make_env: Callable[[], TextEnv],
    explainer: Explainer,
    max_listed: int = 10,
) -> None:
    """Raise `InvalidRows` if any row fails its checks."""
    problems: list[str] = []
    off_path_checked: dict[tuple, str | None] = {}
    env = None
    for role, rows in rows_by_role.items():
        check = check_reflector_row if role.startswith("reflector") else check_choice_row
        for row in rows:
            problem = check(row)
            if problem is None and (row.get("negative") or row.get("after_mistake")):
                key = (row["seed"], tuple(row["taken"]))
                if key not in off_path_checked:
                    env = env or make_env()
                    off_path_checked[key] = check_off_path(env, explainer, row["seed"], list(row["taken"]))
                problem = off_path_checked[key]
            if problem is not None:
                problems.append(f"{role} row (episode {row.get('episode')}, step {row.get('step')}): {problem}")
    if problems:
        shown = "\n".join(f"- {p}" for p in problems[:max_listed])
        more = f"\n... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise InvalidRows(f"{len(problems)} invalid rows:\n{shown}{more}")

