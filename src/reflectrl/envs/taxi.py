"""DangerousTaxi: gymnasium's 5x5 Taxi where a move that changes nothing ends the episode.

The dynamics are gymnasium's own (`TaxiEnv.P`, the deterministic transition
table), so the rules follow whatever Taxi version is installed; we only add the
dangerous rule, the curriculum levels and a text rendering.

Rewards (all multiplied by `reward_scale`, default 1):

=====================================  ======
event                                  reward
=====================================  ======
any move that changes the state        -1
delivering the passenger (dropoff,     +20
full) / picking them up (pickup)
an action that leaves the state        -20, episode ends (terminated,
unchanged (wall, illegal pickup or     not a success)
drop-off)
inadmissible action (see base)         -20, state unchanged, episode goes on
=====================================  ======

Levels: ``pickup`` (ends at the pickup), ``dropoff`` (starts with the passenger
in the taxi at a random square), ``full`` (gymnasium's start distribution,
ends at delivery). Each level lists its start states (`DangerousTaxiEnv.start_states`:
100 at dropoff, 300 at pickup and full); ``reset(options={"state": s})`` starts in one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from gymnasium.envs.toy_text.taxi import TaxiEnv

from reflectrl.envs.base import Outcome, TextEnv

ACTIONS = (
    "move south",
    "move north",
    "move east",
    "move west",
    "pick up passenger",
    "drop off passenger",
)
STOP_NAMES = ("R", "G", "Y", "B")
IN_TAXI = 4
STEP_REWARD = -1.0
GOAL_REWARD = 20.0
DANGER_REWARD = -20.0

LEGEND = (
    "Map legend: '|' is a wall the taxi cannot cross, ':' is open road. "
    "R, G, Y and B are the four stops. T is the empty taxi, P the waiting passenger, "
    "D the destination, * the empty taxi on the passenger's square, "
    "# the taxi with the passenger inside."
)
TASKS = {
    "pickup": "Drive the taxi to the passenger and pick them up.",
    "dropoff": "The passenger is in the taxi. Drive to the destination and drop them off.",
    "full": "Drive the taxi to the passenger, pick them up, drive to the destination and drop them off.",
}
OBSERVATIONS = ("described", "map")
"""``described``: the map, then the same facts in words (coordinates, where the goal lies from the taxi,
which moves a wall blocks); ``map``: the map alone, as in the paper, so whatever a player needs beyond
the legend it must read off the grid itself (or from a reflection that did)."""
DANGER_NOTE = (
    "Danger: an action that changes nothing (driving into a wall, picking up or dropping off "
    "where that is not possible) crashes the taxi and ends the episode."
)


@lru_cache(maxsize=1)
def _taxi() -> TaxiEnv:
    """One shared gymnasium Taxi for its transition table and map (read-only)."""
    return TaxiEnv()


@lru_cache(maxsize=None)
def _transitions() -> np.ndarray:
    """next_state[s, a] and done[s, a] from gymnasium's deterministic table."""
    table = _taxi().P
    nxt = np.zeros((500, 6), dtype=np.int64)
    done = np.zeros((500, 6), dtype=bool)
    for s in range(500):
        for a in range(6):
            (_, s2, _, d), *_ = table[s][a]
            nxt[s, a], done[s, a] = s2, d
    return np.stack([nxt, done.astype(np.int64)])


@lru_cache(maxsize=None)
def _distances(goal: str) -> np.ndarray:
    """Fewest actions from each state to finish: `goal` is 'pickup' or 'deliver'.

    Computed once by Bellman iteration over the 500 states; wall moves and other
    no-op actions are excluded because they crash.
    """
    nxt, done = _transitions()
    env = _taxi()
    inf = 10**6
    dist = np.full(500, inf, dtype=np.int64)
    finishing = np.zeros((500, 6), dtype=bool)
    for s in range(500):
        for a in range(6):
            if goal == "deliver":
                finishing[s, a] = bool(done[s, a])
            else:
                finishing[s, a] = env.decode(s)[2] != IN_TAXI and env.decode(int(nxt[s, a]))[2] == IN_TAXI
    changed = nxt != np.arange(500)[:, None]
    while True:
        via = np.where(finishing, 1, np.where(changed, 1 + dist[nxt], inf))
        new = np.minimum(dist, via.min(axis=1))
        if np.array_equal(new, dist):
            return dist
        dist = new


