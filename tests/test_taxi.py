import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import reflectrl  # noqa: F401  (registers the environments)
from reflectrl.envs import make_env
from reflectrl.envs.base import run_policy
from reflectrl.envs.taxi import DANGER_REWARD, GOAL_REWARD, IN_TAXI, DangerousTaxiEnv, _stop


@pytest.mark.parametrize("level", DangerousTaxiEnv.levels)
def test_gymnasium_env_checker_passes(level):
    env = gymnasium.make("reflectrl/DangerousTaxi-v0", level=level)
    check_env(env.unwrapped, skip_render_check=True)


def test_oracle_solves_every_full_episode_and_random_does_not():
    env = make_env("taxi", level="full")
    oracle = [run_policy(env, lambda e, info: e.oracle_action(), seed=s) for s in range(200)]
    rng = np.random.default_rng(0)
    random = [run_policy(env, lambda e, info: int(rng.integers(len(info["actions"]))), seed=s) for s in range(200)]
    oracle_rate = np.mean([r[1] for r in oracle])
    random_rate = np.mean([r[1] for r in random])
    print(f"DangerousTaxi full, 200 seeds: oracle success {oracle_rate:.0%}, random success {random_rate:.1%}")
    assert oracle_rate == 1.0
    assert random_rate <= 0.10
    assert all(steps <= env.horizon for _, _, steps in oracle)


def test_wall_move_crashes_and_ends_the_episode():
    env = make_env("taxi", level="full")
    env.reset(seed=0)
    # row 0 has nothing north of it: find a seed whose taxi starts in row 0
    for seed in range(100):
        env.reset(seed=seed)
        if env.state[0] == 0:
            break
    before = env.state
    _, reward, terminated, truncated, info = env.step("move north")
    assert (reward, terminated, truncated) == (DANGER_REWARD, True, False)
    assert not info["success"] and env.state == before
    assert info["actions"] == []


def test_illegal_pickup_crashes():
    env = make_env("taxi", level="full")
    for seed in range(100):
        env.reset(seed=seed)
        row, col, pas, _ = env.state
        if pas != IN_TAXI and (row, col) != env_stop(pas):
            break
    _, reward, terminated, _, info = env.step("pick up passenger")
    assert reward == DANGER_REWARD and terminated and not info["success"]


def env_stop(index):
    from reflectrl.envs.taxi import _stop

    return _stop(index)


def test_levels_start_states_and_end_conditions():
    pickup = make_env("taxi", level="pickup")
    pickup.reset(seed=1)
    assert pickup.state[2] != IN_TAXI
    rewards = []
    while True:
        _, r, term, trunc, info = pickup.step(pickup.oracle_action())
        rewards.append(r)
        if term or trunc:
            break
    assert info["success"] and pickup.state[2] == IN_TAXI and rewards[-1] == GOAL_REWARD

    dropoff = make_env("taxi", level="dropoff")
    for seed in range(20):
        dropoff.reset(seed=seed)
        assert dropoff.state[2] == IN_TAXI
    total, success, _ = run_policy(dropoff, lambda e, i: e.oracle_action(), seed=5)
    assert success

    full = make_env("taxi", level="full")
    full.reset(seed=2)
    row, col, pas, dest = full.state
    assert pas != IN_TAXI and pas != dest
    seen_pickup = False
    while True:
        _, r, term, trunc, info = full.step(full.oracle_action())
        seen_pickup |= full.state[2] == IN_TAXI
        if term or trunc:
            break
    assert seen_pickup and info["success"] and r == GOAL_REWARD


def test_reward_scale_and_horizon():
    env = make_env("taxi", level="full", reward_scale=0.1, horizon=3)
    env.reset(seed=0)
    _, r, *_ = env.step(env.oracle_action())
    assert r == pytest.approx(-0.1)
    env.step(env.oracle_action())
    _, _, term, trunc, _ = env.step(env.oracle_action())
    assert trunc and not term


def test_inadmissible_actions_have_the_documented_outcome():
    env = make_env("taxi")
    env.reset(seed=3)
    before = env.state
    for bad in (17, -1, "fly", None, 2.5, "move  sideways"):
        obs, reward, terminated, truncated, info = env.step(bad)
        assert info["invalid_action"] and not terminated
        assert reward == env.invalid_action_reward
        assert env.state == before
    assert env.history[-1].endswith("invalid action")


def test_step_accepts_index_or_string_and_is_deterministic_under_a_seed():
    a, b = make_env("taxi"), make_env("taxi")
    obs_a, _ = a.reset(seed=11)
    obs_b, _ = b.reset(seed=11)
    assert obs_a == obs_b
    step_a = a.step(2)
    step_b = b.step("move east")
    assert step_a[:4] == step_b[:4]


