"""TextWorld games (coin collector, treasure hunter) as a reflectrl environment (`reflectrl/TextWorld-v0`).

The first environment built with `reflectrl.envs.from_gymnasium`: a plain
gymnasium environment over generated games (`game_env.TextWorldGames`)
wrapped in a few lines below, and registered with one `register_env` call
(in `reflectrl.envs`).

* **Games**: made offline by TextWorld's challenge generators and cached
  (`games`); ``challenge`` is ``coin_collector`` (default) or
  ``treasure_hunter``.
* **Levels** (curriculum): ``easy``, ``medium``, ``hard``, each a range of the
  challenge's own difficulty numbers (`games.CHALLENGES`).
* **Splits**: ``train``, ``validation``, ``test``, disjoint seed ranges;
  ``games`` sets how many games a split has (default 100 / 20 / 40),
  ``index`` fixes one.
* **Task**: the game's objective. **Observation**: the game's answer, the
  room, the inventory. **Actions**: the game's admissible commands.
* **Reward**: 1 for winning (episode ends with success), 0 per step, -0.1 for
  an inadmissible action; losing (treasure hunter's wrong object) ends the
  episode without success. Horizon 30.
* **Oracle**: the game's winning policy from the current state
  (``policy_commands``: the walkthrough at reset, re-planned by TextWorld
  after any other command).

TextWorld is imported only when a game is made or played;
`scripts/install_alfworld.sh` installs it.
"""

from reflectrl.envs.adapter import from_gymnasium
from reflectrl.envs.textworld.game_env import TextWorldGames
from reflectrl.envs.textworld.games import CHALLENGES, LEVELS, SPLITS, GameSpec, game_specs, make_games

TextWorldEnv = from_gymnasium(
    TextWorldGames,
    levels=LEVELS,
    task_key="objective",
    oracle="policy_commands",
    info_keys=("game_id", "task_type", "difficulty"),
    horizon=30,
    invalid_action_reward=-0.1,
    menu_size=128,
    name="TextWorldEnv",
)

__all__ = ["CHALLENGES", "LEVELS", "SPLITS", "GameSpec", "TextWorldEnv", "TextWorldGames", "game_specs", "make_games"]
