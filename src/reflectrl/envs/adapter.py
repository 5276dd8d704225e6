"""Any gymnasium environment with text observations as a reflectrl `TextEnv`: `from_gymnasium`.

Text games already have what a `TextEnv` needs: a string observation and, in
``info``, the commands that are admissible now (TextWorld's
``admissible_commands``, ScienceWorld's valid actions, Jericho's valid
actions). `from_gymnasium(make, ...)` returns a `TextEnv` subclass that plays
the environment `make` builds, and `reflectrl.envs.register_env` puts it on
the command line::

    ShopEnv = from_gymnasium(make_shop, levels=("easy", "hard"), oracle="expert_action")
    register_env("shop", ShopEnv, summary="Buy what the list says.")

What the wrapped environment must give, and what the adapter does with it:

* **Observation**: a string; it is the ``Observation`` of the prompt.
* **Actions**: ``info[actions_key]``, a list of strings (duplicates dropped),
  is the menu; paging, labels and inadmissible choices are the `TextEnv`
  rules. The chosen command is passed to the wrapped `step` as the string, or
  as its index in that list when the wrapped action space is `Discrete`.
* **Task**: ``info[task_key]`` at reset, else the fixed `task` text, else the
  reset observation.
* **Success**: ``info[success_key]`` (default ``"won"``, TextWorld's and
  ALFWorld's key); where the key is missing, an episode that terminates with
  a positive reward is a success.
* **Oracle** (for teacher data and the oracle row): an ``info`` key whose
  value is the next command or a plan (its first command, like TextWorld's
  ``policy_commands``), or a function ``oracle(gym_env, info) -> command``.
* **Levels**: with `levels` given, `make` is called with ``level=...`` (the
  curriculum level); otherwise there is one level, ``default``, and `make`
  gets no level. Every other keyword of the `TextEnv` constructor (``split``,
  ``index``, your own) goes to `make` unchanged.
* **Seeds and reset options**: the reset seed and the options other than
  ``level`` go to the wrapped `reset` unchanged (an evaluation of a task split
  asks for ``{"index": i}``; see `reflectrl.envs.register_env` for splits).
* **End of an episode**: the wrapped ``terminated`` ends it; its
  ``truncated`` ends it as truncated; the horizon truncates as in every
  `TextEnv`.

The wrapped environment is ``env.gym_env`` and its latest ``info`` is
``env.last_info`` (an explainer reads its privileged facts there).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import gymnasium
from gymnasium import spaces

from reflectrl.envs.base import Outcome, TextEnv

Oracle = Callable[[gymnasium.Env, Mapping[str, Any]], str]
"""The next command, from the wrapped environment and its latest info."""


class GymnasiumTextEnv(TextEnv):
    """A wrapped gymnasium environment (see the module docstring); `from_gymnasium` makes the subclasses."""

    make: ClassVar[Callable[..., gymnasium.Env]]
    """Builds the wrapped environment (a staticmethod in each subclass)."""
    passes_level: ClassVar[bool] = False
    """`make` takes the level as keyword ``level``."""
    actions_key: ClassVar[str] = "admissible_commands"
    task_key: ClassVar[str | None] = None
    task_text: ClassVar[str | None] = None
    oracle_source: ClassVar[str | Oracle | None] = None
    success_key: ClassVar[str] = "won"
    info_keys: ClassVar[tuple[str, ...]] = ()
    """Keys of the wrapped info copied into `info` (episode tags such as ``game_id`` and ``task_type``)."""

    def __init__(
        self,
        level: str | None = None,
        horizon: int | None = None,
        max_actions: int | None = None,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ):
        super().__init__(level=level, horizon=horizon, max_actions=max_actions, render_mode=render_mode)
        self.env_kwargs = dict(env_kwargs)
        self.gym_env = self._build(self.level)
        self.last_info: dict[str, Any] = {}
        self._built_level = self.level
        self._commands: list[str] = []
        self._text = ""
        self._task_line = ""
        self._reset_seed: int | None = None
        self._wrapped_truncated = False

    def _build(self, level: str) -> gymnasium.Env:
        return self.make(level=level, **self.env_kwargs) if self.passes_level else self.make(**self.env_kwargs)

    # ----------------------------------------------------------- TextEnv hooks
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_seed = seed  # `_reset` hands it on unchanged
        return super().reset(seed=seed, options=options)

    def _reset(self, options: dict[str, Any]) -> None:
        if self.level != self._built_level:
            self.gym_env.close()
            self.gym_env = self._build(self.level)
            self._built_level = self.level
        wrapped_options = {k: v for k, v in options.items() if k != "level"}
        observation, info = self.gym_env.reset(seed=self._reset_seed, options=wrapped_options or None)
        self._accept(observation, info)
        if self.task_key is not None:
            if self.task_key not in info:
                raise ValueError(f"the wrapped environment's reset info has no {self.task_key!r} (task_key); its keys: {_keys(info)}")
            self._task_line = str(info[self.task_key])
        else:
            self._task_line = self.task_text if self.task_text is not None else self._text
        self._admissible()  # a start without a menu fails here, not at the first decision

    def _task(self) -> str:
        return self._task_line

    def _observation(self) -> str:
        return self._text

    def _admissible(self) -> list[str]:
        menu = list(dict.fromkeys(self._commands))
        if not menu:
            raise RuntimeError(f"the wrapped environment lists no admissible action ({self.actions_key!r} is empty) in a running episode")
        return menu

    def _apply(self, action: str) -> Outcome:
        command: int | str = self._commands.index(action) if isinstance(self.gym_env.action_space, spaces.Discrete) else action
        observation, reward, terminated, truncated, info = self.gym_env.step(command)
        self._accept(observation, info)
        self._wrapped_truncated = bool(truncated) and not terminated
        if self.success_key in info:
            success = bool(info[self.success_key])
        else:
            success = bool(terminated) and float(reward) > 0
        return Outcome(float(reward), terminated=bool(terminated), success=success)

    def step(self, action):
        self._wrapped_truncated = False
        observation, reward, terminated, truncated, info = super().step(action)
        if self._wrapped_truncated and not (terminated or truncated):
            # the wrapped environment stopped the episode (its own time limit): end it here too
            self._done = True
            truncated = True
            info["actions"] = self.actions
            observation = self._render_text()
        return observation, reward, terminated, truncated, info

    def oracle_action(self) -> str:
        source = self.oracle_source
        if source is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no oracle: give from_gymnasium an oracle (an info key or a function) "
                "for teacher data and the oracle row"
            )
        if callable(source):
            choice = source(self.gym_env, self.last_info)
        else:
            if source not in self.last_info:
                raise RuntimeError(f"the wrapped environment's info has no {source!r} (the oracle key); its keys: {_keys(self.last_info)}")
            choice = self.last_info[source]
            if isinstance(choice, (list, tuple)):
                if not choice:
                    raise RuntimeError(f"the oracle's plan ({source!r}) is empty: it sees no way to win from here")
                choice = choice[0]
        menu = self._admissible()
        if choice not in menu:
            raise RuntimeError(f"the oracle's action {choice!r} is not admissible here ({', '.join(menu)})")
        return choice

    def _info_extra(self) -> dict[str, Any]:
        return {key: _copied(self.last_info[key]) for key in self.info_keys if key in self.last_info}

    # ---------------------------------------------------------------- helpers
    @property
    def num_tasks(self) -> int:
        """Tasks of the wrapped environment's split (its own ``num_tasks``), for evaluations that play each once."""
        if not hasattr(self.gym_env, "num_tasks"):
            raise AttributeError(f"the wrapped {type(self.gym_env).__name__} has no num_tasks")
        return int(self.gym_env.num_tasks)

    def _accept(self, observation: Any, info: Mapping[str, Any]) -> None:
        if not isinstance(observation, str):
            raise TypeError(f"the wrapped environment's observation is a {type(observation).__name__}, not text")
        if self.actions_key not in info:
            raise ValueError(f"the wrapped environment's info has no {self.actions_key!r} (actions_key); its keys: {_keys(info)}")
        commands = info[self.actions_key]
        if not isinstance(commands, (list, tuple)) or not all(isinstance(c, str) for c in commands):
            raise TypeError(f"info[{self.actions_key!r}] must be a list of strings, not {commands!r}")
        self._text = observation
        self._commands = list(commands)
        self.last_info = dict(info)

    def close(self) -> None:
        self.gym_env.close()
        super().close()