def test_grid_shows_markers():
    env = make_env("taxi", level="dropoff")
    env.reset(seed=0)
    assert "#" in env.grid() and "D" in env.grid()
    env = make_env("taxi", level="full")
    env.reset(seed=0)
    grid = env.grid()
    assert "T" in grid and "P" in grid and "D" in grid
    assert "legend" in env.unwrapped._task().lower()


def test_observation_words_match_the_dynamics():
    """The 'blocked' line lists exactly the moves that would crash; the offset line points at the goal."""
    import re

    env = DangerousTaxiEnv(level="full")
    for seed in range(40):
        _, info = env.reset(seed=seed)
        row, col, passenger, destination = env.state
        text = info["observation"]
        blocked = re.search(r"Blocked moves here: (.*)\.", text).group(1)
        crashing = []
        for move in ("south", "north", "east", "west"):
            probe = DangerousTaxiEnv(level="full")
            probe.reset(seed=seed)
            _, _, terminated, _, _ = probe.step(f"move {move}")
            if terminated:
                crashing.append(move)
        assert blocked == (", ".join(crashing) or "none")
        offset = re.search(r"The (passenger|destination) is (.*) of the taxi\.", text)
        if offset is None:
            assert "at the taxi's square" in text
            continue
        words = offset.group(2)
        target_row, target_col = _stop(destination if passenger == IN_TAXI else passenger)
        if target_row != row:
            assert f"{abs(target_row - row)} row" in words and ("south" if target_row > row else "north") in words
        if target_col != col:
            assert f"{abs(target_col - col)} column" in words and ("east" if target_col > col else "west") in words
    # A short history window: only the last two moves are in the prompt's history.
    _, info = env.reset(seed=1)
    for _ in range(4):
        _, _, terminated, _, info = env.step(env.oracle_action())
        if terminated:
            break
    assert len(info["history"]) <= 2


@pytest.mark.parametrize("level", DangerousTaxiEnv.levels)
def test_each_level_lists_exactly_the_start_states_its_resets_draw(level):
    from gymnasium.envs.toy_text.taxi import TaxiEnv

    table = TaxiEnv()
    if level == "dropoff":  # the passenger in the taxi, anywhere, any destination
        expected = {s for s in range(table.observation_space.n) if table.decode(s)[2] == IN_TAXI}
    else:  # gymnasium's own start distribution
        expected = {int(s) for s in np.flatnonzero(table.initial_state_distrib)}
    assert len(expected) == {"dropoff": 25 * 4, "pickup": 25 * 4 * 3, "full": 25 * 4 * 3}[level]
    env = DangerousTaxiEnv(level=level)
    listed = [options["state"] for options in env.start_states()]
    assert len(listed) == len(set(listed)) and set(listed) == expected
    assert env.start_states(level) == DangerousTaxiEnv(level="pickup").start_states(level)
    for options in env.start_states()[::7]:
        env.reset(seed=123, options=options)
        assert env.unwrapped._state == options["state"]
    drawn = set()
    for seed in range(2000):
        env.reset(seed=seed)
        drawn.add(env.unwrapped._state)
    assert drawn <= expected and len(drawn) > 0.9 * len(expected)  # seeds draw from the same set, with repeats
    for bad in (-1, 500, True, "3", next(iter(set(range(500)) - expected))):
        with pytest.raises(ValueError, match="not a start state"):
            env.reset(seed=0, options={"state": bad})


def test_an_evaluation_plays_every_start_state_once_and_reports_no_sampling_interval():
    from reflectrl.evaluation.harness import EvalConfig, evaluate, plan_episodes
    from reflectrl.evaluation.scripted_agents import RandomAgent

    plan = plan_episodes(EvalConfig("taxi", level="dropoff"))  # 100 start states: all of them by default
    assert plan.exact and len(plan.requests) == 100
    assert sorted(r.options["state"] for r in plan.requests) == [o["state"] for o in DangerousTaxiEnv().start_states("dropoff")]
    assert plan.description == "every one of the 100 start states at level dropoff, each played once"
    assert len(plan_episodes(EvalConfig("taxi", level="full", episodes="all")).requests) == 300
    sampled = plan_episodes(EvalConfig("taxi", level="dropoff", episodes=4))  # a number: seeds, as before
    assert not sampled.exact and [r.options for r in sampled.requests] == [None] * 4
    with pytest.raises(ValueError, match="does not list its start states"):
        plan_episodes(EvalConfig("corridor", episodes="all"))
    with pytest.raises(ValueError, match="a number or 'all'"):
        plan_episodes(EvalConfig("taxi", episodes="some"))

    result = evaluate(RandomAgent(seed=1), EvalConfig("taxi", level="dropoff", batch_size=100))
    played = [e.options["state"] for e in result.episodes]
    assert sorted(played) == sorted(r.options["state"] for r in plan.requests)
    summary = result.summary
    assert summary["exact"] and summary["ci_low"] == summary["ci_high"] == summary["success"]
    assert "| exact |" in result.markdown() and "every one of the 100 start states" in result.markdown()
