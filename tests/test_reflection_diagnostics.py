"""Reflection diagnostics: the advice parser, the judge, the live teacher (ceiling) and sampled RL reflections."""

import json

import gymnasium
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from safetensors.torch import load_file

from reflectrl.envs import make_env
from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
from reflectrl.evaluation.harness import EvalConfig, evaluate
from reflectrl.evaluation.reflection_diagnostics import diagnostics_table, recommended_action, reflection_diagnostics
from reflectrl.protocol import State
from reflectrl.teachers.base import ReflectionRequest
from reflectrl.teachers.explainers import explainer_for, oracle_menu_choice
from reflectrl.teachers.oracle import OracleTeacher

pytestmark = pytest.mark.usefixtures("one_thread")

TAXI_MENU = ["move south", "move north", "move east", "move west", "pick up passenger", "drop off passenger"]


def test_the_advice_is_the_entry_after_the_last_next_cue_and_the_longest_entry_wins():
    assert recommended_action("Next: move north. Last move (south) was good.", TAXI_MENU) == "move north"
    assert recommended_action("Taxi at row 1. Last move (west) was good. Next: move west.", TAXI_MENU) == "move west"
    assert recommended_action("Next: move east. Next: drop off passenger.", TAXI_MENU) == "drop off passenger"
    menu = ["go to shelf 1", "go to shelf 10", "look"]
    assert recommended_action("No mug seen yet. Next: go to shelf 10.", menu) == "go to shelf 10"
    # An entry that is not on the menu is no advice; neither is a cut reflection.
    assert recommended_action("Next: fly away.", TAXI_MENU) is None
    assert recommended_action("Taxi at row 1, column", TAXI_MENU) is None
    assert recommended_action("", TAXI_MENU) is None and recommended_action(None, TAXI_MENU) is None
    # Without the cue: the entry mentioned last.
    assert recommended_action("Do not move south; the taxi should move east.", TAXI_MENU) == "move east"


def _step(recommended, ok, chosen_ok, played):
    return {"action": played, "judged": {"oracle": "move south", "recommended": recommended, "recommended_ok": ok, "chosen_ok": chosen_ok}}


def test_diagnostics_count_accuracy_obedience_and_outcomes_by_whether_the_reflection_was_right():
    episodes = [
        {"success": True, "trajectory": [_step("move south", True, True, "move south"), _step("move east", True, True, "move east")]},
        {"success": False, "trajectory": [_step("move north", False, False, "move north"), _step(None, False, True, "move south")]},
        {"success": False, "trajectory": [{"action": "move south", "judged": None}]},  # not judged: left out
    ]
    d = reflection_diagnostics(episodes)
    assert d["steps"] == 4 and d["reflector_accuracy"] == 0.5 and d["names_an_action"] == 0.75
    assert d["follow_rate"] == 1.0  # every named entry was played
    assert d["step_accuracy_when_right"] == 1.0 and d["step_accuracy_when_wrong"] == 0.5
    assert (d["episodes_all_right"], d["success_all_right"], d["episodes_some_wrong"], d["success_some_wrong"]) == (1, 1.0, 1, 0.0)
    table = diagnostics_table([("Reflect-RL", d), ("plain", None)])
    assert "| Reflect-RL | 4 | 50.0% (2/4) | 100.0% |" in table and "plain" not in table
    assert reflection_diagnostics([{"success": True, "trajectory": [{"action": "x"}]}]) is None


def test_the_live_teacher_is_always_right_and_its_diagnostics_reach_the_evaluation_files(tmp_path):
    spec = AgentSpec(kind="reflect", policy="tiny-random", reflector="teacher:oracle:concise", env="taxi", reflection_tokens=4)
    loaded = load_agent(spec)
    config = EvalConfig(env="taxi", episodes=6, level="dropoff", horizon=6, batch_size=3)
    result = evaluate(loaded.agent, config, max_actions=loaded.max_actions)
    loaded.close()
    d = result.diagnostics
    # The teacher recommends an optimal move in every state; the random policy follows it or not.
    assert d is not None and d["steps"] == sum(e.length for e in result.episodes)
    assert d["reflector_accuracy"] == 1.0 and d["names_an_action"] == 1.0
    # After a judged wrong step the next teacher reflection says so: the live teacher tracked the last move.
    for episode in result.episodes:
        for before, after in zip(episode.steps, episode.steps[1:]):
            assert ("a mistake" in after.reflection) == (not before.judged["chosen_ok"])
    folder = result.write(tmp_path)
    saved = json.loads((folder / "eval.json").read_text())
    assert saved["reflection_diagnostics"]["reflector_accuracy"] == 1.0
    first = json.loads((folder / "episodes.jsonl").read_text().splitlines()[0])
    assert first["trajectory"][0]["judged"]["oracle"] in TAXI_MENU
    assert "reflection right" in (folder / "eval.md").read_text()


