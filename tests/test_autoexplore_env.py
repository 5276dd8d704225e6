"""AutoExplore environment: interface, oracle and random baselines, paging, leave-out, rewards."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import reflectrl  # noqa: F401  (registers the environments)
from reflectrl.envs import make_env
from reflectrl.envs.autoexplore.benchmark import builtin_benchmark_dir, builtin_tasks_path
from reflectrl.envs.autoexplore.env import (
    ERROR_REWARD,
    STEP_REWARD,
    SUCCESS_REWARD,
    WRONG_ID_REWARD,
    AutoExploreEnv,
)
from reflectrl.envs.autoexplore.taskset import Task, TaskSetError
from reflectrl.envs.autoexplore.views import best_line, question_window
from reflectrl.envs.base import PAGE_ACTION_PREFIX, run_policy
from reflectrl.protocol import LabelSet, Menu, State, policy_prompt


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A reflectrl cache holding the built-in benchmark (generated once for this module)."""
    root = tmp_path_factory.mktemp("cache")
    builtin_benchmark_dir(cache_dir=root / "autoexplore")
    return root


@pytest.fixture
def builtin(cache, monkeypatch):
    monkeypatch.setenv("REFLECTRL_CACHE", str(cache))
    return builtin_tasks_path()


def play_oracle(env, **reset):
    _, info = env.reset(**reset)
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(env.oracle_index())
        total += reward
        steps += 1
        if terminated or truncated:
            return info["success"], total, steps


@pytest.mark.parametrize("level", AutoExploreEnv.levels)
def test_gymnasium_env_checker_passes(builtin, level):
    env = gymnasium.make("reflectrl/AutoExplore-v0", level=level, split="test")
    check_env(env.unwrapped, skip_render_check=True)


def test_default_construction_uses_the_builtin_benchmark(builtin):
    env = make_env("autoexplore")
    _, info = env.reset(seed=3)
    assert info["task_id"] in {t.id for t in env.all_tasks}
    assert {"depth", "task_id", "kind", "repository"} <= set(info)
    assert info["kind"] in ("code", "text", "data") and info["depth"] in range(4)


def test_oracle_solves_every_builtin_test_task_and_random_does_not(builtin):
    env = make_env("autoexplore", split="test")
    results = [play_oracle(env, options={"index": i}) for i in range(env.num_tasks)]
    assert env.num_tasks >= 40
    assert all(success for success, _, _ in results)
    assert all(steps <= 5 for _, _, steps in results)  # depth <= 3: cd x3, cat, id
    rng = np.random.default_rng(0)
    rates = {}
    for level in AutoExploreEnv.levels:
        env = make_env("autoexplore", split="test", level=level)
        runs = [run_policy(env, lambda e, info: int(rng.integers(len(info["actions"]))), seed=s) for s in range(100)]
        rates[level] = np.mean([success for _, success, _ in runs])
    print(f"AutoExplore built-in test split: oracle 100% of {len(results)}, random success by level {rates}")
    assert rates["all"] <= 0.15 and max(rates.values()) <= 0.15


def test_oracle_path_matches_the_task_commands(builtin):
    env = make_env("autoexplore", split="train")
    for index in range(0, env.num_tasks, 37):
        env.reset(options={"index": index})
        path, over = [], False
        while not over:
            action = env.oracle_action()
            path.append(action)
            _, _, terminated, truncated, _ = env.step(action)
            over = terminated or truncated
        assert tuple(path) == env.task.commands


def test_construction_keywords_fix_the_task(builtin):
    test = make_env("autoexplore", split="test", index=5)
    ids = {test.reset(seed=s)[1]["task_id"] for s in range(5)}
    assert len(ids) == 1
    task_id = ids.pop()
    by_id = make_env("autoexplore", task_id=task_id, horizon=7, view_chars=50, leaveout_prob=0.5, max_actions=10)
    _, info = by_id.reset(seed=1)
    assert info["task_id"] == task_id and by_id.horizon == 7 and len(info["actions"]) <= 10
    deep = make_env("autoexplore", split="test", level="depth3")
    assert all(deep.reset(seed=s)[1]["depth"] == 3 for s in range(10))


def test_bad_task_choices_raise_clear_value_errors(builtin):
    with pytest.raises(TaskSetError, match="no task with id 'nope'"):
        make_env("autoexplore", task_id="nope")
    with pytest.raises(TaskSetError, match="out of range"):
        make_env("autoexplore", split="test", index=10**6)
    with pytest.raises(TaskSetError, match="unknown split"):
        make_env("autoexplore", split="validation")
    with pytest.raises(TaskSetError, match="does not exist"):
        make_env("autoexplore", tasks="/nonexistent/tasks.jsonl")
    assert issubclass(TaskSetError, ValueError)


def tree_task(root, target, question="Where is it?"):
    return Task(id="t", question=question, kind="code", repository=root.name, root=str(root), targets=(target,), depth=target.count("/"))


