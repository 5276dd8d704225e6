"""ALFWorldEnv on a generated mini data set: gymnasium checks, oracle, re-planning, outcomes, levels."""

import gymnasium
import numpy as np
import pytest
from alfworld_games import mini_data_set
from gymnasium.utils.env_checker import check_env

import reflectrl  # noqa: F401  registers the gymnasium ids
from reflectrl.envs import make_env
from reflectrl.envs.alfworld import ALFWorldEnv
from reflectrl.envs.alfworld.search import count_prior, instance_key, train_prior
from reflectrl.envs.alfworld.selfcheck import play_episode, run_checks
from reflectrl.envs.alfworld.tasks import TASK_TYPES, goal_types, instance_type
from reflectrl.envs.alfworld.world import World
from reflectrl.envs.base import PAGE_ACTION_PREFIX


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_data_set(tmp_path_factory)


@pytest.fixture(scope="module")
def every_type(root):
    return ALFWorldEnv(data_dir=root, split="train", task_types="all")


def test_gymnasium_check_env_passes(root):
    env = gymnasium.make("reflectrl/ALFWorld-v0", data_dir=str(root), split="valid_seen")
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.slow  # about 15 s of CPU: twelve episodes over the six task types
def test_oracle_wins_every_task_type_and_replans_after_random_steps(every_type):
    rng = np.random.default_rng(0)
    seen = set()
    for i, game in enumerate(every_type.games):
        _, info = every_type.reset(seed=i, options={"index": i})
        steps, done = 0, False
        while not done:
            _, reward, terminated, truncated, info = every_type.step(every_type.oracle_index())
            steps += 1
            done = terminated or truncated
        assert info["success"] and terminated and reward == 1.0, game.game_id
        assert steps == game.expert_steps
        seen.add(game.task_type)
        # the same game again, three random steps first: the planner must re-plan from there
        assert play_episode(every_type, i, seed=i, rng=rng, random_steps=3), game.game_id
    assert seen == set(TASK_TYPES)


def test_run_checks_reports_oracle_random_and_recovery(root):
    env = ALFWorldEnv(data_dir=root, split="train", horizon=12)  # pick and place needs at most 6 steps
    result = run_checks(env, games=2, random_steps=3, seed=0)
    assert result.games == 2 and result.oracle_wins == 2 and result.recovery_wins == 2
    assert result.random_wins <= 1


def test_observation_task_history_and_bounded_history(root):
    env = ALFWorldEnv(data_dir=root, split="train", history_length=2, compact=False)
    obs, info = env.reset(seed=0, options={"index": 0})
    assert info["task"] and obs.startswith(f"Task: {info['task']}")
    assert "Looking quickly around you" in info["observation"]
    assert all(a in obs for a in info["actions"])
    assert info["task_type"] == "pick_and_place_simple" and info["split"] == "train"
    for _ in range(4):
        obs, _, terminated, _, info = env.step("look")
    assert not terminated
    assert info["history"] == ["look -> " + info["observation"].split("\n")[0]] * 2
    assert "You are in the middle of the room. You are carrying nothing." in info["observation"]
    obs, _, _, _, info = env.step("fly away")  # inadmissible entries are bounded too
    assert len(info["history"]) == 2 and "invalid action" in info["history"][-1]
    assert obs.count("look -> ") == 1


def test_compact_text_keeps_every_name_and_shows_the_last_result_once(root):
    import re

    names = re.compile(r"[a-z]+ \d+")
    actions = ["help", "look", "inventory"]
    raw, short = (ALFWorldEnv(data_dir=root, split="train", history_length=8, compact=c) for c in (False, True))
    for i in range(len(raw.games)):
        texts = {}
        for env in (raw, short):
            _, info = env.reset(seed=0, options={"index": i})
            seen = [info["observation"]]
            plan = list(env._plan or [])
            for action in actions + plan[:-1]:  # stop one step short of winning, so the episode keeps its text
                obs, _, terminated, _, info = env.step(action)
                assert not terminated
                seen.append(info["observation"])
            texts[env.compact] = ("\n".join(seen + info["history"]), obs)
        (raw_text, raw_obs), (short_text, short_obs) = texts[False], texts[True]
        # every receptacle and object name of the engine's text is still there (ranges spelled out)
        spelled = re.sub(r"([a-z]+) (\d+)-(\d+)", lambda m: ", ".join(f"{m[1]} {k}" for k in range(int(m[2]), int(m[3]) + 1)), short_text)
        assert set(names.findall(raw_text)) <= set(names.findall(spelled))
        assert len(short_obs) < 0.8 * len(raw_obs)
        assert "Available commands" not in short_text and "Looking quickly" not in short_text
        last = info["history"][-1].split(" -> ", 1)[-1]
        assert last not in info["observation"]  # shown once, in the history


