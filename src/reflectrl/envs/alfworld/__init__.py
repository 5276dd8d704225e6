"""ALFWorld on the alfworld package's text engine: environment, data loader and offline game generator.

Modules: `tasks` (task types, splits, levels), `dataset` (finding games in the
real data layout, the default generated set), `scenes` and `problems` (rooms
and task sampling from the tables inside the alfworld package), `generator`
(`make_games`), `engine` (one game on textworld/alfworld with the planner
expert) and `env` (`ALFWorldEnv`).

alfworld and textworld are imported only when a game is loaded or made, so
this package imports without them; `scripts/install_alfworld.sh` installs them.
"""

from reflectrl.envs.alfworld.dataset import GameRecord, find_games, resolve_data_root
from reflectrl.envs.alfworld.env import ALFWorldEnv
from reflectrl.envs.alfworld.generator import (
    GenerationReport,
    GeneratorConfig,
    make_games,
)
from reflectrl.envs.alfworld.tasks import DEFAULT_TASK_TYPES, LEVELS, SPLITS, TASK_TYPES

__all__ = [
    "DEFAULT_TASK_TYPES",
    "LEVELS",
    "SPLITS",
    "TASK_TYPES",
    "ALFWorldEnv",
    "GameRecord",
    "GenerationReport",
    "GeneratorConfig",
    "find_games",
    "make_games",
    "resolve_data_root",
]