@pytest.fixture
def big_folder(tmp_path):
    """A folder of 200 files and 30 sub-folders; the target sits deep in the alphabet."""
    root = tmp_path / "bigrepo"
    root.mkdir()
    for i in range(200):
        (root / f"module_{i:03d}.py").write_text(f'"""Module {i}."""\n')
    for i in range(30):
        (root / f"pkg_{i:02d}").mkdir()
        (root / f"pkg_{i:02d}" / "x.py").write_text("x = 1\n")
    return root


def test_big_folder_is_paged_and_the_listing_matches_each_page(big_folder):
    env = AutoExploreEnv(tasks=[tree_task(big_folder, "module_180.py")], max_actions=62)
    _, info = env.reset(seed=0)
    seen = []
    for page, size in enumerate((61, 61, 61, 47)):
        actions = info["actions"]
        assert len(actions) == size + 1 and actions[-1] == f"{PAGE_ACTION_PREFIX} (page {(page + 1) % 4 + 1} of 4)"
        listed = info["observation"]
        shown = [a.split(" ", 1)[1] for a in actions[:-1]]
        assert all(name in listed for name in shown)
        hidden = [f"module_{i:03d}.py" for i in range(200) if f"module_{i:03d}.py" not in shown]
        assert not any(h in listed for h in hidden)
        assert f"lists {size} of the 230" in listed
        assert len(env.render()) < 4000
        seen += shown
        _, reward, _, _, info = env.step(actions[-1])
        assert reward == 0.0 and info["page_turn"]
    assert len(seen) == len(set(seen)) == 230  # the pages cover every entry once
    assert info["actions"][0] == "cd pkg_00"  # and wrap round
    labels = LabelSet.plain()
    policy_prompt(State.from_info(info), "look further", Menu.build(info["actions"], labels))
    success, _, steps = play_oracle(env, seed=0)
    assert success and steps == 3 + 2  # page turns to reach module_180, cat, then id (read files come first)


def test_without_paging_the_listing_shows_everything(big_folder):
    env = AutoExploreEnv(tasks=[tree_task(big_folder, "module_180.py")], max_actions=None)
    _, info = env.reset(seed=0)
    assert len(info["actions"]) == 230 and "module_199.py" in info["observation"]


def test_leaveout_hides_only_unrelated_entries(big_folder):
    task = tree_task(big_folder, "pkg_07/x.py")
    env = AutoExploreEnv(tasks=[task], leaveout_prob=0.8, max_actions=None)
    sizes = []
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert "cd pkg_07" in info["actions"]
        sizes.append(len(info["actions"]))
        assert env.reset(seed=seed)[1]["actions"] == info["actions"]  # deterministic per seed
        success, _, _ = play_oracle(env, seed=seed)
        assert success
    assert max(sizes) < 130 and len(set(sizes)) > 1
    full = AutoExploreEnv(tasks=[task], leaveout_prob=0.0, max_actions=None)
    assert len(full.reset(seed=0)[1]["actions"]) == 230


def test_rewards_and_the_cat_then_id_rule(tmp_path):
    root = tmp_path / "r"
    (root / "src").mkdir(parents=True)
    (root / "src" / "answer.py").write_text('"""The answer."""\n')
    (root / "notes.md").write_text("# Notes\n")
    env = AutoExploreEnv(tasks=[tree_task(root, "src/answer.py")])
    _, info = env.reset(seed=0)
    assert info["actions"] == ["cd src", "cat notes.md"]
    _, r, *_ = env.step("cat notes.md")
    assert r == STEP_REWARD
    assert env.actions == ["id notes.md", "cd src"]
    _, r, *_ = env.step("cd src")
    assert r == STEP_REWARD and env.actions == ["cd ..", "cat answer.py"]
    _, r, _, _, info = env.step("id answer.py")  # not read yet: inadmissible
    assert info["invalid_action"]
    env.step("cat answer.py")
    _, r, terminated, _, info = env.step("id answer.py")
    assert r == SUCCESS_REWARD and terminated and info["success"]
    env.reset(seed=0)
    env.step("cat notes.md")
    _, r, terminated, _, info = env.step("id notes.md")
    assert r == WRONG_ID_REWARD and terminated and not info["success"]
    assert ERROR_REWARD < STEP_REWARD


HANDBOOK_QUESTION = 'Which document says: "The boiler is serviced every March by Ada Lovelace."?'


