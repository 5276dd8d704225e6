"""The oracle's ALFWorld explainer on a generated mini data set: facts, assessment, both reflection styles."""

import pytest
from alfworld_games import mini_data_set
from teacher_requests import requests_along_episodes

from reflectrl.envs.alfworld import ALFWorldEnv
from reflectrl.envs.alfworld.tasks import goal_types
from reflectrl.teachers import ReflectionRequest, explainer_for, make_teacher

EXPLAINER = explainer_for("alfworld")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_data_set(tmp_path_factory)


def alfworld_requests(env: ALFWorldEnv) -> list[ReflectionRequest]:
    """One request per state of every game, the oracle's command taken except for random detours."""
    resets = [{"seed": i, "options": {"index": i}} for i in range(len(env.games))]
    return requests_along_episodes("alfworld", env, resets, detour_prob=0.3)


def test_alfworld_is_explained_by_its_own_explainer():
    assert EXPLAINER.concise is not None and EXPLAINER is not explainer_for("no-such-env")
    assert goal_types("pick_and_place_simple-ButterKnife-None-CounterTop-25/trial_1") == ("butterknife", "countertop")


def test_concise_reflection_names_the_oracle_command_on_every_step(root, smollm2_tokenizer):
    env = ALFWorldEnv(data_dir=root, split="train", horizon=12, max_actions=62)
    requests = alfworld_requests(env)
    assert any(r.last is not None and r.last.mistake for r in requests)
    concise = make_teacher("oracle:concise").reflect(requests)
    full = make_teacher("oracle").reflect(requests)
    for request, text, long in zip(requests, concise, full):
        assert text.startswith(f"Next: {request.best_action}. "), text
        assert ("mistake" in text) == bool(request.last is not None and request.last.mistake), text
        assert request.best_action in long, long
        assert "hint" not in long.lower() and "oracle" not in long.lower()
    lengths = [len(smollm2_tokenizer.encode(t)) for t in concise]
    assert max(lengths) <= 40 and sum(lengths) < 0.6 * sum(len(smollm2_tokenizer.encode(t)) for t in full)
    assert len(set(full)) > len(set(concise)) * 0.9  # the full style varies its wording


def test_grounded_reflection_states_the_fact_first_then_the_concise_command(root, smollm2_tokenizer):
    env = ALFWorldEnv(data_dir=root, split="train", horizon=30, max_actions=62, oracle_search="prior")
    requests = alfworld_requests(env)
    grounded = make_teacher("oracle:grounded").reflect(requests)
    concise = make_teacher("oracle:concise").reflect(requests)
    assert make_teacher("oracle:grounded").name not in (make_teacher("oracle:concise").name, make_teacher("oracle").name)
    kinds = set()
    for request, text, short in zip(requests, grounded, concise):
        fact, command, verdict = short.removeprefix(f"Next: {request.best_action}. "), f"Next: {request.best_action}.", ""
        if "Last step:" in fact:
            fact, verdict = fact.split(" Last step:")
            verdict = " Last step:" + verdict
        verb, _, rest = request.best_action.partition(" ")
        if verb == "move" and rest.split(" to ")[-1].split(" ")[0] == request.facts["receptacle"]:
            # the target is named as here before the task's words: standing at it is what makes "move" right
            assert text == f"{rest.split(' to ')[-1]} is here. {fact} {command}{verdict}", text
            kinds.add("move")
        else:
            assert text == f"{fact} {command}{verdict}", (text, short)
            kinds.add("take" if verb == "take" else "other")
    assert kinds == {"move", "take", "other"}
    assert max(len(smollm2_tokenizer.encode(t)) for t in grounded) <= 48


