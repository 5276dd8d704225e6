"""`reflectrl train`, `reflectrl sft` and `reflectrl eval` take their settings' options from `RLConfig`, `SFTConfig`,
`EvalConfig` and `PlayersConfig` (`reflectrl.cli.config_options`): every field is an option with the dataclass's
default and docstring, and every RL and SFT field is a `reflectrl pipeline --set` key."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Optional

import pytest
import typer
from typer.testing import CliRunner

from reflectrl.cli.config_options import Flag, field_docs, with_config_options
from reflectrl.cli.main import app
from reflectrl.evaluation.harness import EvalConfig
from reflectrl.pipeline.presets import SET_BY_THE_RUN, parse_assignments, preset
from reflectrl.players.players_config import PlayersConfig
from reflectrl.run_settings import as_saved
from reflectrl.trainers.rl_config import RLConfig
from reflectrl.trainers.sft_config import SFTConfig

OLD_TRAIN_FLAGS = [
    "--iters", "--advantage", "--levels", "--curriculum-schedule", "--grpo-std-norm", "--no-grpo-std-norm",
    "--reflection-cache", "--no-reflection-cache", "--algo", "--episodes-per-iter", "--group-size", "--step-groups",
    "--skip-zero-advantage", "--pg-baseline", "--seed", "--lr", "--max-kl", "--eval-every", "--horizon", "--ray",
    "--ray-address", "--reflection-temperature", "--train-reflector", "--reflector-lr", "--reflector-kl-coef",
    "--reflection-tokens", "--lora-r", "--lora-alpha", "--shuffle-labels", "--fixed-labels", "--label-after", "--label-first",
]
OLD_SFT_FLAGS = [
    "--role", "--data", "--out", "--model", "--full", "--lora-r", "--lora-alpha", "--lora-layers", "--learning-rate",
    "--epochs", "--max-steps", "--max-minutes", "--batch-size", "--grad-accum", "--max-length", "--eval-fraction",
    "--max-eval-rows", "--eval-steps", "--save-steps", "--lr-scheduler", "--warmup-ratio", "--focal-gamma", "--bf16",
    "--no-bf16", "--threads", "--seed", "--resume", "--overwrite",
]
OLD_EVAL_FLAGS = [
    "--agent", "--model", "--base-url", "--api-key-env", "--policy", "--reflector", "--split", "--episodes", "--level",
    "--horizon", "--batch-size", "--reflection-tokens", "--constrained", "--seed", "--out", "--show", "--env-option",
]

COMMAND_CONFIGS = [
    # (command, settings class, the fields the command sets itself instead of by an option of the field's name)
    ("train", RLConfig, {"env"}),  # the ENV argument
    ("train", PlayersConfig, set()),
    ("sft", SFTConfig, {"extra", "report_to"}),  # the command line as a note; --report-to, text like train's
    ("eval", EvalConfig, {"env", "episodes", "env_kwargs"}),  # ENV; --episodes, a count or "all"; --env-option KEY=VALUE
    # The evaluated policy is trained: its checkpoint has its LoRA shape and records its menu layout.
    ("eval", PlayersConfig, {"lora_r", "lora_alpha", "shuffle_labels", "label_after"}),
]


def _command(name: str) -> Any:
    """A `reflectrl` command as click (typer's own copy of it) parses it."""
    return typer.main.get_command(app).commands[name]


def _options(name: str) -> dict[str, Any]:
    """The options of a `reflectrl` command, by parameter name."""
    return {p.name: p for p in _command(name).params if p.param_type_name == "option"}


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _option_value(command: str, option: Any) -> Any:
    """The option's default as the command receives it (tuple options are parsed from their text)."""
    parser = _command(command)
    return option.process_value(parser.context_class(parser), option.default)


@pytest.mark.parametrize(("command", "config_class", "left_to_the_command"), COMMAND_CONFIGS)
def test_every_field_is_an_option_with_the_dataclass_default_and_docstring(command, config_class, left_to_the_command):
    options = _options(command)
    docs = field_docs(config_class)
    for field in dataclasses.fields(config_class):
        if field.name in left_to_the_command:
            continue
        option = options[field.name]
        assert "--" + field.name.replace("_", "-") in option.opts, field.name
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            assert option.required, field.name
        else:
            assert _option_value(command, option) == _default(field), field.name
        # Escaped for rich's markup only.
        assert option.help.replace("\\[", "[") == docs[field.name], field.name


def test_the_help_is_the_docstring_below_the_field():
    docs = field_docs(RLConfig)
    assert docs["iterations"] == "Number of collect-and-update iterations."
    assert docs["max_kl"].startswith("Trust region: after each optimizer step the policy's exact KL")
    assert "\n" not in docs["max_kl"] and "  " not in docs["max_kl"]
    assert field_docs(SFTConfig)["learning_rate"] == "Peak learning rate."
    # Bracketed words survive typer's rich markup.
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"}, terminal_width=400).output
    assert "reflectrl[ray]" in shown


@pytest.mark.parametrize(("command", "flags"), [("train", OLD_TRAIN_FLAGS), ("sft", OLD_SFT_FLAGS), ("eval", OLD_EVAL_FLAGS)])
def test_the_older_flag_names_still_work(command, flags):
    known = {name for option in _options(command).values() for name in option.opts + option.secondary_opts}
    assert set(flags) <= known, set(flags) - known


@pytest.mark.parametrize(("args", "flag"), [
    (["train", "corridor", "--policy", "tiny-random", "--out", "unused"], flag) for flag in ("--reflection-tokens", "--lora-r", "--lora-alpha")
] + [(["eval", "corridor", "--agent", "oracle"], flag) for flag in ("--reflection-tokens", "--horizon", "--batch-size")])
def test_counts_below_one_are_usage_errors(args, flag):
    result = CliRunner().invoke(app, [*args, flag, "0"])
    assert result.exit_code == 2 and flag in result.output, result.output


def test_eval_settings_reach_the_evaluation(tmp_path):
    args = [
        "eval", "corridor", "--agent", "oracle", "--split", "validation", "--episodes", "2", "--level", "short",
        "--horizon", "3", "--batch-size", "1", "--seed", "5", "--quiet", "--out", str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "eval.json").read_text())["config"]
    assert config == {**config, "split": "validation", "level": "short", "horizon": 3, "batch_size": 1, "seed": 5, "episodes": 2}