def test_compact_wording_rules():
    from reflectrl.envs.alfworld.text import compact_feedback, compact_overview, grouped

    assert grouped(["cabinet 3", "cabinet 1", "cabinet 2", "fridge 1", "drawer 5", "drawer 2"]) == "cabinet 1-3, drawer 2, 5, fridge 1"
    overview = "You are in the middle of a room. Looking quickly around you, you see a cabinet 2, a cabinet 1, and a toaster 1."
    assert compact_overview(overview) == "You are in the middle of a room. Around you: cabinet 1-2, toaster 1."
    assert compact_feedback("You arrive at drawer 2. The drawer 2 is closed.") == "drawer 2 is closed."
    assert compact_feedback("You arrive at countertop 1. On the countertop 1, you see a tomato 1, an apple 2, and a mug 1.") == "On it: tomato 1, apple 2, mug 1."
    assert compact_feedback("You open the drawer 4. The drawer 4 is open. In it, you see nothing.") == "In it: nothing."
    assert compact_feedback("You arrive at fridge 1. The fridge 1 is open. In it, you see a egg 1.") == "fridge 1 is open; in it: egg 1."
    assert compact_feedback("You pick up the mug 1 from the countertop 1.") == "Done."
    assert compact_feedback("You are in the middle of a room. Looking quickly around you, you see nothing.") == (
        "You are in the middle of a room. Around you: nothing."
    )
    assert compact_feedback("Nothing happens.") == "Nothing happens."  # no rule: kept as it is


def test_inadmissible_action_changes_nothing(root):
    env = ALFWorldEnv(data_dir=root, split="train")
    _, info = env.reset(seed=0, options={"index": 1})
    oracle = env.oracle_action()
    for bad in (999, "dance", None, True):
        _, reward, terminated, _, info2 = env.step(bad)
        assert reward == env.invalid_action_reward and info2["invalid_action"] and not terminated
        assert info2["actions"] == info["actions"] and env.oracle_action() == oracle


def test_horizon_truncates(root):
    env = ALFWorldEnv(data_dir=root, split="train", horizon=2)
    env.reset(seed=0, options={"index": 0})
    env.step("look")
    _, _, terminated, truncated, info = env.step("look")
    assert truncated and not terminated and not info["success"] and info["actions"] == []


def test_paging_keeps_menus_small_and_the_oracle_reaches_its_action(root):
    env = make_env("alfworld", split="valid_unseen", index=0, data_dir=str(root), task_types=("pick_and_place_simple",), horizon=60, max_actions=5)
    _, info = env.reset(seed=0)
    assert len(info["actions"]) == 5 and info["actions"][-1].startswith(PAGE_ACTION_PREFIX)
    done, success = False, False
    while not done:
        _, _, terminated, truncated, info = env.step(env.oracle_index())
        done, success = terminated or truncated, info["success"]
        assert len(info["actions"]) <= 5
    assert success


def test_levels_select_games_by_walkthrough_length(root):
    full = ALFWorldEnv(data_dir=root, split="train", task_types="all")
    easy = ALFWorldEnv(data_dir=root, split="train", task_types="all", level="easy")
    assert full.level == "full" and len(easy.games) < len(full.games)
    assert all(g.expert_steps <= 4 for g in easy.games)
    _, info = full.reset(seed=0, options={"level": "easy"})
    assert info["level"] == "easy" and info["expert_steps"] <= 4


def test_seeded_resets_are_reproducible(root):
    a = ALFWorldEnv(data_dir=root, split="train", task_types="all")
    b = ALFWorldEnv(data_dir=root, split="train", task_types="all")
    picked = set()
    for seed in range(3):
        obs, info = a.reset(seed=seed)
        assert obs == b.reset(seed=seed)[0]
        picked.add(info["game_id"])
    assert len(picked) > 1


