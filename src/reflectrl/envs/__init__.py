"""Environment registry: short CLI names, gymnasium ids and constructors.

`import reflectrl` registers every environment with gymnasium, so
`gymnasium.make("reflectrl/DangerousTaxi-v0", level="dropoff")` works. Inside
the library we build environments with `make_env`, which skips gymnasium's
wrappers (they add per-step checks we do not need in rollouts).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium

from reflectrl.envs.base import PAGE_ACTION_PREFIX, Outcome, TextEnv, TextSpace


@dataclass(frozen=True)
class EnvEntry:
    name: str
    """Short name used on the command line."""
    gym_id: str
    entry_point: str
    """'module:Class' of the TextEnv subclass."""
    summary: str

    def env_class(self) -> type[TextEnv]:
        module, cls = self.entry_point.split(":")
        return getattr(importlib.import_module(module), cls)


ENVIRONMENTS: dict[str, EnvEntry] = {}


def register(entry: EnvEntry) -> None:
    """Add an environment under its short name and its gymnasium id."""
    ENVIRONMENTS[entry.name] = entry
    if entry.gym_id not in gymnasium.registry:
        gymnasium.register(id=entry.gym_id, entry_point=entry.entry_point)


def lookup(name: str) -> EnvEntry:
    """Find an environment by short name or gymnasium id."""
    for entry in ENVIRONMENTS.values():
        if name in (entry.name, entry.gym_id):
            return entry
    known = ", ".join(sorted(ENVIRONMENTS))
    raise KeyError(f"unknown environment {name!r}; known: {known}")


def make_env(name: str, **kwargs) -> TextEnv:
    """Construct an environment by short name or gymnasium id, without gymnasium wrappers."""
    return lookup(name).env_class()(**kwargs)


register(
    EnvEntry(
        name="taxi",
        gym_id="reflectrl/DangerousTaxi-v0",
        entry_point="reflectrl.envs.taxi:DangerousTaxiEnv",
        summary="Gymnasium's 5x5 Taxi as a text grid; a move that changes nothing ends the episode.",
    )
)
register(
    EnvEntry(
        name="corridor",
        gym_id="reflectrl/Corridor-v0",
        entry_point="reflectrl.envs.corridor:CorridorEnv",
        summary="A short corridor with distractor actions: a sanity check for RL training.",
    )
)
register(EnvEntry(name="autoexplore", gym_id="reflectrl/AutoExplore-v0", entry_point="reflectrl.envs.autoexplore.env:AutoExploreEnv", summary="Find the file of a repository that answers a question, with cd, cat and id (sandboxed, read-only)."))
register(EnvEntry(name="alfworld", gym_id="reflectrl/ALFWorld-v0", entry_point="reflectrl.envs.alfworld.env:ALFWorldEnv", summary="ALFWorld household tasks (pick and place by default) on the alfworld text engine; real data or generated games."))

__all__ = [
    "ENVIRONMENTS",
    "EnvEntry",
    "Outcome",
    "PAGE_ACTION_PREFIX",
    "TextEnv",
    "TextSpace",
    "lookup",
    "make_env",
    "register",
]
