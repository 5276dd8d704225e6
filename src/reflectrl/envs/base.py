"""The text-environment interface that every reflectrl environment implements.

A `TextEnv` is a gymnasium environment whose observations are strings and
whose actions are chosen from a list of admissible action strings that changes
from state to state (`info["actions"]`). `step` takes either an index into that
list or the action string itself.

Defined outcomes, shared by every environment:

* **Inadmissible action** (an index out of range, a string not in the list, any
  other type, or any action after the episode ended): nothing is executed, the
  state does not change, the step counts towards the horizon, the reward is the
  environment's `invalid_action_reward`, and `info["invalid_action"]` is True.
  It never raises.
* **Horizon**: after `horizon` steps an unfinished episode is truncated.
* **Start states**: an environment with a small, finite set of start states per
  level lists them (`TextEnv.start_states`); reset options select one.
* **Paging**: when `max_actions` is set and a state has more admissible actions
  than that, `info["actions"]` shows one page of `max_actions - 1` actions plus
  a last entry `PAGE_ACTION` ("show more actions (page k of n)"). Choosing it
  shows the next page (wrapping round), leaves the state unchanged, gives
  reward 0 and counts as a step. This keeps every menu within the number of
  single-token labels a tokenizer has (see `reflectrl.protocol`).

Subclasses implement the `_` hooks below plus `oracle_action`.
"""

from __future__ import annotations

import string
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

PAGE_ACTION_PREFIX = "show more actions"


class TextSpace(spaces.Text):
    """Any Python string of at most `max_length` characters.

    gymnasium's `Text` only admits characters from a fixed charset; our
    observations hold arbitrary unicode (file names, game text), so membership
    is by type and length only.
    """

    def __init__(self, max_length: int = 1_000_000):
        super().__init__(max_length=max_length, min_length=0, charset=string.printable)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"


@dataclass
class Outcome:
    """What an environment's `_apply` reports for one executed action."""

    reward: float
    terminated: bool = False
    success: bool = False
    feedback: str = ""
    """Short text shown as the result of the action and kept in the history."""
    extra: dict[str, Any] = field(default_factory=dict)