@lru_cache(maxsize=None)
def _start_states(level: str) -> frozenset[int]:
    """The states `DangerousTaxiEnv._reset` can draw at `level` (see `DangerousTaxiEnv.start_states`)."""
    env = _taxi()
    if level == "dropoff":
        return frozenset(int(env.encode(row, col, IN_TAXI, dest)) for row in range(5) for col in range(5) for dest in range(4))
    return frozenset(int(s) for s in np.flatnonzero(env.initial_state_distrib))


class DangerousTaxiEnv(TextEnv):
    """DangerousTaxi (see the module docstring for rules and rewards)."""

    levels = ("pickup", "dropoff", "full")
    default_horizon = 20
    # The observation is the whole (Markov) state; the last move is what a reflection comments on.
    history_window = 2
    invalid_action_reward = DANGER_REWARD
    action_space_size = len(ACTIONS)

    def __init__(
        self, level: str | None = None, horizon: int | None = None, reward_scale: float = 1.0, observation: str = "described",
        **kwargs: Any,
    ):
        super().__init__(level=level, horizon=horizon, **kwargs)
        if observation not in OBSERVATIONS:
            raise ValueError(f"unknown taxi observation {observation!r}; choose from {', '.join(OBSERVATIONS)}")
        self.observation = observation
        self.reward_scale = float(reward_scale)
        self.invalid_action_reward = DANGER_REWARD * self.reward_scale
        self._state = 0

    # -- state helpers
    @property
    def state(self) -> tuple[int, int, int, int]:
        """(taxi row, taxi column, passenger location 0-3 or 4 = in taxi, destination 0-3)."""
        return _taxi().decode(self._state)

    def _reset(self, options: dict[str, Any]) -> None:
        env = _taxi()
        rng = self.np_random
        if "state" in options:
            state = options["state"]
            if isinstance(state, bool) or not isinstance(state, (int, np.integer)) or int(state) not in _start_states(self.level):
                raise ValueError(f"state {state!r} is not a start state of level {self.level} (see `start_states`)")
            self._state = int(state)
        elif self.level == "dropoff":
            row, col = int(rng.integers(5)), int(rng.integers(5))
            self._state = env.encode(row, col, IN_TAXI, int(rng.integers(4)))
        else:
            probs = env.initial_state_distrib
            self._state = int(rng.choice(len(probs), p=probs))

    def start_states(self, level: str | None = None) -> list[dict[str, Any]]:
        """``{"state": s}`` for every start state s of `level` (gymnasium's encoded Taxi state), in state order.

        dropoff: the passenger in the taxi on any of the 25 squares, any of the 4 destinations (100 states);
        pickup and full: gymnasium's start distribution, every state it can draw (300: 25 squares, the
        passenger at one of the 4 stops, the destination one of the other 3).
        """
        level = self.level if level is None else level
        self._check_level(level)
        return [{"state": s} for s in sorted(_start_states(level))]

    def start_key(self) -> tuple[str, int]:
        # The transition table is deterministic and `np_random` is only read by `_reset`.
        return (self.level, self._state)

    def _task(self) -> str:
        return f"{TASKS[self.level]} {DANGER_NOTE}\n{LEGEND}"

    def _admissible(self) -> list[str]:
        return list(ACTIONS)

    def _apply(self, action: str) -> Outcome:
        a = ACTIONS.index(action)
        nxt, done = _transitions()
        before = self.state
        s2 = int(nxt[self._state, a])
        delivered = bool(done[self._state, a])
        scale = self.reward_scale
        if s2 == self._state:
            return Outcome(DANGER_REWARD * scale, terminated=True, feedback=f"crash: '{action}' changed nothing")
        self._state = s2
        after = self.state
        if self.level == "pickup" and after[2] == IN_TAXI and before[2] != IN_TAXI:
            return Outcome(GOAL_REWARD * scale, terminated=True, success=True, feedback="passenger picked up")
        if delivered:
            return Outcome(GOAL_REWARD * scale, terminated=True, success=True, feedback="passenger delivered")
        if after[2] == IN_TAXI and before[2] != IN_TAXI:
            return Outcome(STEP_REWARD * scale, feedback="passenger picked up")
        if before[2] == IN_TAXI and after[2] != IN_TAXI:
            return Outcome(STEP_REWARD * scale, feedback=f"passenger dropped off at {STOP_NAMES[after[2]]}, not the destination")
        # No feedback for a plain move: the observation already says where the taxi is.
        return Outcome(STEP_REWARD * scale)

    def oracle_action(self) -> str:
        dist = _distances("pickup" if self.level == "pickup" else "deliver")
        nxt, done = _transitions()
        s = self._state
        best, best_cost = 0, None
        for a in range(6):
            s2 = int(nxt[s, a])
            if self.level == "pickup":
                finish = self.state[2] != IN_TAXI and _taxi().decode(s2)[2] == IN_TAXI
            else:
                finish = bool(done[s, a])
            cost = 1 if finish else (None if s2 == s else 1 + int(dist[s2]))
            if cost is not None and (best_cost is None or cost < best_cost):
                best, best_cost = a, cost
        return ACTIONS[best]

    def _observation(self) -> str:
        if self.observation == "map":
            return self.grid()
        row, col, pas, dest = self.state
        lines = [self.grid()]
        # Short phrasing: every token here is paid for at every step of SFT, RL and evaluation.
        where = "with the passenger" if pas == IN_TAXI else f"passenger waiting at {STOP_NAMES[pas]} (row {_stop(pas)[0]}, column {_stop(pas)[1]})"
        lines.append(f"Taxi at row {row}, column {col}, {where}; destination {STOP_NAMES[dest]} (row {_stop(dest)[0]}, column {_stop(dest)[1]}).")
        # The same facts as the map, in words: small LMs read "2 rows south" and
        # "blocked: east" far more easily than they count characters in the grid.
        goal, name = (_stop(dest), "destination") if pas == IN_TAXI else (_stop(pas), "passenger")
        lines.append(f"The {name} is {_offset_words(goal[0] - row, goal[1] - col)}.")
        blocked = [a.split()[1] for a in ACTIONS[:4] if _transitions()[0][self._state, ACTIONS.index(a)] == self._state]
        lines.append(f"Blocked moves here: {', '.join(blocked) or 'none'}.")
        return "\n".join(lines)

    def grid(self) -> str:
        """The map with walls, stops and markers (rows top to bottom, row 0 first)."""
        row, col, pas, dest = self.state
        desc = [[ch.decode() for ch in line] for line in _taxi().desc]
        cells = {}
        dr, dc = _stop(dest)
        cells[(dr, dc)] = "D"
        if pas != IN_TAXI:
            cells[_stop(pas)] = "P"
        if pas == IN_TAXI:
            cells[(row, col)] = "#"
        elif (row, col) == _stop(pas):
            cells[(row, col)] = "*"
        else:
            cells[(row, col)] = "T"
        for r in range(5):
            for c in range(5):
                ch = desc[r + 1][2 * c + 1]
                desc[r + 1][2 * c + 1] = cells.get((r, c), ch if ch != " " else ".")
        return "\n".join("".join(line) for line in desc)

    def _info_extra(self) -> dict[str, Any]:
        return {"taxi_state": self.state}


def _offset_words(rows: int, cols: int) -> str:
    """'2 rows south and 1 column west of the taxi', or 'at the taxi's square'."""
    parts = []
    if rows:
        parts.append(f"{abs(rows)} row{'s' if abs(rows) > 1 else ''} {'south' if rows > 0 else 'north'}")
    if cols:
        parts.append(f"{abs(cols)} column{'s' if abs(cols) > 1 else ''} {'east' if cols > 0 else 'west'}")
    return " and ".join(parts) + " of the taxi" if parts else "at the taxi's square"


def _stop(index: int) -> tuple[int, int]:
    return _taxi().locs[index]
