"""TextWorld (`reflectrl.envs.textworld`): levels, disjoint splits, the oracle, gymnasium's checker, the tiny pipeline.

The games are generated into one temporary cache for the module (2-4 s of CPU a game, and 3 s once to load
TextWorld's knowledge base).
"""

from __future__ import annotations

import importlib.util
import json

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import reflectrl  # noqa: F401  registers the gymnasium ids
from reflectrl.cli.main import app
from reflectrl.envs import lookup, make_env
from reflectrl.envs.base import PAGE_ACTION_PREFIX
from reflectrl.evaluation.harness import EvalConfig, plan_episodes
from reflectrl.protocol import State
from reflectrl.teachers.base import ReflectionRequest
from reflectrl.teachers.explainers import explainer_for
from reflectrl.teachers.oracle import OracleTeacher

if importlib.util.find_spec("textworld") is None or importlib.util.find_spec("jericho") is None:
    pytest.skip("TextWorld is not installed (`bash scripts/install_alfworld.sh` installs it)", allow_module_level=True)

from reflectrl.envs.textworld import CHALLENGES, LEVELS, TextWorldEnv, game_specs  # noqa: E402
from reflectrl.envs.textworld.games import game_file  # noqa: E402

# jericho flags TextWorld's story files as not fully supported; TextWorld keeps the score itself (and silences it
# outside pytest, which resets warning filters)
pytestmark = pytest.mark.filterwarnings("ignore:Game .* is not fully supported")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One games cache for the module, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("reflectrl-cache")
        patch.setenv("REFLECTRL_CACHE", str(folder))
        yield folder


def _play_oracle(env, seed: int, options: dict | None = None, random_steps: int = 0, rng=None) -> tuple[bool, dict]:
    """Play `random_steps` random commands, then the oracle's, until the episode ends; (success, last info)."""
    _, info = env.reset(seed=seed, options=options)
    for step in range(env.horizon):
        action = int(rng.integers(len(info["actions"]))) if step < random_steps else env.oracle_index()
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return bool(info["success"]), info


@pytest.mark.slow  # about 8 s of CPU: TextWorld's knowledge base loaded, two games generated
def test_levels_are_ranges_of_the_challenge_difficulty_and_the_walkthrough_grows_with_them():
    assert TextWorldEnv.levels == LEVELS == ("easy", "medium", "hard")
    assert lookup("textworld").env_class() is TextWorldEnv
    for challenge, levels in CHALLENGES.items():
        assert tuple(levels) == LEVELS
        specs = game_specs(challenge, "hard", "train", 2 * len(levels["hard"]))
        assert [s.difficulty for s in specs] == 2 * list(levels["hard"])  # every difficulty of the level, in turn
        assert max(levels["easy"]) < min(levels["medium"]) and max(levels["medium"]) < min(levels["hard"])
    # coin collector difficulty d <= 100: a chain of d rooms, so the walkthrough is d commands long
    env = make_env("textworld", level="easy", games=2)
    for index, spec in enumerate(env.gym_env.specs):
        _, info = env.reset(seed=0, options={"index": index})
        assert spec.difficulty in CHALLENGES["coin_collector"]["easy"]
        assert len(env.last_info["walkthrough"]) == spec.difficulty
        assert info["difficulty"] == spec.difficulty and info["task_type"] == "coin_collector"
        assert info["game_id"] == spec.game_id
    with pytest.raises(ValueError, match="unknown TextWorld challenge"):
        make_env("textworld", challenge="cooking")


def test_train_validation_and_test_games_are_disjoint_by_seed_and_the_harness_plays_each_test_game():
    seeds = {split: {s.seed for s in game_specs("coin_collector", "easy", split, 500)} for split in ("train", "validation", "test")}
    assert not seeds["train"] & seeds["test"] and not seeds["train"] & seeds["validation"] and not seeds["validation"] & seeds["test"]
    ids = {split: {s.game_id for s in game_specs("treasure_hunter", "medium", split, 50)} for split in ("train", "test")}
    assert not ids["train"] & ids["test"]
    plan = plan_episodes(EvalConfig(env="textworld", split="test", level="easy", env_kwargs={"games": 3}))
    assert plan.env_kwargs["split"] == "test"
    assert [r.options for r in plan.requests] == [{"index": i} for i in range(3)]
    with pytest.raises(ValueError, match="unknown split"):
        plan_episodes(EvalConfig(env="textworld", split="valid_unseen", env_kwargs={"games": 3}))


