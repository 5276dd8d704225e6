"""Environment registry: short CLI names, gymnasium ids and constructors.

`import reflectrl` registers every environment with gymnasium, so
`gymnasium.make("reflectrl/DangerousTaxi-v0", level="dropoff")` works. Inside
the library we build environments with `make_env`, which skips gymnasium's
wrappers (they add per-step checks we do not need in rollouts).

Your own environment: `register_env(name, env_class, ...)` (or the decorator
``@register_env(name)`` on a `TextEnv` subclass) makes it known to every
command and to the Python API; `from_gymnasium` turns a gymnasium text game
into such a class. Commands find registrations in the modules named in
``$REFLECTRL_ENVS`` (module names or ``.py`` files, separated by commas) and
in the ``reflectrl.envs`` entry points of installed packages; both are
imported on the first look-up in each process, so worker processes of a run
find them too.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import gymnasium

from reflectrl.envs.adapter import GymnasiumTextEnv, from_gymnasium
from reflectrl.envs.base import PAGE_ACTION_PREFIX, Outcome, TextEnv, TextSpace

PLUGINS_VARIABLE = "REFLECTRL_ENVS"
"""Environment variable: modules or .py files that register environments, separated by commas."""
ENTRY_POINT_GROUP = "reflectrl.envs"
"""Entry-point group of installed packages that register environments (each entry names a module to import)."""


@dataclass(frozen=True)
class EnvEntry:
    name: str
    """Short name used on the command line."""
    gym_id: str
    entry_point: str | type[TextEnv]
    """'module:Class' of the TextEnv subclass (imported on first use), or the class itself."""
    summary: str
    splits: Mapping[str, str] | None = None
    """Task splits: split name in reflectrl (train, test...) -> the environment's ``split`` keyword; the environment
    picks a task with ``reset(options={"index": i})`` and counts them in ``num_tasks`` (or ``games``). None: the
    environment is seeded, and the splits are seed ranges (`reflectrl.datagen.config.SPLIT_SEED_OFFSETS`)."""
    explainer: str | Any | None = None
    """The oracle teacher's `Explainer` for it ('module:attribute' or the object); None: the generic one."""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Changes to each pipeline preset for it (preset name -> changes, as in `reflectrl.pipeline.presets.ENV_OVERRIDES`)."""
    pinned_kwargs: str | Callable[[Mapping[str, Any]], Mapping[str, tuple[str, str]]] | None = None
    """Keywords the environment reads from environment variables when they are not given ('module:function' or the
    function; None: none): called with a run's env_kwargs, it returns {keyword: (variable, value)} for each one it
    would read, and raises FileNotFoundError when a variable names nothing usable. `reflectrl pipeline` pins those
    values in the run's settings and names the variables in the command it records (ALFWorld: its game folder)."""

    def env_class(self) -> type[TextEnv]:
        return _resolve(self.entry_point)

    def pinned(self, env_kwargs: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        """`pinned_kwargs` for a run with `env_kwargs`: {keyword: (environment variable, value)}."""
        return {} if self.pinned_kwargs is None else dict(_resolve(self.pinned_kwargs)(env_kwargs))


def _resolve(target: Any) -> Any:
    """The object a 'module:attribute' string names (imported on first use), or `target` itself."""
    if not isinstance(target, str):
        return target
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


ENVIRONMENTS: dict[str, EnvEntry] = {}


def register(entry: EnvEntry) -> None:
    """Add an environment under its short name and its gymnasium id."""
    ENVIRONMENTS[entry.name] = entry
    known = gymnasium.registry.get(entry.gym_id)
    if known is not None and known.entry_point != entry.entry_point:
        del gymnasium.registry[entry.gym_id]  # registered again with another class (a re-run script or notebook)
        known = None
    if known is None:
        gymnasium.register(id=entry.gym_id, entry_point=entry.entry_point)


def register_env(
    name: str,
    env: str | type[TextEnv] | None = None,
    *,
    summary: str = "",
    gym_id: str | None = None,
    splits: Mapping[str, str] | None = None,
    explainer: str | Any | None = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    pinned_kwargs: str | Callable[[Mapping[str, Any]], Mapping[str, tuple[str, str]]] | None = None,
) -> Any:
    """Make an environment known to every command (`reflectrl envs`, `play`, `gen-data`, `train`, `eval`, `pipeline`).

    `env` is a `TextEnv` subclass (for example made by `from_gymnasium`) or 'module:Class'; without it this is a
    class decorator. `gym_id` defaults to ``reflectrl/<name>-v0``; `splits`, `explainer`, `presets` and `pinned_kwargs`
    are the `EnvEntry` fields of those names. Registering a name again replaces the earlier registration.
    """
    if not name or not name.replace("-", "_").isidentifier():
        raise ValueError(f"environment name {name!r} must be a word of letters, digits, '_' or '-'")

    def add(cls: str | type[TextEnv]) -> str | type[TextEnv]:
        if not isinstance(cls, str) and not (isinstance(cls, type) and issubclass(cls, TextEnv)):
            raise TypeError(f"register_env({name!r}) needs a TextEnv subclass (from_gymnasium makes one) or 'module:Class', not {cls!r}")
        doc = cls if isinstance(cls, str) else (cls.__doc__ or "").strip().split("\n")[0]
        register(EnvEntry(
            name=name, gym_id=gym_id or f"reflectrl/{name}-v0", entry_point=cls, summary=summary or doc, splits=splits,
            explainer=explainer, presets=dict(presets or {}), pinned_kwargs=pinned_kwargs,
        ))
        return cls

    return add if env is None else add(env)


_loaded_plugins: set[str] = set()
_entry_points_read = False


def load_plugins() -> None:
    """Import the modules that register environments: the entry points of group `ENTRY_POINT_GROUP` and the modules
    or .py files named in ``$REFLECTRL_ENVS``, each once per process."""
    global _entry_points_read
    wanted = []
    if not _entry_points_read:
        _entry_points_read = True  # the installed packages do not change while a process runs
        wanted += [(f"entry point {ep.name} ({ep.value})", ep.load) for ep in entry_points(group=ENTRY_POINT_GROUP)]
    specs = (part.strip() for part in os.environ.get(PLUGINS_VARIABLE, "").split(","))
    # a file is known by its full path: the same name in another folder is another module
    specs = (str(Path(spec).expanduser().resolve()) if spec.endswith(".py") else spec for spec in specs if spec)
    wanted += [(f"{PLUGINS_VARIABLE} entry {spec!r}", _importer(spec)) for spec in specs]
    for what, load in wanted:
        if what in _loaded_plugins:
            continue
        # marked first: a plugin that looks environments up while it is imported must not import itself again
        _loaded_plugins.add(what)
        try:
            load()
        except Exception as err:
            _loaded_plugins.discard(what)
            raise ImportError(f"cannot import the {what}, which registers environments: {type(err).__name__}: {err}") from err


def _importer(spec: str) -> Callable[[], Any]:
    """How to import one ``$REFLECTRL_ENVS`` entry: a .py file by its path, anything else as a module name."""
    if not spec.endswith(".py"):
        return lambda: importlib.import_module(spec)

    def load_file() -> None:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        module_name = f"reflectrl_plugin_{path.stem}"
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # classes defined there must find their module (dataclasses, pickling)
        try:
            loader.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise

    return load_file


def environments() -> dict[str, EnvEntry]:
    """Every registered environment by short name, the plugins' included."""
    load_plugins()
    return dict(ENVIRONMENTS)


def lookup(name: str) -> EnvEntry:
    """Find an environment by short name or gymnasium id."""
    load_plugins()
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
        explainer="reflectrl.teachers.oracle_taxi:EXPLAINER",
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
register(
    EnvEntry(
        name="autoexplore",
        gym_id="reflectrl/AutoExplore-v0",
        entry_point="reflectrl.envs.autoexplore.env:AutoExploreEnv",
        summary="Find the file of a repository that answers a question, with cd, cat and id (sandboxed, read-only).",
        # Its test split holds repositories never used for training.
        splits={"train": "train", "test": "test"},
        explainer="reflectrl.teachers.oracle_autoexplore:EXPLAINER",
    )
)
register(
    EnvEntry(
        name="alfworld",
        gym_id="reflectrl/ALFWorld-v0",
        entry_point="reflectrl.envs.alfworld.env:ALFWorldEnv",
        summary="ALFWorld household tasks (pick and place by default) on the alfworld text engine; real data or generated games.",
        # Held out: room layouts never seen in training.
        splits={"train": "train", "valid_seen": "valid_seen", "valid_unseen": "valid_unseen", "test": "valid_unseen"},
        explainer="reflectrl.teachers.oracle_alfworld:EXPLAINER",
        pinned_kwargs="reflectrl.envs.alfworld.dataset:pinned_data_dir",
    )
)
register_env(
    "textworld", "reflectrl.envs.textworld:TextWorldEnv", gym_id="reflectrl/TextWorld-v0",
    summary="TextWorld's coin collector (default) or treasure hunter games, generated offline; levels from the challenge's difficulty.",
    splits={"train": "train", "validation": "validation", "test": "test"},
    explainer="reflectrl.teachers.oracle_textworld:EXPLAINER",
)

__all__ = [
    "ENVIRONMENTS",
    "EnvEntry",
    "GymnasiumTextEnv",
    "Outcome",
    "PAGE_ACTION_PREFIX",
    "TextEnv",
    "TextSpace",
    "environments",
    "from_gymnasium",
    "load_plugins",
    "lookup",
    "make_env",
    "register",
    "register_env",
]