def test_train_defaults_are_rlconfigs():
    options = _options("train")
    assert _option_value("train", options["iterations"]) == RLConfig.iterations == 100
    assert {"--iterations", "--iters"} <= set(options["iterations"].opts)
    assert {"--advantage-estimator", "--advantage"} <= set(options["advantage_estimator"].opts)


def test_flags_given_on_the_command_line_reach_the_run_config(tmp_path):
    out = tmp_path / "run"
    args = [
        "train", "corridor", "--policy", "tiny-random", "--no-reflection", "--iters", "1", "--episodes-per-iter", "2",
        "--eval-every", "0", "--horizon", "4", "--quiet", "--out", str(out), "--advantage", "mc", "--gae-lambda", "0.5",
        "--curriculum-schedule", " 3 ", "--levels", "short, long", "--no-reflection-cache", "--keep-checkpoints", "1",
        "--value-clip", "0.2", "--threads", "1", "--lora-r", "4", "--reflection-tokens", "7", "--fixed-labels", "--label-after",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "run.json").read_text())
    assert {k: saved[k] for k in ("lora_r", "lora_alpha", "reflection_tokens", "shuffle_labels", "label_after")} == {
        "lora_r": 4, "lora_alpha": PlayersConfig.lora_alpha, "reflection_tokens": 7, "shuffle_labels": False, "label_after": True,
    }
    assert json.loads((out / "final" / "adapter_config.json").read_text())["r"] == 4
    config = saved["config"]
    assert config["iterations"] == 1 and config["episodes_per_iter"] == 2 and config["horizon"] == 4
    assert config["advantage_estimator"] == "mc" and config["gae_lambda"] == 0.5 and config["value_clip"] == 0.2
    assert config["curriculum_schedule"] == [3] and config["levels"] == ["short", "long"]
    assert config["reflection_cache"] is False and config["keep_checkpoints"] == 1
    assert config["lr"] == RLConfig.lr and config["env"] == "corridor"