def handbook(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    lines = ["# Operations handbook"] + [f"Line {i}: the opening hours of the shop are posted at the door." for i in range(40)]
    lines.insert(30, "The boiler is serviced every March by Ada Lovelace.")
    (root / "handbook.md").write_text("\n".join(lines) + "\n")
    (root / "short.md").write_text("# Short\nThe boiler room key hangs by the door.\n")
    return [Task(id="t", question=HANDBOOK_QUESTION, kind="text", repository="r", root=str(root), targets=("handbook.md",), depth=0)]


def test_question_view_jumps_to_the_line_that_matches_the_question(tmp_path):
    tasks = handbook(tmp_path)
    head = AutoExploreEnv(tasks=tasks, view_chars=160)
    head.reset(seed=0)
    seen = head.step("cat handbook.md")[4]["observation"]
    assert "first 160 characters shown" in seen and "boiler" not in seen
    env = AutoExploreEnv(tasks=tasks, view_chars=160, view_start="question")
    env.reset(seed=0)
    seen = env.step("cat handbook.md")[4]["observation"]
    assert "its first line, then from line 31: 160 characters shown" in seen
    view = seen.split("shown):\n", 1)[1]
    assert view.startswith("# Operations handbook\n...\nThe boiler is serviced every March by Ada Lovelace.\nLine 29")
    assert len(view) == 160
    # a short file is shown whole, from its head, whatever it matches
    seen = env.step("cat short.md")[4]["observation"]
    assert seen.endswith("(47 bytes):\n# Short\nThe boiler room key hangs by the door.\n")
    with pytest.raises(ValueError, match="view_start must be one of head, question"):
        AutoExploreEnv(tasks=tasks, view_start="middle")


def test_question_window_weights_words_by_rarity_and_keeps_the_head_when_it_can():
    lines = ["the shop\n", "the shop opens at nine\n", "the boiler\n", "the shop closes at six\n"]
    # "shop" is on three lines, "boiler" on one: the rare word decides; ties go to the earliest line
    assert best_line(lines, "Where is the boiler of the shop?") == 2
    assert best_line(lines, "When does the shop open or close?") == 0
    assert best_line(lines, "Nothing in common?") == 0
    text = "".join(lines)
    assert question_window(text, "Where is the boiler?", 200) == (text, 1)  # the best line is within the head
    assert question_window(text, "Where is the boiler?", 12) == ("the\n...\nthe ", 3)
    assert question_window("", "Where is the boiler?", 12) == ("", 1)


def test_horizon_truncates(tmp_path):
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    (root / "t.txt").write_text("x")
    env = AutoExploreEnv(tasks=[tree_task(root, "t.txt")], horizon=4)
    env.reset(seed=0)
    for step in range(4):
        _, _, terminated, truncated, _ = env.step("cd a" if step % 2 == 0 else "cd ..")
    assert truncated and not terminated


def test_missing_target_is_reported_at_reset(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "other.txt").write_text("x")
    with pytest.raises(TaskSetError, match="no target file exists"):
        AutoExploreEnv(tasks=[tree_task(root, "gone.txt")]).reset(seed=0)


def test_play_command_follows_the_oracle_to_success(builtin, cache):
    from reflectrl.cli.main import app

    runner = CliRunner()
    args = ["play", "autoexplore", "--split", "test", "--index", "3", "--show-oracle"]
    labels = []
    for _ in range(8):
        result = runner.invoke(app, args, input="".join(f"{x}\n" for x in labels), env={"REFLECTRL_CACHE": str(cache)})
        assert result.exit_code == 0, result.output
        if "Episode over" in result.output:
            break
        labels.append(result.output.rsplit("(oracle: ", 1)[1].split(".")[0])
    assert "Episode over" in result.output and "success" in result.output
    bad = runner.invoke(app, ["play", "autoexplore", "--task", "nope"], env={"REFLECTRL_CACHE": str(cache)})
    assert bad.exit_code == 2 and "no task with id" in bad.output


def test_tool_folders_are_hidden_unless_on_a_target_path(tmp_path):
    root = tmp_path / "r"
    for rel in (".git/objects/ab", "__pycache__", "src", "build/gen"):
        (root / rel).mkdir(parents=True)
    (root / "src" / "main.py").write_text("x = 1\n")
    (root / "build" / "gen" / "answer.txt").write_text("generated\n")
    env = AutoExploreEnv(tasks=[tree_task(root, "src/main.py")])
    assert env.reset(seed=0)[1]["actions"] == ["cd src"]
    shown = AutoExploreEnv(tasks=[tree_task(root, "src/main.py")], hide=())
    assert shown.reset(seed=0)[1]["actions"] == ["cd .git", "cd __pycache__", "cd build", "cd src"]
    inside = AutoExploreEnv(tasks=[tree_task(root, "build/gen/answer.txt")])
    assert inside.reset(seed=0)[1]["actions"] == ["cd build", "cd src"]
    assert play_oracle(inside, seed=0)[0]


def test_decoy_is_another_unread_file_of_the_folder_only_before_the_answer_is_read():
    env = make_env("autoexplore", split="train", level="depth1", horizon=12, view_chars=200)
    rng = np.random.default_rng(0)
    seen_decoy = False
    for index in range(6):
        env.reset(seed=index, options={"index": index})
        while True:
            best = env.oracle_action()
            decoy = env.decoy_action(rng)
            if not best.startswith("cat "):
                assert decoy is None, (best, decoy)
            elif decoy is not None:
                seen_decoy = True
                assert decoy.startswith("cat ") and decoy != best and decoy in env.actions
                # A decoy is never an answer file: reading it leaves the oracle's plan to read the answer unchanged.
                _, _, terminated, truncated, info = env.step(decoy)
                assert not terminated and not info["invalid_action"]
                if truncated:
                    break
                assert env.oracle_action() == best
                continue
            _, _, terminated, truncated, _ = env.step(best)
            if terminated or truncated:
                break
    assert seen_decoy
