"""The oracle's explainer for TextWorld: reflections from the game's own winning policy.

Privileged facts come from the wrapped game's info (`reflectrl.envs.textworld`):
the planner's next command and how many commands its plan has left, the object
the game is won by taking (the walkthrough's last command), and the room the
player is in (also the heading of the observation). An action is a mistake
when it is not the planner's command (`generic_assess`): in these challenges
the shortest way is unique but for the rare map with a cycle, and a command
that changes nothing (look, inventory, examine) costs a step.

Styles: ``reasoned`` (the paper's order: where the player is, whether the last
command helped, the reason for the next command, then ``Next: <command>``),
``concise`` (the command first), ``grounded`` (the room and the reason first,
then the command, then the verdict) and ``full`` (several wordings).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reflectrl.envs.base import PAGE_ACTION_PREFIX, TextEnv
from reflectrl.teachers.base import ReflectionRequest
from reflectrl.teachers.explainers import Explainer, generic_assess, pick

IDLE_VERBS = ("look", "inventory", "examine")
"""Commands that change nothing in the game."""


def textworld_facts(env: TextEnv) -> dict[str, Any]:
    info = env.last_info  # the wrapped game's info: what only the oracle reads
    walkthrough = info.get("walkthrough") or []
    return {
        "room": info.get("room"),
        "command": env.oracle_action(),
        "steps_left": len(info.get("policy_commands") or []),
        "goal": _taken(walkthrough[-1]) if walkthrough else None,
    }


def _taken(command: str) -> str | None:
    """The object of a ``take X`` or ``take X from Y`` command."""
    verb, _, rest = command.partition(" ")
    return rest.split(" from ")[0] if verb == "take" and rest else None


def _reason(request: ReflectionRequest) -> str:
    """The fact behind the next command (one wording per kind of command)."""
    facts, best = request.facts, request.best_action
    goal = facts["goal"] or "goal"
    command = facts["command"]
    if best.startswith(PAGE_ACTION_PREFIX):
        return f"'{command}' is on another page."
    verb, _, rest = command.partition(" ")
    if verb == "go":
        return f"The way to the {goal} leads {rest}."
    if verb == "take" and " from " in rest:
        thing, place = rest.split(" from ", 1)
        return f"The {thing} is here, in the {place}."
    if verb == "take":
        return f"The {rest} is here."
    if verb == "open":
        return f"The {rest} is closed and in the way."
    if verb == "unlock" and " with " in rest:
        thing, key = rest.split(" with ", 1)
        return f"The {thing} is locked; the {key} opens it."
    return f"That is the next step to the {goal}."


def _where(request: ReflectionRequest) -> str | None:
    room = request.facts["room"]
    return f"I am in the {room}." if room else None


def _verdict(request: ReflectionRequest) -> str | None:
    last = request.last
    if last is None:
        return None
    if not last.mistake:
        return f"Last command ({last.action}) was good."
    if last.action.split(" ")[0] in IDLE_VERBS:
        return f"Last command ({last.action}) changed nothing."
    return f"Last command ({last.action}) was a mistake."


def _joined(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


def textworld_explain_reasoned(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """Where the player is, the verdict on the last command, the reason, then the next command; one template.

    e.g. "I am in the studio. Last command (go east) was good. The coin is here. Next: take coin."
    """
    return _joined(_where(request), _verdict(request), _reason(request), f"Next: {request.best_action}.")


def textworld_explain_concise(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """e.g. "Next: take coin. The coin is here. Last command (go east) was good." """
    return _joined(f"Next: {request.best_action}.", _reason(request), _verdict(request))


def textworld_explain_grounded(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """e.g. "I am in the studio. The coin is here. Next: take coin. Last command (go east) was good." """
    return _joined(_where(request), _reason(request), f"Next: {request.best_action}.", _verdict(request))


def textworld_explain(request: ReflectionRequest, rng: np.random.Generator) -> str:
    facts, best, last = request.facts, request.best_action, request.last
    goal = facts["goal"] or "goal"
    parts = []
    if last is not None and last.mistake:
        parts.append(pick(rng, (
            f"'{last.action}' did not bring me closer to the {goal}.",
            f"The last command, '{last.action}', was a detour.",
        )))
        if last.better:
            parts.append(pick(rng, (f"'{last.better}' would have been better.", f"I should have done '{last.better}'.")))
    elif last is not None:
        parts.append(pick(rng, (f"'{last.action}' was the right command.", "The last command made progress.")))
    left = facts["steps_left"]
    parts.append(pick(rng, (
        f"{_where(request) or ''} {left} command{'s' if left != 1 else ''} to go.".strip(),
        f"{left} step{'s' if left != 1 else ''} remain to the {goal}.",
    )))
    reason = _reason(request)
    parts.append(pick(rng, (f"{reason} Next: {best}.", f"{reason} So the next command is '{best}'.")))
    return " ".join(parts)


EXPLAINER = Explainer(
    facts=textworld_facts, assess=generic_assess, explain=textworld_explain, concise=textworld_explain_concise,
    grounded=textworld_explain_grounded, reasoned=textworld_explain_reasoned,
)