def test_choosing_games_and_clear_errors(root):
    env = ALFWorldEnv(data_dir=root, split="train")
    game = env.games[2]
    _, info = ALFWorldEnv(data_dir=root, split="train", task_id=game.game_id).reset(seed=0)
    assert info["game_id"] == game.game_id
    with pytest.raises(ValueError, match="out of range"):
        ALFWorldEnv(data_dir=root, split="valid_seen", index=7)
    with pytest.raises(ValueError, match="no game"):
        ALFWorldEnv(data_dir=root, split="train", task_id="nope/trial_x")
    with pytest.raises(ValueError, match="unknown ALFWorld task type"):
        ALFWorldEnv(data_dir=root, task_types="pick_and_fly")
    with pytest.raises(FileNotFoundError, match="no split 'test'"):
        ALFWorldEnv(data_dir=root, split="test")
    with pytest.raises(ValueError, match="unknown level"):
        ALFWorldEnv(data_dir=root, level="expert")


def test_decoy_is_an_unvisited_place_without_the_object_only_while_searching(root):
    env = ALFWorldEnv(data_dir=root, split="train", horizon=30)
    rng = np.random.default_rng(0)
    decoys = 0
    for index in range(len(env.games)):
        _, info = env.reset(seed=index, options={"index": index})
        obj_type, _ = goal_types(info["game_id"])
        visited: set[str] = set()
        carrying = False
        while True:
            best = env.oracle_action()
            decoy = env.decoy_action(rng)
            if not best.startswith("go to ") or carrying:
                assert decoy is None, (best, decoy)
            if decoy is not None:
                decoys += 1
                assert decoy.startswith("go to ") and decoy != best and decoy in info["actions"] and decoy not in visited
                _, _, terminated, truncated, info = env.step(decoy)
                visited.add(decoy)
                # nothing of the goal type where a decoy leads: the object is still to be found
                assert not terminated and not info["invalid_action"]
                assert f"{obj_type} " not in info["history"][-1].split(" -> ", 1)[-1], info["history"][-1]
                if truncated:
                    break
                continue
            _, _, terminated, truncated, info = env.step(best)
            visited.add(best)
            carrying = carrying or best.startswith("take ")
            if terminated or truncated:
                assert info["success"] or truncated
                break
    assert decoys >= 2


def test_show_visited_lists_every_place_gone_to_beyond_the_history_window(root):
    shown = ALFWorldEnv(data_dir=root, split="train", history_length=1, show_visited=True)
    plain = ALFWorldEnv(data_dir=root, split="train", history_length=1)
    _, info = shown.reset(seed=0, options={"index": 0})
    plain.reset(seed=0, options={"index": 0})
    places = [a for a in info["actions"] if a.startswith("go to ")][:3]
    for action in places:
        obs, *_ = shown.step(action)
        other, *_ = plain.step(action)
    assert f"Visited: {', '.join(a[6:] for a in places)}." in obs
    assert "Visited" not in other and places[0] not in other.split("Admissible actions:")[0]
    shown.reset(seed=0, options={"index": 0})
    assert "Visited" not in shown.step("look")[0]  # a new episode starts with no place visited


def test_search_prior_counts_train_hiding_places_and_orders_by_them(tmp_path):
    games = []
    for i, lines in enumerate((
        ["(inReceptacle Apple_bar_1 Fridge_bar_2)", "(inReceptacle Mug_bar_3 Cabinet_bar_4)"],
        ["(inReceptacle Apple_bar_5 CounterTop_bar_6)", "(inReceptacle Apple_bar_7 Fridge_bar_8)",
         "(inReceptacle Bowl_bar_9 Cabinet_bar_1)"],
    )):
        folder = tmp_path / f"game{i}"
        folder.mkdir()
        (folder / "initial_state.pddl").write_text("(:init\n" + "\n".join(lines) + "\n)")
        games.append(folder / "game.tw-pddl")
    (tmp_path / "no_state").mkdir()
    prior = count_prior([*games, tmp_path / "no_state" / "game.tw-pddl"])
    assert prior.games == 2 and instance_key("cabinet 10") > instance_key("cabinet 2")
    room = ["cabinet 10", "sinkbasin 1", "countertop 1", "cabinet 2", "fridge 1"]
    # the object's own hiding places first, then where anything is hidden, then the rest; instances by number
    assert prior.order("apple", room) == ["fridge 1", "countertop 1", "cabinet 2", "cabinet 10", "sinkbasin 1"]
    assert prior.order("pen", room) == ["cabinet 2", "cabinet 10", "fridge 1", "countertop 1", "sinkbasin 1"]
    with pytest.raises(FileNotFoundError, match="initial_state.pddl"):
        train_prior(str(tmp_path), ("pick_and_place_simple",))


