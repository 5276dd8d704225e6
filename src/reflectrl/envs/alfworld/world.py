"""The true state of an ALFWorld game, read from the engine's facts: where the agent stands, what it holds,
where each object and receptacle is and which receptacles are closed.

No player sees this; the oracle's teacher (`reflectrl.teachers.oracle_alfworld`) and the environment's decoy
(`ALFWorldEnv.decoy_action`) read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class World:
    """The facts pick-and-place depends on (the oracle's cost model, the decoy)."""

    agent: str | None
    held: str | None
    object_loc: dict[str, str]
    container: dict[str, str]
    recep_loc: dict[str, str]
    closed: set[str]

    @classmethod
    def read(cls, env: Any) -> "World":
        """From an `ALFWorldEnv` with a running episode."""
        facts = env._game.facts()  # the engine's true state: reading it is how the oracle sees everything
        args = {}
        for name, values in facts:
            args.setdefault(name, []).append(values)
        pairs = lambda name: [v for v in args.get(name, []) if len(v) == 2]  # noqa: E731
        return cls(
            agent=next((loc for who, loc in pairs("atlocation")), None),
            held=next((obj for who, obj in pairs("holds")), None),
            object_loc={o: loc for o, loc in pairs("objectatlocation")},
            container={o: r for o, r in pairs("inreceptacle")},
            recep_loc={r: loc for r, loc in pairs("receptacleatlocation")},
            closed={v[0] for v in args.get("openable", []) if v} - {v[0] for v in args.get("opened", []) if v},
        )

    def here(self) -> list[str]:
        return sorted(r for r, loc in self.recep_loc.items() if loc == self.agent)

    def where(self, obj: str) -> str | None:
        return self.object_loc.get(obj) or self.recep_loc.get(self.container.get(obj, ""))

    def after(self, action: str) -> "World":
        """The world after `action`, as far as pick-and-place cares (other commands change nothing)."""
        nxt = World(self.agent, self.held, dict(self.object_loc), dict(self.container), self.recep_loc, set(self.closed))
        verb, _, rest = action.partition(" ")
        if action.startswith("go to ") and action[6:] in self.recep_loc:
            nxt.agent = self.recep_loc[action[6:]]
        elif verb == "open":
            nxt.closed.discard(rest)
        elif verb == "close" and rest in self.recep_loc:
            nxt.closed.add(rest)
        elif verb == "take" and " from " in rest:
            obj = rest.split(" from ")[0]
            nxt.held = obj
            nxt.container.pop(obj, None)
            nxt.object_loc.pop(obj, None)
        elif verb == "move" and " to " in rest:
            obj, recep = rest.split(" to ", 1)
            nxt.held = None
            nxt.container[obj] = recep
            nxt.object_loc[obj] = self.recep_loc.get(recep, "")
        return nxt
