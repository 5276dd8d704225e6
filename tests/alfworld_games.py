"""A mini ALFWorld data set in the real layout, generated once per test session (about 10-20 s).

`mini_data_set(tmp_path_factory)` returns its root: 4/1/1 pick-and-place games
in train/valid_seen/valid_unseen, plus one train game of each of the six task
types (seed 1).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_ROOT: Path | None = None


def require_alfworld() -> None:
    if importlib.util.find_spec("alfworld") is None or importlib.util.find_spec("fast_downward") is None:
        pytest.fail("the ALFWorld engine is not installed: run `bash scripts/install_alfworld.sh`")


def mini_data_set(tmp_path_factory) -> Path:
    global _ROOT
    require_alfworld()
    if _ROOT is None:
        from reflectrl.envs.alfworld.generator import GeneratorConfig, make_games

        root = tmp_path_factory.mktemp("alfworld_data")
        first = make_games(GeneratorConfig(out=root, n=6, task_types="pick_and_place_simple", seed=0, valid_fraction=0.2, workers=2))
        every_type = make_games(GeneratorConfig(out=root, n=6, task_types="all", seed=1, valid_fraction=0.0, workers=2))
        assert not first.failed and not every_type.failed, first.failed + every_type.failed
        _ROOT = root
    return _ROOT
