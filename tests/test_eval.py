"""The evaluation harness and `reflectrl eval`: splits, metrics, groups, files, annotated episodes, CLI errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.datagen.config import SPLIT_SEED_OFFSETS, GenConfig
from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
from reflectrl.evaluation.harness import EvalConfig, annotate, evaluate, plan_episodes
from reflectrl.evaluation.scripted_agents import OracleAgent, RandomAgent
from reflectrl.evaluation.stats import wilson_interval
from reflectrl.rollout.episode import Episode
from reflectrl.trainers.online import TRAIN_SEED_END, VALIDATION_SEED_START

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_taxi_test_seeds_are_disjoint_from_every_training_and_validation_seed():
    plan = plan_episodes(EvalConfig("taxi", split="test", episodes=100, level="dropoff"))
    seeds = [r.seed for r in plan.requests]
    assert seeds == list(range(SPLIT_SEED_OFFSETS["test"], SPLIT_SEED_OFFSETS["test"] + 100))
    # online RL trains on [0, TRAIN_SEED_END) and validates from VALIDATION_SEED_START on (eval_episodes << 1e6)
    assert TRAIN_SEED_END <= VALIDATION_SEED_START < min(seeds)
    # gen-data: seed + split offset + episode, with fewer than a million episodes per split
    train_data = GenConfig(env="taxi", out="unused", episodes=999_999)
    assert train_data.seed_of(train_data.episodes - 1) < min(seeds)
    assert "2000000..2000099" in plan.description
    assert plan_episodes(EvalConfig("corridor")).requests[0].seed == SPLIT_SEED_OFFSETS["test"]
    assert len(plan_episodes(EvalConfig("corridor")).requests) == 50


def test_task_splits_play_every_task_or_spread_or_cycle():
    everything = plan_episodes(EvalConfig("autoexplore", split="test", level="depth1"))
    count = len(everything.requests)
    assert count > 10 and everything.env_kwargs["split"] == "test"
    assert sorted(r.options["index"] for r in everything.requests) == list(range(count))
    spread = [r.options["index"] for r in plan_episodes(EvalConfig("autoexplore", episodes=4, level="depth1")).requests]
    assert len(set(spread)) == 4 and spread[0] == 0 and spread[-1] >= count // 2
    cycled = plan_episodes(EvalConfig("autoexplore", episodes=count + 3, level="depth1")).requests
    assert [r.options["index"] for r in cycled[count:]] == [0, 1, 2]
    assert len({r.seed for r in cycled}) == count + 3


@pytest.mark.parametrize(
    "config, message",
    [
        (EvalConfig("taxi", split="valid_unseen"), "unknown split"),
        (EvalConfig("autoexplore", split="validation"), "unknown split"),
        (EvalConfig("taxi", level="nowhere"), "unknown level"),
        (EvalConfig("taxi", episodes=0), "episodes"),
        (EvalConfig("autoexplore", env_kwargs={"split": "train"}), "own options"),
    ],
)
def test_bad_evaluation_settings_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        plan_episodes(config)


def test_oracle_and_random_give_the_bounds_with_wilson_intervals(tmp_path):
    config = EvalConfig("taxi", episodes=30, level="dropoff", batch_size=7)
    oracle = evaluate(OracleAgent(), config, description="oracle")
    assert oracle.summary["success"] == 1.0 and oracle.summary["episodes"] == 30
    assert (oracle.summary["ci_low"], oracle.summary["ci_high"]) == pytest.approx(wilson_interval(30, 30))
    assert oracle.summary["invalid_rate"] == 0.0 and "groups" not in oracle.summary
    random = evaluate(RandomAgent(), config, description="random")
    assert random.summary["success"] < 0.3 and random.summary["mean_steps"] < oracle.summary["mean_steps"]
    again = evaluate(RandomAgent(seed=5), config)
    assert [e.to_dict() for e in again.episodes] == [e.to_dict() for e in random.episodes]  # reseeded per evaluation

    folder = random.write(tmp_path / "random")
    data = json.loads((folder / "eval.json").read_text())
    assert data["summary"]["episodes"] == 30 and len(data["episodes"]) == 30
    assert data["episodes"][0]["seed"] == SPLIT_SEED_OFFSETS["test"]
    lines = (folder / "episodes.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["trajectory"][0]["action"] in ("move south", "move north", "move east", "move west", "pick up passenger", "drop off passenger")
    assert "Task:" not in first["trajectory"][0]["observation"] and first["task"].startswith("The passenger is in the taxi")
    assert "| random |" in (folder / "eval.md").read_text()


def test_task_environment_groups_by_depth_and_kind():
    result = evaluate(OracleAgent(), EvalConfig("autoexplore", split="test", episodes=6, level="all", batch_size=6))
    assert result.summary["success"] == 1.0
    groups = result.summary["groups"]
    assert any(k.startswith("depth=") for k in groups) and any(k.startswith("kind=") for k in groups)
    assert sum(g["episodes"] for k, g in groups.items() if k.startswith("depth=")) == 6
    assert all("task_id" in e.tags for e in result.episodes)
    assert {e.options["index"] for e in result.episodes} == {r.options["index"] for r in plan_episodes(result.config).requests}


def test_a_reflective_model_agent_is_evaluated_reproducibly_and_annotated():
    spec = AgentSpec("reflect", policy="tiny-random", reflector="tiny-random", reflection_tokens=3, device="cpu")
    loaded = load_agent(spec)
    config = EvalConfig("corridor", episodes=3, level="short", batch_size=3)
    first = evaluate(loaded.agent, config, max_actions=loaded.max_actions, description=loaded.description)
    second = evaluate(loaded.agent, config, max_actions=loaded.max_actions)
    assert [e.to_dict() for e in first.episodes] == [e.to_dict() for e in second.episodes]
    steps = [s for e in first.episodes for s in e.steps]
    assert all(s.reflection is not None and s.action_text is not None for s in steps)
    assert first.timings["reflect"] > 0 and first.timings["decide"] > 0
    text = annotate(first.episodes, 2)
    assert text.count("=== seed") == 2 and "reflection:" in text and "action:" in text
    assert "Walk to the exit" in text


def test_a_prompted_model_that_answers_nonsense_counts_invalid_actions():
    loaded = load_agent(AgentSpec("prompted", model="tiny-random", answer_tokens=2, device="cpu"))
    result = evaluate(loaded.agent, EvalConfig("corridor", episodes=2, level="short", horizon=3), max_actions=loaded.max_actions)
    # the seeded tiny random model answers with word pieces, never a label: every step is invalid
    assert result.summary["invalid_rate"] == 1.0 and result.summary["mean_steps"] == 3.0
    assert all(s.answer and s.action_text is None for e in result.episodes for s in e.steps)
    assert result.summary["mean_return"] == pytest.approx(3 * -1.0)  # the corridor's invalid-action reward
    assert "action: invalid (answer" in annotate(result.episodes, 2)


def test_episode_tags_options_and_task_round_trip():
    episode = evaluate(OracleAgent(), EvalConfig("autoexplore", episodes=1, level="depth1")).episodes[0]
    copy = Episode.from_dict(json.loads(json.dumps(episode.to_dict())))
    assert copy.to_dict() == episode.to_dict() and copy.tags["depth"] == 1 and copy.options == {"index": 0}


def test_agent_specs_say_what_is_missing():
    for spec, message in [
        (AgentSpec("wizard"), "unknown agent"),
        (AgentSpec("prompted"), "needs --model"),
        (AgentSpec("plain"), "needs --policy"),
        (AgentSpec("reflect", policy="tiny-random"), "needs --reflector"),
        (AgentSpec("plain", policy="tiny-random", reflector="x"), "without a reflector"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_agent(spec)


def test_eval_cli_writes_results_and_shows_episodes(tmp_path):
    out = tmp_path / "oracle"
    result = runner.invoke(app, ["eval", "taxi", "--agent", "oracle", "--episodes", "5", "--level", "dropoff", "--out", str(out), "--show", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "100.0%" in result.output and "=== seed" in result.output and "action:" in result.output
    assert json.loads((out / "eval.json").read_text())["summary"]["successes"] == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "nowhere", "--agent", "oracle"], "unknown environment"),
        (["eval", "taxi", "--agent", "wizard"], "unknown agent"),
        (["eval", "taxi", "--agent", "reflect", "--policy", "tiny-random"], "needs --reflector"),
        (["eval", "taxi", "--agent", "oracle", "--split", "dev"], "unknown split"),
        (["eval", "taxi", "--agent", "plain", "--policy", "no/such/model-folder"], "no/such/model-folder"),
        (["eval", "taxi", "--agent", "oracle", "--env-option", "oops"], "KEY=VALUE"),
    ],
)
def test_eval_cli_errors_are_clear_and_without_traceback(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_eval_cli_refuses_an_out_path_that_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = runner.invoke(app, ["eval", "taxi", "--agent", "oracle", "--episodes", "1", "--out", str(target)])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_reflection_cache_reuses_greedy_reflections_across_evaluations(tmp_path):
    from reflectrl.models import load_model
    from reflectrl.players import LocalReflector
    from reflectrl.players.reflection_cache import CachedReflector

    model, tokenizer = load_model("tiny-random", device="cpu")
    reflector = LocalReflector(model, tokenizer, reflection_tokens=3)
    prompts = ["Task: a\nReflection:", "Task: b\nReflection:", "Task: a\nReflection:"]
    cached = CachedReflector(reflector, tmp_path / "cache.jsonl")
    first = cached.reflect(prompts)
    assert first == reflector.reflect(prompts) and first[0] == first[2]
    assert (cached.misses, cached.hits) == (2, 1)
    reopened = CachedReflector(reflector, tmp_path / "cache.jsonl")
    assert reopened.reflect(prompts[:2]) == first[:2] and (reopened.misses, reopened.hits) == (0, 2)
    assert reopened.count_tokens("Task: a") == reflector.count_tokens("Task: a")
    with pytest.raises(ValueError, match="sampling"):
        CachedReflector(LocalReflector(model, tokenizer, reflection_tokens=3, temperature=1.0))


def _played_states(agent) -> list[int]:
    """Counts the states `agent` is asked to act on (one entry per call)."""
    calls, act = [], agent.act

    def counted(states, **kwargs):
        calls.append(len(states))
        return act(states, **kwargs)

    agent.act = counted
    return calls


def _files(result, folder) -> tuple[dict, bytes, bytes]:
    result.write(folder)
    data = json.loads((folder / "eval.json").read_text())
    del data["seconds"], data["timings"]  # the time it took: the only thing meant to change
    return data, (folder / "eval.md").read_bytes(), (folder / "episodes.jsonl").read_bytes()


@pytest.mark.parametrize("env, level, episodes, kind", [
    ("corridor", "short", 5, "reflect"), ("taxi", "dropoff", 24, "plain"), ("taxi", "dropoff", 24, "oracle"),
])
def test_a_deterministic_agent_plays_each_start_state_once_with_the_same_files(tmp_path, env, level, episodes, kind):
    from reflectrl.models import load_model
    from reflectrl.players import LabelPolicy, LocalReflector, PlainAgent, ReflectiveAgent

    def make_agent():
        if kind == "oracle":
            return OracleAgent()
        model, tokenizer = load_model("tiny-random", device="cpu")
        policy = LabelPolicy(model, tokenizer)
        if kind == "plain":
            return PlainAgent(policy, shuffle_labels=False)
        return ReflectiveAgent(LocalReflector(model, tokenizer, reflection_tokens=3), policy, shuffle_labels=False)

    config = EvalConfig(env, episodes=episodes, level=level, batch_size=4)
    files, played = {}, {}
    for repeats in (True, False):
        agent = make_agent()
        played[repeats] = _played_states(agent)
        result = evaluate(agent, config, max_actions=6, description=kind, play_repeats=repeats)
        files[repeats] = _files(result, tmp_path / str(repeats))
    assert files[False] == files[True]
    assert sum(played[False]) < sum(played[True])


def test_agents_whose_play_is_not_a_function_of_the_state_play_every_episode():
    from reflectrl.models import load_model
    from reflectrl.players import LabelPolicy, LocalReflector, PlainAgent, ReflectiveAgent

    model, tokenizer = load_model("tiny-random", device="cpu")
    policy = LabelPolicy(model, tokenizer)
    agents = [
        RandomAgent(),
        PlainAgent(policy, shuffle_labels=True),
        ReflectiveAgent(LocalReflector(model, tokenizer, reflection_tokens=2, temperature=1.0), policy, shuffle_labels=False),
    ]
    config = EvalConfig("corridor", episodes=3, level="short", horizon=2, batch_size=3)
    for agent in agents:
        assert not agent.deterministic
        calls = _played_states(agent)
        evaluate(agent, config, max_actions=6)
        assert calls[0] == 3  # all three episodes start together, although the corridor has one start state
