"""alfworld's text engine with its planner expert: load, play and plan ALFWorld games.

The engine is textworld's `PddlEnv` (the PDDL domain, the grammar that writes
the text and the fast-downward planner) wrapped in alfworld's own
`AlfredDemangler` (turns ids into 'apple 1') and `AlfredInfos`, exactly the
stack alfworld's `AlfredTWEnv` builds.

The planner expert is what alfworld's `AlfredExpert(expert_type="planner")`
reads: the plan that `PddlEnv` computes for `policy_commands`. That wrapper
asks for a new plan after every step; `plan()` here asks only when called,
because one search costs from a tenth of a second to seconds.

Everything that touches textworld internals is in this module.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

TASK_MARKER = "Your task is to: "
BANNER = "-= Welcome to TextWorld, ALFRED! =-"
#: facts that only record what the agent has looked at: no action needs them,
#: so a step that changes nothing else leaves every plan valid
BOOKKEEPING_PREDICATES = frozenset({"checked", "examined"})


class EngineMissing(ImportError):
    """The alfworld text engine is not installed."""


INSTALL_HINT = "the ALFWorld engine is not installed: run `bash scripts/install_alfworld.sh` (installs alfworld, textworld and the fast-downward planner)"


def require_engine() -> None:
    """Raise `EngineMissing` with install instructions when alfworld or its planner is absent."""
    try:
        import alfworld.agents.environment.alfred_tw_env  # noqa: F401
        import fast_downward  # noqa: F401
        from textworld.envs import PddlEnv  # noqa: F401
    except ImportError as err:
        raise EngineMissing(f"{INSTALL_HINT} ({err})") from err


@contextlib.contextmanager
def _argv_kept() -> Iterator[None]:
    """fast-downward's PDDL translator overwrites `sys.argv`; put it back."""
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv[:] = saved


def cache_template_parses() -> None:
    """Make textworld parse each command template and each rule condition once instead of at every step.

    At every step textworld writes the command of each applicable action by parsing the action's template with
    its tatsu grammar (`ContextSensitiveGrammar.derive`), and parses the conditions of its text rules
    (`Rule.parse_conjunctive_query`), although each parse depends on its text alone: in a cProfile of
    `reflectrl gen-data alfworld` the two were 41 and 13 of 92 seconds. Each parse of a (text, rule) is kept and
    every caller gets a deep copy, because `derive` writes a context into the symbols it is given; what the game
    prints is unchanged (`tests/test_alfworld_env.py`). Idempotent.
    """
    from textworld import logic
    from textworld.envs.pddl import textgen

    for module in (textgen, logic):
        parse = module._parse_and_convert
        if getattr(parse, "uncached", None) is None:
            module._parse_and_convert = _cached(parse)


def _cached(parse):
    # bounded: textworld's logic parser also reads each game's whole PDDL problem, which is never asked for again
    @functools.lru_cache(maxsize=1024)
    def parse_once(text: str, options: tuple):
        return parse(text, **dict(options))

    def cached_parse(text: str, **kwargs):
        if kwargs.get("trace"):  # a trace prints while it parses: parse for real
            return parse(text, **kwargs)
        return copy.deepcopy(parse_once(text, tuple(sorted(kwargs.items()))))

    cached_parse.uncached = parse
    return cached_parse


class AlfredEngine:
    """alfworld's text engine: load a game file (`game.tw-pddl`), reset, step, ask the planner.

    One engine plays any number of games one after another. Each engine loads
    its own copy of the planner library, which is never unloaded, so reuse one
    engine rather than making one per game.
    """

    def __init__(self, facts: bool = True):
        require_engine()
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
        from textworld.envs import PddlEnv

        cache_template_parses()
        infos = textworld.EnvInfos(admissible_commands=True, won=True, facts=facts, extras=["gamefile"])
        self._env = AlfredInfos(AlfredDemangler(PddlEnv(infos), shuffle=False))
        self.game_file: Path | None = None
        self.walkthrough: list[str] | None = None
        self._state = None

    def load(self, game_file: str | Path) -> None:
        """Load a game; raises ValueError for a file that is not a readable game."""
        game_file = Path(game_file)
        try:
            data = json.loads(game_file.read_text())
            walkthrough = data.get("walkthrough") or None
        except (OSError, ValueError, AttributeError) as err:
            raise ValueError(f"cannot read ALFWorld game {game_file}: {err}") from err
        self.game_file = None  # until the engine holds the new game
        with _argv_kept():
            self._env.load(str(game_file))
        self.game_file, self.walkthrough, self._state = game_file, walkthrough, None

    # ------------------------------------------------------------------ play
    def reset(self) -> str:
        """Start the game; returns the opening text (room overview and task)."""
        with _argv_kept():
            self._state = self._env.reset()
        return self._state.feedback

    def step(self, command: str) -> str:
        """Execute one admissible command; returns the game's feedback text."""
        self._state, _, _ = self._env.step(command)
        return self._state.feedback

    @property
    def admissible(self) -> list[str]:
        return list(self._state["admissible_commands"])

    @property
    def won(self) -> bool:
        return bool(self._state["won"])

    def facts(self) -> list[tuple[str, tuple[str, ...]]]:
        """Current facts as (predicate, argument names), with readable names ('apple 1')."""
        return [(f.name, tuple(v.name.strip() for v in f.arguments)) for f in self._state["facts"]]

    def world_key(self) -> frozenset[str]:
        """The facts that matter for planning (bookkeeping facts left out), for change detection."""
        return frozenset(str(f) for f in self._state["_facts"] if f.name not in BOOKKEEPING_PREDICATES)

    # --------------------------------------------------------------- planner
    def plan(self) -> list[str]:
        """The planner expert's shortest command sequence from the current state ([] when none)."""
        pddl_env = self._env.unwrapped
        # the call PddlEnv makes for `policy_commands`, made only when asked
        return list(pddl_env._pddl_state.replan(pddl_env._entity_infos))



def split_intro(text: str) -> tuple[str, str]:
    """(room overview, task) from a game's opening text."""
    body = text.replace(BANNER, "").strip()
    overview, _, task = body.partition(TASK_MARKER)
    return overview.strip(), task.strip()
