"""Bringing an environment: the README's example run as written, and the rules of `from_gymnasium` and `register_env`.

The example (README, "Bring your own environment") is a gymnasium text game in a file of its own, wrapped with
`from_gymnasium` and registered with one `register_env` call; the commands find it through ``$REFLECTRL_ENVS``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import string
from pathlib import Path

import gymnasium
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.envs import ENVIRONMENTS, PLUGINS_VARIABLE, TextEnv, from_gymnasium, lookup, make_env, register_env
from reflectrl.evaluation.harness import EvalConfig, plan_episodes
from reflectrl.pipeline.presets import preset
from reflectrl.teachers.explainers import GENERIC, explainer_for

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> tuple[str, list[str]]:
    """The README section's Python file and its shell commands."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Bring your own environment", 1)[1].split("\n## ", 1)[0]
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    shell = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(python) == 1 and len(shell) == 1, "the section has one Python file and one block of commands"
    return python[0], [line for line in shell[0].splitlines() if line.strip()]


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """Registrations made by a test are removed after it (names starting with 'byo' and the README's 'cellar')."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [n for n in ENVIRONMENTS if n == "cellar" or n.startswith("byo")]:
        gymnasium.registry.pop(ENVIRONMENTS.pop(name).gym_id, None)


def _readme_commands(folder: Path) -> list[tuple[dict[str, str], list[str]]]:
    code, commands = _example()
    (folder / "cellar.py").write_text(code, encoding="utf-8")
    parsed = []
    for line in commands:
        words = shlex.split(line)
        variables = dict(w.split("=", 1) for w in words[: words.index("reflectrl")])
        parsed.append((variables, words[words.index("reflectrl") + 1:]))
    return parsed


def test_readme_example_is_found_listed_played_and_checked(registered, monkeypatch):
    commands = _readme_commands(registered)
    assert [variables for variables, _ in commands] == [{PLUGINS_VARIABLE: "cellar.py"}] * 3
    monkeypatch.setenv(PLUGINS_VARIABLE, "cellar.py")
    runner = CliRunner()
    listed = runner.invoke(app, commands[0][1])
    assert listed.exit_code == 0, listed.output
    assert re.search(r"^cellar\s+reflectrl/cellar-v0\s+levels: small, large$", listed.output, re.M)
    assert "Open the rattling box, take the key, unlock the door." in listed.output
    # the oracle's labels (menus are labelled 0, 1, ... in order), typed in as a player would
    env = make_env("cellar", level="small")
    _, info = env.reset(seed=0)
    labels = []
    while not info["success"]:
        labels.append(str(env.oracle_index()))
        info = env.step(env.oracle_index())[-1]
    played = runner.invoke(app, commands[1][1], input="\n".join(labels) + "\n")
    assert played.exit_code == 0, played.output
    assert "Episode over after 2 steps: success, return +1." in played.output
    assert played.output.count("(oracle: ") == 2

    env = make_env("cellar", level="large")
    check_env(gymnasium.make("reflectrl/cellar-v0", level="small").unwrapped, skip_render_check=True)
    assert type(env).__name__ == "CellarEnv" and env.horizon == 6 and type(env).levels == ("small", "large")
    _, info = env.reset(seed=0)
    assert info["task"] == "Get out of the cellar." and info["actions"] == [f"open box {b}" for b in range(4)]
    rattling = env.gym_env.key_box
    assert f"Box {rattling} rattles." in info["observation"] and env.oracle_action() == f"open box {rattling}"
    _, reward, terminated, _, info = env.step(env.oracle_action())
    assert (reward, terminated) == (0.0, False) and info["history"] == [f"open box {rattling}"]
    _, reward, terminated, _, info = env.step("unlock the door")
    assert (reward, terminated, info["success"]) == (1.0, True, True)
    assert explainer_for("cellar") is GENERIC and lookup("cellar").splits is None

    evaluated = runner.invoke(app, ["eval", "cellar", "--agent", "oracle", "--episodes", "5", "--quiet"])
    assert evaluated.exit_code == 0, evaluated.output
    assert re.search(r"100\.0%", evaluated.output)


@pytest.mark.slow  # about 35 s of CPU: every stage of the pipeline with the tiny model
def test_readme_example_runs_the_tiny_pipeline_from_the_command_line(registered, monkeypatch):
    variables, words = _readme_commands(registered)[2]
    monkeypatch.setenv(PLUGINS_VARIABLE, variables[PLUGINS_VARIABLE])
    result = CliRunner().invoke(app, words + ["--quiet"])
    assert result.exit_code == 0, result.output
    out = registered / "runs" / "cellar"
    assert "reflectrl pipeline cellar --preset tiny" in (out / "report.md").read_text()
    oracle = json.loads((out / "eval-oracle" / "large" / "eval.json").read_text())
    assert oracle["summary"]["success"] == 1.0 and oracle["summary"]["episodes"] == 4
    data = [json.loads(line) for line in (out / "data" / "reflector.jsonl").read_text().splitlines()]
    assert data and all(row["env"] == "cellar" for row in data)


def test_a_plugin_that_does_not_import_fails_the_command_with_its_error(registered, monkeypatch):
    (registered / "broken.py").write_text("raise RuntimeError('no cellar here')\n")
    monkeypatch.setenv(PLUGINS_VARIABLE, "broken.py")
    result = CliRunner().invoke(app, ["envs"])
    assert result.exit_code == 2
    assert "broken.py" in result.output and "RuntimeError: no cellar here" in result.output


class Lamps(gymnasium.Env):
    """Switch the lamps on in order: observations are text, actions an index into the listed commands."""

    def __init__(self, lamps: int = 3, stop_after: int | None = None, split: str = "train"):
        self.lamps, self.stop_after, self.split = lamps, stop_after, split
        self.observation_space = spaces.Text(100, charset=string.printable)
        self.action_space = spaces.Discrete(lamps + 1)

    @property
    def num_tasks(self) -> int:
        return 3 if self.split == "test" else 10

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.on, self.steps = 0, 0
        self.options = options
        return self._text(), self._info()

    def step(self, index):
        command = self._commands()[index]
        self.steps += 1
        if command == f"switch on lamp {self.on}":
            self.on += 1
        won = self.on == self.lamps
        stopped = self.stop_after is not None and self.steps >= self.stop_after
        return self._text(), (1.0 if won else 0.0), won, stopped, self._info()

    def _text(self) -> str:
        return f"{self.on} of {self.lamps} lamps are on."

    def _commands(self) -> list[str]:
        return [f"switch on lamp {i}" for i in range(self.lamps)] + ["wait", "wait"]  # a duplicate entry

    def _info(self) -> dict:
        return {"commands": self._commands(), "next": f"switch on lamp {self.on}", "seen": [self.on]}


def test_discrete_actions_truncation_task_fallback_success_fallback_and_the_decorator(registered):
    LampsEnv = from_gymnasium(
        Lamps, actions_key="commands", oracle=lambda gym_env, info: info["next"], info_keys=("seen",), horizon=8, name="LampsEnv",
    )
    assert LampsEnv.levels == ("default",)
    env = LampsEnv(lamps=2, stop_after=3)
    obs, info = env.reset(seed=1, options={"index": 2})
    assert env.gym_env.options == {"index": 2}  # reset options go through, the level does not
    assert info["task"] == "0 of 2 lamps are on." == info["observation"]  # no task given: the first observation
    assert info["actions"] == ["switch on lamp 0", "switch on lamp 1", "wait"]
    _, _, _, _, info = env.step("switch on lamp 0")  # sent as its index (Discrete action space)
    assert info["observation"] == "1 of 2 lamps are on." and info["seen"] == [1]
    _, _, terminated, truncated, info = env.step("wait")
    _, _, terminated, truncated, info = env.step("wait")  # the wrapped environment's time limit
    assert (terminated, truncated, info["actions"]) == (False, True, [])
    _, info = env.reset(seed=1)
    for _ in range(2):
        _, reward, terminated, truncated, info = env.step(env.oracle_action())
    assert (reward, terminated, info["success"]) == (1.0, True, True)  # no 'won' key: terminated with a reward

    @register_env("byo-lamps", splits={"train": "train", "test": "test"}, presets={"tiny": {"horizon": 5}})
    class HandWritten(LampsEnv):
        """Lamps, registered by the decorator."""

    assert lookup("byo-lamps").env_class() is HandWritten and lookup("reflectrl/byo-lamps-v0").name == "byo-lamps"
    assert lookup("byo-lamps").summary == "Lamps, registered by the decorator."
    assert preset("tiny", "byo-lamps").horizon == 5
    plan = plan_episodes(EvalConfig(env="byo-lamps", split="test"))
    assert [r.options for r in plan.requests] == [{"index": i} for i in range(3)]
    with pytest.raises(ValueError, match="unknown split"):
        plan_episodes(EvalConfig(env="byo-lamps", split="validation"))


def test_mistakes_are_clear_errors(registered):
    with pytest.raises(TypeError, match="TextEnv subclass"):
        register_env("byo-bad", Lamps)
    with pytest.raises(ValueError, match="environment name"):
        register_env("two words", from_gymnasium(Lamps))
    with pytest.raises(ValueError, match="levels must be distinct"):
        from_gymnasium(Lamps, levels=("a", "a"))
    with pytest.raises(ValueError, match="has no 'admissible_commands' \\(actions_key\\); its keys: 'commands'"):
        from_gymnasium(Lamps)().reset(seed=0)
    env = from_gymnasium(Lamps, actions_key="commands", task_key="objective")()
    with pytest.raises(ValueError, match="no 'objective' \\(task_key\\)"):
        env.reset(seed=0)
    env = from_gymnasium(Lamps, actions_key="commands")()
    env.reset(seed=0)
    with pytest.raises(NotImplementedError, match="no oracle"):
        env.oracle_action()
    env = from_gymnasium(Lamps, actions_key="commands", oracle="next")(lamps=1)
    env.reset(seed=0)
    assert env.oracle_action() == "switch on lamp 0"
    wrong = from_gymnasium(Lamps, actions_key="commands", oracle=lambda gym_env, info: "fly")()
    wrong.reset(seed=0)
    with pytest.raises(RuntimeError, match="'fly' is not admissible"):
        wrong.oracle_action()


def test_a_wrapped_environment_that_changes_level_at_reset_builds_it_again(registered):
    Sized = from_gymnasium(lambda level, **kwargs: Lamps(lamps=int(level), **kwargs), levels=("1", "3"), actions_key="commands")
    env = Sized(level="1")
    assert isinstance(env, TextEnv) and env.gym_env.lamps == 1
    _, info = env.reset(seed=0, options={"level": "3"})
    assert env.gym_env.lamps == 3 and info["level"] == "3" and env.gym_env.options is None
    check_env(Sized(level="3"), skip_render_check=True)


@pytest.mark.slow  # about 30 s of CPU: every stage of the pipeline with the tiny model
def test_an_environment_registered_in_python_runs_the_pipeline_with_its_own_presets_and_pinned_settings(registered, monkeypatch):
    # A level-building factory: the pinned keyword arrives as the environment variable's text.
    LampsEnv = from_gymnasium(
        lambda level, lamps="2", **kwargs: Lamps(lamps=int(lamps), **kwargs), levels=("row",), actions_key="commands",
        oracle=lambda gym_env, info: info["next"], horizon=8, name="LampsEnv",
    )
    register_env(
        "byo-lamps-run", LampsEnv, presets={"tiny": {"horizon": 6, "data": {"episodes": 4}, "eval": {"episodes": 3}}},
        pinned_kwargs=lambda env_kwargs: {} if "lamps" in env_kwargs else {"lamps": ("BYO_LAMPS", os.environ["BYO_LAMPS"])},
    )
    monkeypatch.setenv("BYO_LAMPS", "3")
    out = registered / "run"
    result = CliRunner().invoke(app, ["pipeline", "byo-lamps-run", "--preset", "tiny", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert f"`BYO_LAMPS=3 reflectrl pipeline byo-lamps-run --preset tiny --out {out}`" in report
    settings = json.loads((out / "pipeline.json").read_text())["preset"]
    assert (settings["horizon"], settings["data"]["episodes"], settings["env_kwargs"]) == (6, 4, {"lamps": "3"})
    oracle = json.loads((out / "eval-oracle" / "row" / "eval.json").read_text())["summary"]
    assert (oracle["success"], oracle["episodes"]) == (1.0, 3)