@pytest.mark.slow  # about 5 s of CPU: one game generated twice
def test_generation_is_deterministic_and_cached(tmp_path):
    spec = game_specs("coin_collector", "easy", "test", 1)[0]
    first, second = game_file(spec, tmp_path / "a"), game_file(spec, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    stamp = first.stat().st_mtime_ns
    assert game_file(spec, tmp_path / "a") == first and first.stat().st_mtime_ns == stamp  # not made again


@pytest.mark.slow  # about 15 s of CPU: eight games generated and played
@pytest.mark.parametrize("challenge, level", [("coin_collector", "easy"), ("coin_collector", "medium"), ("treasure_hunter", "easy"), ("treasure_hunter", "medium")])
def test_oracle_wins_every_game_also_after_random_steps(challenge, level):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        env = make_env("textworld", level=level, challenge=challenge, split=split, games=1, horizon=60, max_actions=8)
        won, info = _play_oracle(env, seed=0, options={"index": 0})
        assert won and info["history"] == env.last_info["walkthrough"], info  # page turns are not in the history
        # the game re-plans after commands off the walkthrough (coin collector has no way to lose)
        won, info = _play_oracle(env, seed=1, options={"index": 0}, random_steps=4, rng=rng)
        assert won or (challenge == "treasure_hunter" and env.last_info["lost"]), info


def test_wrapped_environment_passes_gymnasium_checks_and_follows_the_textenv_rules():
    env = gymnasium.make("reflectrl/TextWorld-v0", level="easy", games=2, split="test")
    check_env(env.unwrapped, skip_render_check=True)
    env = make_env("textworld", level="easy", games=2, max_actions=2)
    obs, info = env.reset(seed=3)
    assert info["task"] == env.last_info["objective"] and info["task"] in obs
    assert "You are carrying" in info["observation"] and "TextWorld" not in info["observation"]  # no banner
    assert len(info["actions"]) == 2 and info["actions"][-1].startswith(PAGE_ACTION_PREFIX)
    _, reward, terminated, _, after = env.step("no such command")
    assert after["invalid_action"] and reward == pytest.approx(-0.1) and not terminated
    assert after["observation"].startswith("Invalid action")


def test_reasoned_reflection_names_the_room_judges_the_last_command_and_ends_with_the_next():
    env = make_env("textworld", level="easy", games=1)
    _, info = env.reset(seed=0, options={"index": 0})
    explainer = explainer_for("textworld")
    first = env.oracle_action()
    wasted = explainer.assess(env, "look")
    assert wasted.mistake and wasted.better == first
    _, _, _, _, info = env.step("look")
    request = ReflectionRequest("textworld", State.from_info(info), env.oracle_action(), wasted, explainer.facts(env))
    reflection = OracleTeacher(style="reasoned").reflect([request])[0]
    room = env.last_info["room"]
    assert reflection.startswith(f"I am in the {room}.") and f"-= {room} =-" in info["observation"]
    assert "Last command (look) changed nothing." in reflection
    assert reflection.endswith(f"Next: {first}.")
    json.dumps(request.facts)  # part of the teacher's cache key
    for style in ("full", "concise", "grounded"):
        assert first in OracleTeacher(style=style).reflect([request])[0]


@pytest.mark.slow  # about 65 s of CPU: every stage of the pipeline with the tiny model, four games generated
def test_tiny_pipeline_runs_on_textworld_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["pipeline", "textworld", "--preset", "tiny", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "reflectrl pipeline textworld --preset tiny" in (out / "report.md").read_text()
    oracle = json.loads((out / "eval-oracle" / "easy" / "eval.json").read_text())
    assert oracle["split"] == "test" and oracle["summary"]["success"] == 1.0
    # the tiny preset's four episodes cycle over its two test games
    assert [e["options"] for e in oracle["episodes"]] == [{"index": k % 2} for k in range(4)]
    trained = json.loads((out / "eval-rl-reflect" / "easy" / "eval.json").read_text())
    assert trained["summary"]["episodes"] == 4