def test_a_bad_list_item_is_a_usage_error_of_its_option(tmp_path):
    args = ["train", "corridor", "--policy", "tiny-random", "--no-reflection", "--out", str(tmp_path), "--curriculum-schedule", "3,x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--curriculum-schedule" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("part", "config_class"), [("rl", RLConfig), ("sft", SFTConfig)])
def test_every_rl_and_sft_field_is_a_pipeline_setting(part, config_class):
    """``reflectrl pipeline --set rl.NAME=VALUE`` / ``sft.NAME=VALUE``, each with the value the tiny preset has; a field
    the run fills in itself is refused by name (it would be silently replaced)."""
    tiny = preset("tiny", "taxi")
    for field in dataclasses.fields(config_class):
        if field.name in SET_BY_THE_RUN[part]:
            with pytest.raises(ValueError, match=rf"{part}\.{field.name} is not a preset setting"):
                preset("tiny", "taxi", parse_assignments([f"{part}.{field.name}=1"]))
            continue
        if part == "rl":
            value = getattr(tiny.rl, field.name)
        else:
            value = tiny.sft.get(field.name, "x" if field.default is dataclasses.MISSING else _default(field))
        chosen = preset("tiny", "taxi", parse_assignments([f"{part}.{field.name}={json.dumps(value)}"]))
        if part == "rl":
            assert getattr(chosen.rl, field.name) == value, field.name
        else:
            assert chosen.sft[field.name] == as_saved(value), field.name


@pytest.mark.parametrize("changes", [{"sft": {"lora_rank": 8}}, {"sft_by_role": {"reflector": {"lora_rank": 8}}}])
def test_an_unknown_sft_setting_is_refused_by_name(changes):
    with pytest.raises(ValueError, match="unknown SFT settings: lora_rank"):
        preset("tiny", "taxi", changes)


def test_sft_and_rl_share_the_lora_shape():
    """One declaration of the LoRA rank and alpha: SFT's and a fresh RL policy adapter's defaults cannot drift."""
    shared = {f.name: f.default for f in dataclasses.fields(PlayersConfig) if f.name.startswith("lora_")}
    assert shared == {"lora_r": 16, "lora_alpha": 32}
    assert {name: getattr(SFTConfig, name) for name in shared} == shared
    assert (SFTConfig.lora_dropout, SFTConfig.lora_layers) == (0.0, None)


@dataclass
class _Settings:
    name: str
    """Who."""
    tags: tuple[str, ...] = ("a", "b")
    """Labels, in order."""
    steps: Optional[int] = None
    """How many;
    None: no limit."""
    fast: bool = True
    """Take the short cut."""


def test_the_decorator_hands_the_command_the_field_values():
    seen: dict[str, Any] = {}

    @with_config_options(_Settings, into="settings", flags={"steps": Flag(aliases=("-n",), min=1)})
    def command(verbose: bool = typer.Option(False, "--verbose"), *, settings: dict[str, Any]) -> None:
        seen.update(settings, verbose=verbose)

    runner = CliRunner()
    assert runner.invoke(_app(command), ["--name", "x", "-n", "3", "--no-fast"]).exit_code == 0
    assert seen == {"name": "x", "tags": ("a", "b"), "steps": 3, "fast": False, "verbose": False}
    assert _Settings(**{k: v for k, v in seen.items() if k != "verbose"}).steps == 3
    assert runner.invoke(_app(command), ["--name", "x", "-n", "0"]).exit_code == 2
    assert field_docs(_Settings)["steps"] == "How many; None: no limit."


def test_the_decorator_refuses_unknown_fields_and_clashing_names():
    with pytest.raises(TypeError, match="no fields"):
        with_config_options(_Settings, into="settings", exclude=("nope",))
    with pytest.raises(TypeError, match="named like fields"):
        @with_config_options(_Settings, into="settings")
        def command(name: str = "x", *, settings: dict[str, Any]) -> None:
            pass


def _app(command) -> typer.Typer:
    one = typer.Typer()
    one.command()(command)
    return one
