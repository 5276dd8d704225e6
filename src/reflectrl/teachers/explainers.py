"""Per-environment explainers of the oracle teacher, and the generic fallback.

An `Explainer` bundles three functions:

* `facts(env)`: privileged facts about the current state (JSON-able), read
  while the environment is live during data generation;
* `assess(env, action)`: in the current state, would `action` leave the
  optimal path? (used to pick negative examples and to validate them);
* `explain(request, rng)`: the reflection text, worded with `rng`.

Adding an environment is one small module with a module-level `EXPLAINER`,
named by the environment's registration (``register_env(..., explainer=...)``,
`EnvEntry.explainer`; the built-in environments' in `reflectrl.envs`), or by
a call to `register_explainer`.
Environments without one get `GENERIC`, which only knows the oracle's
action and whether the last action matched it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflectrl.envs.base import TextEnv
from reflectrl.teachers.base import Assessment, ReflectionRequest


@dataclass(frozen=True)
class Explainer:
    """How the oracle teacher reads and explains one environment."""

    facts: Callable[[TextEnv], dict[str, Any]]
    """Privileged facts about the current state."""
    assess: Callable[[TextEnv, str], Assessment]
    """Judge an action in the current state (before it is taken)."""
    explain: Callable[[ReflectionRequest, np.random.Generator], str]
    """Write the reflection."""
    concise: Callable[[ReflectionRequest, np.random.Generator], str] | None = None
    """Write the reflection in the concise style (next move first, one template); None: no such style."""
    grounded: Callable[[ReflectionRequest, np.random.Generator], str] | None = None
    """Write it in the grounded style (what the observation shows first, then the next move); None: no such style."""
    reasoned: Callable[[ReflectionRequest, np.random.Generator], str] | None = None
    """Write it in the reasoned style: what the observation shows, the verdict on the last action, then
    "Next: <action>." last (the paper's order); None: no such style."""
    mapped: Callable[[ReflectionRequest, np.random.Generator], str] | None = None
    """Write it in the mapped style: the reasoned one plus what the map shows between the player and its target
    (DangerousTaxi: the rows with no wall between the taxi's and the target's columns), before "Next:"; None: no such style."""
    waypoint: Callable[[ReflectionRequest, np.random.Generator], str] | None = None
    """Write it in the waypoint style: the mapped one plus, off the open rows, the row to reach first (DangerousTaxi);
    None: no such style."""


EXPLAINERS: dict[str, str] = {}
"""Environment short name -> 'module:attribute' of its `Explainer` (imported on first use), as `register_explainer`
gives them; they take precedence over the registrations' `EnvEntry.explainer`."""


def register_explainer(env_name: str, target: str) -> None:
    """Use the `Explainer` at 'module:attribute' for `env_name`."""
    EXPLAINERS[env_name] = target


def explainer_for(env_name: str) -> Explainer:
    """The explainer of an environment (`EXPLAINERS`, else its registration's `EnvEntry.explainer`), or `GENERIC`."""
    target = EXPLAINERS.get(env_name)
    if target is None:
        from reflectrl.envs import lookup

        try:
            target = lookup(env_name).explainer
        except KeyError:
            target = None
    if target is None:
        return GENERIC
    if isinstance(target, Explainer):
        return target
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    """One of several phrasings."""
    return options[int(rng.integers(len(options)))]


def oracle_menu_choice(env: TextEnv) -> str:
    """The menu entry the oracle would choose now (the paging entry when its action is on another page)."""
    return env.actions[env.oracle_index()]


def generic_facts(env: TextEnv) -> dict[str, Any]:
    return {}


def generic_assess(env: TextEnv, action: str) -> Assessment:
    best = oracle_menu_choice(env)
    return Assessment(action=action, mistake=action != best, better=None if action == best else best)


def generic_explain(request: ReflectionRequest, rng: np.random.Generator) -> str:
    parts = []
    last = request.last
    if last is not None:
        if last.mistake:
            parts.append(
                pick(
                    rng,
                    (
                        f"The last action, '{last.action}', did not bring me closer to the goal; it was a detour.",
                        f"'{last.action}' was not a useful move here and cost a step without progress.",
                        f"That last step ('{last.action}') was a mistake: it led away from what the task needs.",
                    ),
                )
            )
            if last.better:
                parts.append(pick(rng, (f"'{last.better}' would have been the better choice.", f"Doing '{last.better}' instead would have kept me on track.")))
        else:
            parts.append(
                pick(
                    rng,
                    (
                        f"The last action, '{last.action}', made progress toward the task.",
                        f"'{last.action}' was a sensible move.",
                        "The last step went as planned.",
                    ),
                )
            )
    parts.append(
        pick(
            rng,
            (
                f"Given what I see now, the most useful next step is '{request.best_action}'.",
                f"Next I should {request.best_action}, since that moves the task forward.",
                f"The situation calls for '{request.best_action}' next.",
            ),
        )
    )
    return " ".join(parts)


GENERIC = Explainer(facts=generic_facts, assess=generic_assess, explain=generic_explain)
"""The fallback for environments without their own explainer."""