def from_gymnasium(
    make: str | Callable[..., gymnasium.Env],
    *,
    levels: Sequence[str] | None = None,
    actions_key: str = "admissible_commands",
    task_key: str | None = None,
    task: str | None = None,
    oracle: str | Oracle | None = None,
    success_key: str = "won",
    info_keys: Sequence[str] = (),
    horizon: int = 20,
    invalid_action_reward: float = -1.0,
    history_window: int | None = None,
    menu_size: int = 64,
    name: str = "GymnasiumTextEnv",
) -> type[GymnasiumTextEnv]:
    """A `TextEnv` class that plays the gymnasium environment `make` builds (see the module docstring).

    `make` is a gymnasium id or a callable returning a gymnasium environment; `levels` are the curriculum levels
    from easiest to hardest, `horizon` the default step limit, `menu_size` an upper bound on the menu (the size of
    the `Discrete` action space), `history_window` how many past steps ``info["history"]`` keeps (None: all),
    `name` the class name (in messages and reprs).
    """
    if isinstance(make, str):
        gym_id = make

        def build(**kwargs: Any) -> gymnasium.Env:
            return gymnasium.make(gym_id, **kwargs)
    elif callable(make):
        build = make
    else:
        raise TypeError(f"make must be a gymnasium id or a callable that returns an environment, not {make!r}")
    level_names = tuple(levels) if levels is not None else ("default",)
    if not level_names or len(set(level_names)) != len(level_names) or not all(isinstance(n, str) and n for n in level_names):
        raise ValueError(f"levels must be distinct non-empty names, got {levels!r}")
    if oracle is not None and not (isinstance(oracle, str) or callable(oracle)):
        raise TypeError(f"oracle must be an info key or a function (gym_env, info) -> action, not {oracle!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if menu_size < 2:
        raise ValueError(f"menu_size must be >= 2, got {menu_size}")
    return type(name, (GymnasiumTextEnv,), {
        "__doc__": f"`{name}`: a gymnasium environment wrapped by `reflectrl.envs.from_gymnasium`.",
        # the caller's module, as namedtuple does: a class assigned to `name` there can be found (and pickled) by name
        "__module__": sys._getframe(1).f_globals.get("__name__", __name__),
        "make": staticmethod(build),
        "passes_level": levels is not None,
        "levels": level_names,
        "actions_key": actions_key,
        "task_key": task_key,
        "task_text": task,
        # a function stored on a class would become a method: keep it a plain function
        "oracle_source": staticmethod(oracle) if callable(oracle) else oracle,
        "success_key": success_key,
        "info_keys": tuple(info_keys),
        "default_horizon": int(horizon),
        "invalid_action_reward": float(invalid_action_reward),
        "history_window": history_window,
        "action_space_size": int(menu_size),
    })


def _keys(info: Mapping[str, Any]) -> str:
    return ", ".join(map(repr, info)) or "none"


def _copied(value: Any) -> Any:
    """A fresh container for list and dict values, so that two infos never share one."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value
