"""The real-data loader, on a generated mini data set in the layout of alfworld's own download."""

import json
import shutil
from pathlib import Path

import pytest
from alfworld_games import mini_data_set

from reflectrl.envs.alfworld.dataset import (
    ALFWORLD_DEFAULT_DATA,
    GAME_FILE,
    JSON_DIR,
    TRAJ_FILE,
    find_games,
    resolve_data_root,
)
from reflectrl.envs.alfworld.tasks import TASK_TYPES


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_data_set(tmp_path_factory)


def test_loader_finds_the_same_games_as_alfworlds_own_loader(root):
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = {
        "env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6]},
        "dataset": {"data_path": str(root / JSON_DIR / "train"), "num_train_games": -1},
    }
    theirs = {Path(p).resolve() for p in AlfredTWEnv(config, train_eval="train").game_files}
    ours = {g.game_file for g in find_games(root, "train")}
    assert ours == theirs and len(ours) >= 9


def test_records_filter_by_type_and_carry_the_walkthrough_length(root):
    games = find_games(root, "train", ("pick_and_place_simple",))
    assert games and all(g.task_type == "pick_and_place_simple" and g.split == "train" for g in games)
    assert [g.game_id for g in games] == sorted(g.game_id for g in games)
    for g in games:
        assert g.expert_steps == len(json.loads(g.game_file.read_text())["walkthrough"])
        assert g.game_file.parent.relative_to(root.resolve() / JSON_DIR / "train").as_posix() == g.game_id
    assert {g.task_type for g in find_games(root, "train")} == set(TASK_TYPES)


def test_unsolvable_broken_movable_and_sliced_folders_are_skipped(root, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(root / JSON_DIR / "valid_seen", copy / JSON_DIR / "valid_seen")
    (good,) = find_games(copy, "valid_seen")
    trial = good.game_file.parent
    damages = {
        "unsolvable": lambda f: f.write_text(json.dumps({**json.loads(f.read_text()), "solvable": False})),
        "broken": lambda f: f.write_text("{not json"),
        "nogame": lambda f: f.unlink(),
        "movable": None,  # alfworld skips these task folders: its text engine lacks those tasks
        "Sliced": None,
    }
    for tag, damage in damages.items():
        copied = trial.parent.with_name(trial.parent.name + tag) / trial.name
        shutil.copytree(trial, copied)
        if damage:
            damage(copied / GAME_FILE)
    assert [g.game_id for g in find_games(copy, "valid_seen")] == [good.game_id]
    assert find_games(copy / JSON_DIR, "valid_seen")[0].game_id == good.game_id  # json_2.1.1 itself works too


def test_where_games_come_from(root, tmp_path, monkeypatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    assert resolve_data_root(None) is None
    assert resolve_data_root(root) == root
    monkeypatch.setenv("ALFWORLD_DATA", str(root))
    assert resolve_data_root(None) == root
    # importing alfworld sets ALFWORLD_DATA to its own empty cache: that is not a user choice
    monkeypatch.setenv("ALFWORLD_DATA", str(ALFWORLD_DEFAULT_DATA))
    if not (ALFWORLD_DEFAULT_DATA / JSON_DIR).is_dir():
        assert resolve_data_root(None) is None
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ALFWORLD_DATA .* has no json_2\.1\.1"):
        resolve_data_root(None)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        resolve_data_root(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no split 'test' .*splits there: train, valid_seen, valid_unseen"):
        find_games(root, "test")


def test_default_set_is_generated_once_into_the_cache(tmp_path, monkeypatch, capsys):
    from reflectrl.envs.alfworld import dataset
    from reflectrl.envs.alfworld.env import ALFWorldEnv

    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    monkeypatch.setenv("REFLECTRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dataset, "DEFAULT_SET_SIZE", 3)
    env = ALFWorldEnv(split="valid_unseen", index=0)
    assert env.data_root == tmp_path / "cache" / "alfworld"
    assert "generating 3 pick_and_place_simple games" in capsys.readouterr().err
    assert len(env.games) == 1 and env.reset(seed=0)[1]["split"] == "valid_unseen"
    ALFWorldEnv(split="train")
    assert "generating" not in capsys.readouterr().err
    traj = json.loads(next((env.data_root / JSON_DIR / "train").glob(f"*/*/{TRAJ_FILE}")).read_text())
    assert traj["task_type"] == "pick_and_place_simple"