def test_facts_know_what_the_agent_cannot_see(root):
    env = ALFWorldEnv(data_dir=root, split="train", max_actions=62)
    for i in range(len(env.games)):
        _, info = env.reset(seed=0, options={"index": i})
        facts = EXPLAINER.facts(env)
        obj, recep = goal_types(info["game_id"])
        assert facts["object"] == obj and facts["receptacle"] == recep and facts["holding"] is None
        assert facts["places"] and facts["targets"] and facts["command"] == env.oracle_action()
        shown = "\n".join([info["task"], info["observation"], *info["history"]])
        assert "loc " not in shown
        for name in facts["places"]:  # the overview lists receptacles only: where the object is stays hidden
            assert name not in shown, (name, shown)
        assert not any(key in info for key in ("places", "facts", "command"))


def test_assess_follows_the_plan_and_flags_wasted_steps(root):
    env = ALFWorldEnv(data_dir=root, split="train", max_actions=62)
    for i in range(len(env.games)):
        _, info = env.reset(seed=0, options={"index": i})
        command = env.oracle_action()
        assert not EXPLAINER.assess(env, command).mistake
        for wasted in ("look", "inventory", "help"):
            verdict = EXPLAINER.assess(env, wasted)
            assert verdict.mistake and verdict.better == command and verdict.details["extra_steps"] == 1
        # a step to a receptacle at the same spot as the planner's target reaches the same place
        facts = EXPLAINER.facts(env)
        for other in facts["spot"]:
            assert not EXPLAINER.assess(env, f"go to {other}").mistake


def _plan_length(env: ALFWorldEnv) -> int:
    return len(env._game.plan())


def test_negatives_are_off_the_planners_shortest_plan(root, tmp_path, smollm2_tokenizer):
    from reflectrl.datagen import GenConfig, generate, load_rows, validate_dataset
    from reflectrl.datagen.episodes import replay

    config = GenConfig(
        env="alfworld", out=str(tmp_path / "data"), episodes=3, negatives=2, teacher="oracle:concise", horizon=12,
        env_kwargs={"data_dir": str(root)},
    )
    result = generate(config, tokenizer=smollm2_tokenizer, show_progress=False)
    validate_dataset(result.out, smollm2_tokenizer)
    rows = [r for r in load_rows(result.out / "reflector.jsonl") if r["negative"]]
    assert rows
    env = ALFWorldEnv(data_dir=root, split="train", horizon=12, max_actions=62)
    for row in rows:
        assert row["completion"].startswith(f" Next: {row['oracle_action']}. ") and "mistake" in row["completion"]
        replay(env, row["seed"], row["taken"][:-1])
        before = _plan_length(env)
        replay(env, row["seed"], row["taken"])
        assert _plan_length(env) + 1 > before, row["taken"]  # the step did not shorten the way to the goal


def test_a_prior_search_is_explained_from_what_the_player_knows(root):
    env = ALFWorldEnv(data_dir=root, split="train", horizon=30, max_actions=62, oracle_search="prior")
    requests = alfworld_requests(env)
    searching = [r for r in requests if r.facts["searching"]]
    assert searching and any(not r.facts["searching"] for r in requests)
    concise = make_teacher("oracle:concise").reflect(searching)
    for request, text in zip(searching, concise):
        place = request.facts["command"].split(" ", 2)[-1]
        assert text.startswith(f"Next: {request.best_action}. "), text
        # never where the object is: its usual places and what is not searched yet
        assert "not searched yet" in text or "may be inside" in text, text
        assert not any(f"{o} is in" in text for o in request.facts["places"]), text
        assert place in text
    # the errand gives the task's own words, so the target type is read from the task line
    errand = [r for r in requests if not r.facts["searching"] and r.facts["holding"] and r.facts["command"].startswith(("go to ", "move "))]
    assert errand
    for request, text in zip(errand, make_teacher("oracle:concise").reflect(errand)):
        assert f"The task is to {request.state.task.rstrip('.')}." in text, text
    # following the search is never a mistake, a step off it always is
    env.reset(seed=0, options={"index": 0})
    command = env.search_action()
    assert command is not None and not EXPLAINER.assess(env, command).mistake
    verdict = EXPLAINER.assess(env, "look")
    assert verdict.mistake and verdict.better == command