class TextEnv(gymnasium.Env):
    """Base class of reflectrl environments (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 1}
    levels: ClassVar[tuple[str, ...]] = ("default",)
    """Curriculum levels from easiest to hardest."""
    default_horizon: ClassVar[int] = 20
    invalid_action_reward: ClassVar[float] = -1.0
    history_window: ClassVar[int | None] = None
    """Most recent history entries put in ``info["history"]`` (None: all). Environments whose
    observation already says everything a decision needs keep prompts short with a small window."""
    #: Upper bound on menu size; the action space is Discrete(this) so that
    #: gymnasium tooling can sample indices (out-of-range ones are inadmissible).
    action_space_size: ClassVar[int] = 64

    def __init__(
        self,
        level: str | None = None,
        horizon: int | None = None,
        max_actions: int | None = None,
        render_mode: str | None = None,
    ):
        if level is None:
            level = self.levels[-1]
        self._check_level(level)
        if max_actions is not None and max_actions < 2:
            raise ValueError("max_actions must be at least 2 (one action plus the paging entry)")
        self.level = level
        self.horizon = int(horizon if horizon is not None else self.default_horizon)
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        self.max_actions = max_actions
        self.render_mode = render_mode
        self.observation_space = TextSpace()
        self.action_space = spaces.Discrete(
            max(self.action_space_size, max_actions or 0)
        )
        self._steps = 0
        self._done = True
        self._page = 0
        self._history: list[str] = []
        self._feedback = ""
        self._success = False

    # ----------------------------------------------------------- subclass hooks
    def _reset(self, options: dict[str, Any]) -> None:
        """Start a new episode at `self.level`, drawing randomness from `self.np_random`."""
        raise NotImplementedError

    def _task(self) -> str:
        """The task text, constant over an episode."""
        raise NotImplementedError

    def _observation(self) -> str:
        """The current situation (without task, history or actions)."""
        raise NotImplementedError

    def _admissible(self) -> list[str]:
        """All admissible actions in the current state (never empty while running)."""
        raise NotImplementedError

    def _apply(self, action: str) -> Outcome:
        """Execute one admissible action."""
        raise NotImplementedError

    def oracle_action(self) -> str:
        """The optimal next action (an element of the full admissible list)."""
        raise NotImplementedError

    def decoy_action(self, rng: np.random.Generator) -> str | None:
        """A move on the current menu that a player without the oracle's hidden knowledge would make here and
        the oracle would not (AutoExplore: reading another file of the folder before the answer; ALFWorld: looking
        for the object in a place where it is not); None where the environment has none. Teacher data mixes these
        in (`GenConfig.decoy_prob`)."""
        return None

    def _info_extra(self) -> dict[str, Any]:
        """Environment-specific fields added to `info` (level, depth, task type...)."""
        return {}

    def start_states(self, level: str | None = None) -> list[dict[str, Any]] | None:
        """Every start state of `level` (default: this environment's level) as reset options, in a fixed order.

        ``reset(options=one_of_them)`` starts the episode in that state, whatever the seed. An evaluation
        that plays each once measures an agent exactly instead of by a sample of seeds (several seeds can
        draw the same start, and some starts are never drawn). None where the environment does not list
        them (too many, or not known in advance).
        """
        return None

    def start_key(self) -> Hashable | None:
        """Right after `reset`: a hashable name of the state the episode starts in, where everything that follows
        is a function of that state and the actions played (no draws from `np_random` after `reset`); equal keys of
        one configuration play out alike. None where that does not hold (the default).

        Evaluation plays a repeated start state once when the agent's choices are deterministic (`harness.evaluate`).
        """
        return None

    # --------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        if "level" in options:
            self._check_level(options["level"])
            self.level = options["level"]
        self._steps = 0
        self._done = False
        self._page = 0
        self._history = []
        self._feedback = ""
        self._success = False
        self._reset(options)
        return self._render_text(), self._info(invalid=False)

    def step(self, action):
        chosen = self._resolve(action)
        self._steps += 1
        reward = 0.0
        terminated = False
        invalid = chosen is None
        page_turn = False
        extra: dict[str, Any] = {}
        if invalid:
            reward = float(self.invalid_action_reward)
            self._feedback = f"Invalid action {_short_repr(action)}: choose one of the listed actions."
            self._history.append(f"{_short_repr(action)} -> invalid action")
            terminated = self._done
        elif chosen.startswith(PAGE_ACTION_PREFIX) and chosen not in self._admissible():
            page_turn = True
            self._page = (self._page + 1) % self._page_count()
            self._feedback = f"Showing actions page {self._page + 1} of {self._page_count()}."
        else:
            self._page = 0
            outcome = self._apply(chosen)
            reward = float(outcome.reward)
            terminated = bool(outcome.terminated)
            self._success = self._success or bool(outcome.success)
            self._feedback = outcome.feedback
            self._history.append(f"{chosen} -> {outcome.feedback}" if outcome.feedback else chosen)
            extra = outcome.extra
            self._done = terminated
        truncated = not terminated and self._steps >= self.horizon
        if truncated:
            self._done = True
        info = self._info(invalid=invalid)
        info["page_turn"] = page_turn
        info.update(extra)
        return self._render_text(), reward, terminated, truncated, info

    def render(self):
        text = self._render_text()
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # ---------------------------------------------------------------- helpers
    @property
    def actions(self) -> list[str]:
        """The menu currently offered (one page when paging applies; empty once done)."""
        if self._done:
            return []
        full = self._admissible()
        if self.max_actions is None or len(full) <= self.max_actions:
            return list(full)
        size = self.max_actions - 1
        pages = self._page_count()
        page = full[self._page * size : (self._page + 1) * size]
        return page + [f"{PAGE_ACTION_PREFIX} (page {(self._page + 1) % pages + 1} of {pages})"]

    def oracle_index(self) -> int:
        """Index in `info["actions"]` of the oracle's choice (the paging entry if it is on another page)."""
        menu = self.actions
        best = self.oracle_action()
        if best in menu:
            return menu.index(best)
        return len(menu) - 1

    @property
    def success(self) -> bool:
        return self._success

    @property
    def history(self) -> list[str]:
        return list(self._history)

    def _page_count(self) -> int:
        size = (self.max_actions or 2) - 1
        return max(1, -(-len(self._admissible()) // size))

    def _check_level(self, level: str) -> None:
        if level not in self.levels:
            raise ValueError(f"unknown level {level!r} for {type(self).__name__}; choose from {', '.join(self.levels)}")

    def _resolve(self, action) -> str | None:
        menu = self.actions
        if isinstance(action, (bool, np.bool_)):
            return None
        if isinstance(action, (int, np.integer)):
            return menu[int(action)] if 0 <= int(action) < len(menu) else None
        if isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
            return self._resolve(int(action))
        if isinstance(action, str):
            text = action.strip()
            return text if text in menu else None
        return None

    def _info(self, invalid: bool) -> dict[str, Any]:
        info = {
            "task": self._task(),
            "observation": self._observation_text(),
            "history": list(self._history[-self.history_window :] if self.history_window else self._history),
            "actions": self.actions,
            "level": self.level,
            "step": self._steps,
            "success": self._success,
            "invalid_action": invalid,
        }
        info.update(self._info_extra())
        return info

    def _observation_text(self) -> str:
        current = self._observation()
        return f"{self._feedback}\n{current}" if self._feedback else current

    def _render_text(self) -> str:
        lines = [f"Task: {self._task()}"]
        if self._history:
            lines.append("History:")
            lines += [f"{i + 1}. {h}" for i, h in enumerate(self._history)]
        lines += ["Observation:", self._observation_text()]
        actions = self.actions
        if actions:
            lines.append("Admissible actions:")
            lines += [f"- {a}" for a in actions]
        return "\n".join(lines)


def _short_repr(action: Any, limit: int = 60) -> str:
    text = repr(action)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_policy(env: TextEnv, choose, seed: int, max_steps: int | None = None) -> tuple[float, bool, int]:
    """Play one episode with `choose(env, info) -> action`; returns (return, success, steps)."""
    _, info = env.reset(seed=seed)
    total, steps = 0.0, 0
    limit = max_steps if max_steps is not None else env.horizon
    while steps < limit:
        _, reward, terminated, truncated, info = env.step(choose(env, info))
        total += reward
        steps += 1
        if terminated or truncated:
            break
    return total, bool(info["success"]), steps

