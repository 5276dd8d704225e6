"""TextWorld games made offline by TextWorld's own challenge generators, kept in a cache folder.

A game is fixed by (challenge, difficulty, seed): the challenge's maker (what
``tw-make tw-<challenge> --level DIFFICULTY --seed SEED`` runs) builds it and
TextWorld's bundled Inform 7 compiles it to a ``.z8`` story file. Generation
is deterministic (the same three numbers give the same file, byte for byte),
so a cache folder only saves time: it lives in
``$REFLECTRL_CACHE/textworld/<textworld version>/<challenge>/<difficulty>/<seed>/``
and is filled the first time a game is played (about 1-2 s a game on one core,
plus 3 s once per process to load TextWorld's knowledge base).

Levels are ranges of the challenge's own difficulty numbers (see `CHALLENGES`).
Splits are seed ranges that never meet (`reflectrl.datagen.config.SPLIT_SEED_OFFSETS`):
game k of a split has seed ``offset + k`` and the k-th difficulty of the
level (cycling), so the test games are never played in training.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from reflectrl.datagen.config import SPLIT_SEED_OFFSETS
from reflectrl.storage import atomic_folder, cache_root

CHALLENGES: dict[str, dict[str, tuple[int, ...]]] = {
    # Difficulty d <= 100: a chain of d rooms, the coin in the last (walkthrough: d - 1 moves and "take coin");
    # 101-200: the same chain with a dead-end room beside each room; 201-300: two dead ends beside each.
    "coin_collector": {"easy": (2, 3, 4, 5), "medium": (102, 103, 104, 105), "hard": (206, 207, 208, 209, 210)},
    # The challenge's own modes: easy 1-10 (5 rooms, no doors, quests of 1-5 steps), medium 11-20 (10 rooms,
    # closed doors and containers, 2-10 steps), hard 21-30 (20 rooms, locked ones and the keys, 3-20 steps).
    # Taking the other object in the world loses the game.
    "treasure_hunter": {"easy": tuple(range(1, 11)), "medium": tuple(range(11, 21)), "hard": tuple(range(21, 31))},
}
"""Challenge -> level -> the challenge's difficulty numbers the level's games use."""
LEVELS = ("easy", "medium", "hard")
SPLITS = tuple(SPLIT_SEED_OFFSETS)
DEFAULT_GAMES = {"train": 100, "validation": 20, "test": 40}
"""Games in each split of a level when none are asked for."""
INSTALL_HINT = "TextWorld is not installed: `bash scripts/install_alfworld.sh` installs it with ALFWorld (or `pip install textworld`)"
STORY_FILE = "game.z8"


@dataclass(frozen=True)
class GameSpec:
    """One game: what the challenge's generator is given."""

    challenge: str
    difficulty: int
    seed: int

    @property
    def game_id(self) -> str:
        return f"{self.challenge}-{self.difficulty}-{self.seed}"


def require_textworld() -> None:
    """ImportError with the install command when TextWorld (and its Z-machine, jericho) is missing."""
    if importlib.util.find_spec("textworld") is None or importlib.util.find_spec("jericho") is None:
        raise ImportError(INSTALL_HINT)


def check_choice(challenge: str, level: str, split: str) -> None:
    if challenge not in CHALLENGES:
        raise ValueError(f"unknown TextWorld challenge {challenge!r}; choose from {', '.join(CHALLENGES)}")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; choose from {', '.join(LEVELS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def game_specs(challenge: str, level: str, split: str, count: int) -> list[GameSpec]:
    """The first `count` games of a split at a level, in index order."""
    check_choice(challenge, level, split)
    if count < 1:
        raise ValueError(f"a split needs at least one game, got {count}")
    difficulties = CHALLENGES[challenge][level]
    start = SPLIT_SEED_OFFSETS[split]
    return [GameSpec(challenge, difficulties[k % len(difficulties)], start + k) for k in range(count)]


def default_root() -> Path:
    import textworld

    return cache_root() / "textworld" / textworld.__version__


def game_file(spec: GameSpec, root: Path | None = None) -> Path:
    """The story file of `spec`, generated into the cache folder `root` when it is not there yet."""
    folder = (root or default_root()) / spec.challenge / str(spec.difficulty) / str(spec.seed)
    story = folder / STORY_FILE
    if not story.is_file():
        # replace=False: when another process made the same game meanwhile, its (identical) folder is kept
        with atomic_folder(folder, replace=False) as scratch:
            _generate(spec, scratch / STORY_FILE)
    return story


def make_games(specs: list[GameSpec], root: Path | None = None) -> list[Path]:
    """Generate every game of `specs` that the cache lacks; their story files, in order."""
    return [game_file(spec, root) for spec in specs]


def _generate(spec: GameSpec, story: Path) -> None:
    """What `tw-make tw-<challenge> --level <difficulty> --seed <seed> --output <story>` does, in this process."""
    import textworld
    import textworld.challenges
    from textworld.generator import compile_game

    options = textworld.GameOptions()
    options.seeds = spec.seed
    options.path = str(story)
    options.file_ext = ".z8"
    options.force_recompile = True
    _, make, _ = textworld.challenges.CHALLENGES[f"tw-{spec.challenge}"]
    compile_game(make(settings={"level": spec.difficulty}, options=options), options)