def test_a_plain_agent_is_judged_without_reflection_diagnostics():
    loaded = load_agent(AgentSpec(kind="plain", policy="tiny-random"))
    result = evaluate(loaded.agent, EvalConfig(env="taxi", episodes=2, level="dropoff", horizon=3), max_actions=loaded.max_actions)
    assert result.diagnostics is None
    assert all(step.judged is not None and "recommended" not in step.judged for e in result.episodes for step in e.steps)


def test_a_teacher_reflector_needs_the_environment_name():
    with pytest.raises(ValueError, match="reads the environment"):
        load_agent(AgentSpec(kind="reflect", policy="tiny-random", reflector="teacher:oracle:concise"))


def test_the_map_observation_is_the_grid_alone_and_passes_the_env_checker():
    described = make_env("taxi", level="dropoff")
    mapped = make_env("taxi", level="dropoff", observation="map")
    obs_d, _ = described.reset(seed=4)
    obs_m, info = mapped.reset(seed=4)
    assert info["observation"] == mapped.grid() == described.grid()
    assert "Blocked moves" in obs_d and "Blocked moves" not in obs_m and "row" not in info["observation"]
    with pytest.raises(ValueError, match="unknown taxi observation"):
        make_env("taxi", observation="coordinates")
    check_env(gymnasium.make("reflectrl/DangerousTaxi-v0", level="dropoff", observation="map").unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_name", ["taxi", "autoexplore"])
def test_reasoned_reflections_end_with_the_oracle_s_entry_after_the_verdict(env_name):
    env = make_env(env_name, **({"level": "dropoff", "observation": "map"} if env_name == "taxi" else {}))
    explainer = explainer_for(env_name)
    teacher = OracleTeacher(style="reasoned")
    _, info = env.reset(seed=2)
    last = None
    for step in range(3):
        best = oracle_menu_choice(env)
        text = teacher.reflect([ReflectionRequest(env_name, State.from_info(info), best, last, explainer.facts(env))])[0]
        assert text.endswith(f"Next: {best}.") and recommended_action(text, info["actions"]) == best
        if last is not None:
            assert text.index("Last") < text.index("Next:")  # the verdict comes before the advice
        # a detour at the second step, so the third reflection judges a mistake
        action = best if step != 1 else next(a for a in info["actions"] if explainer.assess(env, a).mistake and not explainer.assess(env, a).details.get("crash"))
        last = explainer.assess(env, action)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    if env_name == "taxi":
        assert text.startswith("Last move") and "Taxi at row" in text and "was a mistake" in text


def test_sampled_rl_reflections_resume_like_a_straight_run_and_use_no_cache(tmp_path):
    from reflectrl.trainers.online import TIME_PREFIX, RLConfig
    from reflectrl.trainers.recipe import build_rl_run

    config = RLConfig(
        env="corridor", levels=("short",), algo="pg", episodes_per_iter=4, iterations=3, eval_every=0, checkpoint_every=1,
        reflection_temperature=1.0, seed=3,
    )

    def run(folder, until=None):
        built = build_rl_run(config, "tiny-random", "tiny-random", run_dir=folder, reflection_tokens=4, shuffle_labels=False)
        built.trainer.resume()
        built.trainer.train(until)
        built.trainer.save_final(folder / "final")
        return built

    straight = run(tmp_path / "straight")
    assert straight.players.reflection_cache is None
    run(tmp_path / "resumed", until=1)
    run(tmp_path / "resumed")
    a = load_file(str(tmp_path / "straight" / "final" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def metrics(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith(TIME_PREFIX)} for line in lines]

    assert metrics(tmp_path / "straight") == metrics(tmp_path / "resumed")


def test_sampled_reflections_refuse_a_cache():
    from reflectrl.players.load import load_rl_players

    with pytest.raises(ValueError, match="greedy"):
        load_rl_players("tiny-random", "tiny-random", cache_reflections=True, reflector_temperature=1.0)
