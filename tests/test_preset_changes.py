"""Changing preset settings from the command line (`--set KEY=VALUE`, `--config FILE`): typed, checked, saved with the
run and compared on resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.pipeline.presets import merge_changes, parse_assignments, preset, read_changes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_assignments_nest_by_their_dots_and_read_json_values():
    changes = parse_assignments(
        ["rl.iterations=8", "sft.max_steps=200", "data.teacher=oracle:concise", "rl.levels=[\"pickup\", \"dropoff\"]",
         "sft_by_role.reflector.max_steps=90", "horizon=null", "label_after=true"]
    )
    assert changes == {
        "rl": {"iterations": 8, "levels": ["pickup", "dropoff"]}, "sft": {"max_steps": 200}, "data": {"teacher": "oracle:concise"},
        "sft_by_role": {"reflector": {"max_steps": 90}}, "horizon": None, "label_after": True,
    }
    for bad in ("x", "=3", "rl.=3", "rl..iterations=3"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_assignments([bad])


def test_changes_apply_over_the_environments_preset_with_the_settings_types():
    base = preset("cpu", "taxi")
    changed = preset("cpu", "taxi", parse_assignments(
        ["rl.iterations=8", "rl.levels=[\"dropoff\"]", "rl.gamma=1", "sft.max_steps=200", "sft_by_role.reflector.max_steps=90",
         "dagger.episodes=200", "reflection_tokens=40"]
    ))
    assert changed.rl.iterations == 8 and changed.rl.levels == ("dropoff",) and changed.rl.gamma == 1.0 and isinstance(changed.rl.gamma, float)
    assert changed.sft["max_steps"] == 200 and changed.sft["batch_size"] == base.sft["batch_size"]
    assert changed.sft_by_role["reflector"] == {**base.sft_by_role["reflector"], "max_steps": 90}
    assert changed.dagger.episodes == 200 and changed.dagger.steps == base.dagger.steps and changed.reflection_tokens == 40
    # Everything else is the preset's own.
    assert changed.rl.group_size == base.rl.group_size and changed.data == base.data and changed.level == base.level


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("rl.iterationz=3", "unknown setting rl.iterationz"),
        ("colour=red", "unknown setting 'colour'"),
        ("rl.iterations=many", "takes a number"),
        ("shuffle_labels=3", "true or false"),
        ("rl=3", "sub-settings"),
        ("reflection_tokens.x=3", "one value"),
        ("sft.max_stepz=3", "unknown SFT settings: max_stepz"),
        ("bf16=yes", "bf16 takes true, false or null"),
        ("sft.bf16=true", "sft.bf16 is not a preset setting: set bf16"),
    ],
)
def test_a_wrong_change_is_refused_naming_it(assignment, message):
    with pytest.raises(ValueError, match=message):
        preset("tiny", "taxi", parse_assignments([assignment]))


def test_a_settings_file_is_read_as_toml_and_set_goes_over_it(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('reflection_tokens = 40\n[rl]\niterations = 8\ngamma = 0.5\n[dagger]\nepisodes = 100\n')
    changes = merge_changes(read_changes(path), parse_assignments(["rl.iterations=9"]))
    assert changes == {"reflection_tokens": 40, "rl": {"iterations": 9, "gamma": 0.5}, "dagger": {"episodes": 100}}
    bad = tmp_path / "bad.toml"
    bad.write_text("[rl\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_changes(bad)
    with pytest.raises(ValueError, match="cannot read"):
        read_changes(tmp_path / "missing.toml")


@pytest.mark.slow  # about 20 s: the tiny pipeline once, then a refused resume
def test_the_cli_runs_with_set_saves_it_and_refuses_to_resume_with_another_value(tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--quiet", "--set", "rl.iterations=2"])
    assert first.exit_code == 0, first.output
    saved = json.loads((out / "pipeline.json").read_text())
    assert saved["preset"]["rl"]["iterations"] == 2
    assert len((out / "rl-plain" / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    assert "--set rl.iterations=2" in (out / "report.md").read_text()
    again = runner.invoke(app, ["pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--quiet", "--set", "rl.iterations=3"])
    assert again.exit_code != 0 and "preset.rl.iterations differ" in again.output
    wrong = runner.invoke(app, ["pipeline", "taxi", "--preset", "tiny", "--out", str(tmp_path / "other"), "--set", "rl.gamma=2"])
    assert wrong.exit_code != 0 and "gamma" in wrong.output and not (tmp_path / "other").exists()


def _precisions(agent) -> set[bool]:
    """The bf16 flags of whatever in `agent` runs a model: itself (prompted), its policy and its reflector."""
    parts = (agent, getattr(agent, "policy", None), getattr(agent, "reflector", None))
    return {flag for flag in (getattr(part, "bf16", None) for part in parts) if flag is not None}


@pytest.mark.slow  # about 30 s: the tiny pipeline once, with a DAgger round
def test_set_bf16_runs_every_stage_under_bfloat16_autocast_and_the_report_says_so(tmp_path, monkeypatch):
    import reflectrl.evaluation.agent_loader as agent_loader
    import reflectrl.trainers.recipe as recipe

    played: list[tuple[str, set[bool]]] = []  # (agent kind, bf16 flags) of the DAgger round's play and every row
    trained: list[set[bool]] = []  # the RL stages' players
    load_agent, load_rl_players = agent_loader.load_agent, recipe.load_rl_players

    def agent_spy(spec):
        loaded = load_agent(spec)
        played.append((spec.kind, _precisions(loaded.agent)))
        return loaded

    def players_spy(*args, **kwargs):
        players = load_rl_players(*args, **kwargs)
        trained.append(_precisions(players.agent))
        return players

    monkeypatch.setattr(agent_loader, "load_agent", agent_spy)
    monkeypatch.setattr(recipe, "load_rl_players", players_spy)
    out = tmp_path / "run"
    sets = ["bf16=true", "dagger.episodes=2", "dagger.steps=1", "rl.iterations=1"]
    result = CliRunner().invoke(
        app, ["pipeline", "taxi", "--preset", "tiny", "--out", str(out), "--quiet"] + [arg for item in sets for arg in ("--set", item)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "pipeline.json").read_text())["preset"]["bf16"] is True
    for stage in ("sft-reflector", "sft-policy", "sft-plain", "sft-reflector-dagger"):
        assert json.loads((out / stage / "warmup_config.json").read_text())["bf16"] is True, stage
        assert json.loads((out / stage / "metrics.json").read_text())["bf16"] is True, stage
    assert trained == [{True}, {True}]  # rl-reflect (policy and reflector), rl-plain
    models = [flags for kind, flags in played if kind in ("plain", "reflect", "prompted")]
    assert len(models) == 9 and all(flags == {True} for flags in models)  # the DAgger round's play and 8 rows
    report = (out / "report.md").read_text()
    assert "- **precision**: bfloat16 autocast in every stage" in report and '"bf16": true' in report
    assert "(bfloat16 autocast)" in (out / "timing.md").read_text()