def test_prior_search_follows_the_prior_and_finds_the_object_without_knowing_where_it_is(root):
    for split in ("train", "valid_unseen"):
        env = ALFWorldEnv(data_dir=root, split=split, horizon=100, oracle_search="prior")
        assert env.prior is train_prior(str(root), env.task_types)  # always the train games' prior
        for index in range(len(env.games)):
            _, info = env.reset(seed=0, options={"index": index})
            obj_type, _ = goal_types(info["game_id"])
            visited: list[str] = []
            while True:
                command = env.oracle_action()
                search = env.search_action()
                world = World.read(env)
                if world.held is not None:
                    # carrying the goal object: to the target receptacle of the lowest number (which is nearest is
                    # not shown), then the planner (open it, put the object in)
                    _, recep_type = goal_types(info["game_id"])
                    targets = sorted((r for r in world.recep_loc if instance_type(r) == recep_type), key=instance_key)
                    if any(instance_type(r) == recep_type for r in world.here()):
                        assert search is None
                    else:
                        assert search == next(f"go to {r}" for r in targets if f"go to {r}" in info["actions"])
                elif command.startswith("go to ") and not any(instance_type(o) == obj_type for o in world.container if world.container[o] in visited):
                    # every receptacle the prior ranks higher is searched already or cannot be gone to from here
                    order = env.prior.order(obj_type, list(world.recep_loc))
                    for earlier in order[: order.index(command[6:])]:
                        assert earlier in visited or f"go to {earlier}" not in info["actions"], (earlier, command)
                    assert command[6:] not in visited
                elif command.startswith("take "):
                    assert command.split(" from ")[1] in visited  # only an object the agent has seen
                if command.startswith("go to "):
                    visited.append(command[6:])
                _, _, terminated, truncated, info = env.step(command)
                if terminated or truncated:
                    break
            assert info["success"], info["game_id"]  # the search is complete: given the steps, it always finds one
    with pytest.raises(ValueError, match="oracle_search must be one of planner, prior"):
        ALFWorldEnv(data_dir=root, oracle_search="psychic")
    assert ALFWorldEnv(data_dir=root).search_action() is None  # the planner's oracle never searches


def test_cached_template_parses_leave_the_game_text_unchanged(root):
    from textworld import logic
    from textworld.envs.pddl import textgen

    from reflectrl.envs.alfworld.engine import AlfredEngine, cache_template_parses

    engine = AlfredEngine()  # installs the caches
    modules = (textgen, logic)
    cached = [module._parse_and_convert for module in modules]
    assert all(parse.uncached is not None for parse in cached)
    game_file = ALFWorldEnv(data_dir=root, split="train").games[0].game_file

    def play(commands=None):
        engine.load(game_file)
        texts, menus, taken = [engine.reset()], [engine.admissible], []
        rng = np.random.default_rng(0)
        for i in range(10):
            command = commands[i] if commands else menus[-1][rng.integers(len(menus[-1]))]
            taken.append(command)
            texts.append(engine.step(command))
            menus.append(engine.admissible)
        return taken, texts, menus

    with_cache = play()
    for module, parse in zip(modules, cached):
        module._parse_and_convert = parse.uncached
    try:
        without_cache = play(with_cache[0])
    finally:
        for module, parse in zip(modules, cached):
            module._parse_and_convert = parse
    assert with_cache == without_cache
    cache_template_parses()
    assert [module._parse_and_convert for module in modules] == cached  # installed once


def test_true_facts_name_the_hidden_state_and_follow_the_game(root):
    env = ALFWorldEnv(data_dir=root, split="train")
    with pytest.raises(RuntimeError, match="reset"):
        env.true_facts()
    env.reset(seed=0, options={"index": 0})
    facts = env.true_facts()
    goal_object, _ = goal_types(env.game.game_id)
    # Where the goal object lies is in the facts, not in what the player is shown at the start.
    assert any(name == "inreceptacle" and instance_type(args[0]) == goal_object for name, args in facts)
    env.step(env.oracle_action())
    assert env.true_facts() != facts  # read afresh from the engine: the expert's move changed the world
