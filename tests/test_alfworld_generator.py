"""The offline ALFWorld game generator: layout, solvability, determinism, held-out rooms, known traps."""

import json
import re

import pytest
from alfworld_games import mini_data_set

from reflectrl.envs.alfworld.dataset import GAME_FILE, JSON_DIR, PROBLEM_FILE, TRAJ_FILE
from reflectrl.envs.alfworld.generator import (
    GeneratorConfig,
    make_slot,
    solve,
    split_sizes,
)
from reflectrl.envs.alfworld.tasks import SPLITS, TASK_TYPES


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_data_set(tmp_path_factory)


def trial_folders(root):
    return sorted(p.parent for p in (root / JSON_DIR).glob(f"*/*/*/{GAME_FILE}"))


def test_games_are_written_in_the_real_data_layout(root):
    folders = trial_folders(root)
    assert len(folders) >= 11  # 6 pick-and-place + one per type (one may be shared with the first run)
    for folder in folders:
        split, task_folder, trial = folder.relative_to(root / JSON_DIR).parts
        assert split in SPLITS and trial.startswith("trial_")
        assert {p.name for p in folder.iterdir()} == {TRAJ_FILE, PROBLEM_FILE, GAME_FILE}
        traj = json.loads((folder / TRAJ_FILE).read_text())
        params = traj["pddl_params"]
        assert task_folder == f"{traj['task_type']}-{params['object_target']}-None-{params['parent_target'] or params['toggle_target']}-{traj['scene']['scene_num']}"
        game = json.loads((folder / GAME_FILE).read_text())
        assert set(game) == {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
        assert game["solvable"] is True and len(game["walkthrough"]) >= 2
        assert game["pddl_problem"] == (folder / PROBLEM_FILE).read_text()
        assert "(canContain " in game["pddl_problem"]
        # the task text in the grammar is the annotation in traj_data
        assert f"Your task is to: {traj['turk_annotations']['anns'][0]['task_desc']}." in game["grammar"]
    types = {json.loads((f / TRAJ_FILE).read_text())["task_type"] for f in folders}
    assert types == set(TASK_TYPES)
    for split in SPLITS:
        assert any(f.relative_to(root / JSON_DIR).parts[0] == split for f in folders)


def test_unseen_games_use_rooms_held_out_from_train(root):
    from alfworld.gen import constants

    for folder in trial_folders(root):
        split = folder.relative_to(root / JSON_DIR).parts[0]
        scene = json.loads((folder / TRAJ_FILE).read_text())["scene"]["scene_num"]
        expected = constants.TEST_SCENE_NUMBERS if split == "valid_unseen" else constants.TRAIN_SCENE_NUMBERS
        assert scene in expected, (split, scene)


def test_same_seed_gives_the_same_game_and_a_rerun_reuses_it(root, tmp_path):
    config = GeneratorConfig(out=tmp_path, n=6, task_types="pick_and_place_simple", seed=0, valid_fraction=0.2, workers=1)
    again = make_slot(config, "valid_unseen", 0, "pick_and_place_simple")
    assert again.game_id and not again.reused
    mine = tmp_path / JSON_DIR / "valid_unseen" / again.game_id
    theirs = root / JSON_DIR / "valid_unseen" / again.game_id
    for name in (TRAJ_FILE, PROBLEM_FILE, GAME_FILE):
        assert (mine / name).read_bytes() == (theirs / name).read_bytes()
    rerun = make_slot(config, "valid_unseen", 0, "pick_and_place_simple")
    assert rerun.reused and rerun.game_id == again.game_id
    other_seed = make_slot(GeneratorConfig(out=tmp_path, seed=5, workers=1), "valid_unseen", 0, "pick_and_place_simple")
    assert other_seed.game_id != again.game_id


def test_a_problem_without_can_contain_facts_is_rejected(root, tmp_path):
    """Known trap: without canContain nothing can be put anywhere; the planner then returns no plan."""
    game_file = next(f for f in trial_folders(root) if "/pick_and_place_simple-" in f.as_posix()) / GAME_FILE
    game = json.loads(game_file.read_text())
    game["pddl_problem"] = re.sub(r"\s*\(canContain [^)]*\)", "", game["pddl_problem"])
    game["walkthrough"], game["solvable"] = None, None
    broken = tmp_path / GAME_FILE
    broken.write_text(json.dumps(game))
    walkthrough, reason = solve(broken)
    assert walkthrough == [] and reason
    assert solve(game_file)[0] == json.loads(game_file.read_text())["walkthrough"]


def test_split_sizes_and_config_validation():
    assert split_sizes(100, 0.1) == {"train": 80, "valid_seen": 10, "valid_unseen": 10}
    assert split_sizes(3, 0.1) == {"train": 1, "valid_seen": 1, "valid_unseen": 1}
    assert split_sizes(5, 0.0) == {"train": 5, "valid_seen": 0, "valid_unseen": 0}
    assert sum(split_sizes(7, 0.5).values()) == 7
    with pytest.raises(ValueError, match="unknown ALFWorld task type"):
        GeneratorConfig(out="x", task_types="pick_and_fly")
    with pytest.raises(ValueError, match="n must be"):
        GeneratorConfig(out="x", n=0)
    with pytest.raises(ValueError, match="valid_fraction"):
        GeneratorConfig(out="x", valid_fraction=0.9)
