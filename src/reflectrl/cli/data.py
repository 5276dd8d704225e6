"""`reflectrl gen-data` and `reflectrl sft`: teacher data and the SFT warm-up (registered in `cli.main`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from reflectrl.cli.config_options import Flag, with_config_options
from reflectrl.cli.errors import fail
from reflectrl.cli.options import apply_threads, bf16_option, report_to_names, report_to_option, threads_option, verbose_option
from reflectrl.datagen.config import SPLIT_SEED_OFFSETS
from reflectrl.players.players_config import PlayersConfig
from reflectrl.trainers.sft_config import SFTConfig


def _parse_env_kwargs(pairs: list[str]) -> dict:
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--env-arg takes KEY=VALUE, got {pair!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except ValueError:
            kwargs[key.strip()] = value
    return kwargs


def gen_data(
    env_name: str = typer.Argument(..., metavar="ENV", help="Environment name (see `reflectrl envs`)."),
    teacher: str = typer.Option("oracle", help="oracle (or oracle:concise, oracle:grounded, oracle:reasoned, oracle:mapped, oracle:waypoint: short reflections, the move first, the fact first, facts and verdict then the move, those plus the map's open rows, or those plus the open row to reach first (taxi)), openai:MODEL or hf:PATH."),
    episodes: int = typer.Option(100, min=1, help="Expert episodes to roll out."),
    random_prob: float = typer.Option(0.1, min=0.0, max=1.0, help="Chance of a random action at each expert step."),
    decoy_prob: float = typer.Option(
        0.0, min=0.0, max=1.0,
        help="Chance of the environment's decoy move where it has one (AutoExplore: read another file before the answer; ALFWorld: search another place first).",
    ),
    negatives: int = typer.Option(2, min=0, help="Negative examples per episode."),
    misleading: float = typer.Option(
        0.0, min=0.0, max=1.0,
        help="Share of states that also get a policy row whose reflection argues for a wrong action (label: the oracle's).",
    ),
    out: Path = typer.Option(..., help="Output folder."),
    split: str = typer.Option("train", help=f"Seed range: {', '.join(SPLIT_SEED_OFFSETS)}."),
    level: Optional[str] = typer.Option(None, help="Curriculum level (default: the hardest)."),
    horizon: Optional[int] = typer.Option(None, min=1, help="Episode length limit."),
    seed: int = typer.Option(0, help="Base seed."),
    model: str = typer.Option("smollm2-135m", help="Model whose tokenizer defines labels and token counts."),
    max_prompt_tokens: Optional[int] = typer.Option(None, min=16, help="Prompt budget in tokens (default: the tokenizer's limit)."),
    env_arg: list[str] = typer.Option([], "--env-arg", help="Extra environment argument KEY=VALUE (repeatable)."),
    shuffle_labels: bool = typer.Option(True, "--shuffle-labels/--fixed-labels", help="Shuffle action labels per step (as rollouts do by default)."),
    label_after: bool = typer.Option(
        False, "--label-after/--label-first", help='Write menu entries as "action (label)" instead of "label. action".'
    ),
    cache: Optional[Path] = typer.Option(None, help="Teacher answer cache (SQLite; default OUT/teacher_cache.sqlite)."),
    base_url: Optional[str] = typer.Option(None, help="openai teacher: server URL up to /v1 (default $OPENAI_BASE_URL)."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="openai teacher: environment variable holding the key."),
    timeout: float = typer.Option(60.0, min=1.0, help="openai teacher: seconds per request."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over if OUT holds data made with other settings."),
) -> None:
    """Generate teacher data: expert rollouts, negative examples, reflector/policy/plain JSONL and stats.json.

    Re-running the same command continues an interrupted run (cached teacher answers are not paid for again).
    """
    from reflectrl.datagen import (
        ConfigMismatch,
        CorruptJournal,
        GenConfig,
        InvalidRows,
        generate,
    )
    from reflectrl.envs import lookup
    from reflectrl.models import BackendError, ModelLoadError
    from reflectrl.teachers import TeacherSpecError, parse_teacher_spec

    try:
        lookup(env_name)
    except KeyError as err:
        fail(err.args[0])
    config = GenConfig(
        env=env_name, out=str(out), teacher=teacher, episodes=episodes, random_prob=random_prob,
        decoy_prob=decoy_prob, negatives=negatives, misleading=misleading, split=split, seed=seed, level=level, horizon=horizon,
        env_kwargs=_parse_env_kwargs(env_arg), model=model, max_prompt_tokens=max_prompt_tokens,
        shuffle_labels=shuffle_labels, label_after=label_after,
    )
    try:
        config.check()
        options = {"base_url": base_url, "api_key_env": api_key_env, "timeout": timeout}
        parse_teacher_spec(teacher)  # fail before loading anything
        result = generate(config, cache_path=cache, overwrite=overwrite, teacher_options=options)
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to continue where it stopped", 130)
    except (ValueError, ConfigMismatch, CorruptJournal, InvalidRows, TeacherSpecError, ModelLoadError, BackendError, OSError) as err:
        fail(str(err))
    stats = result.stats
    typer.echo(
        f"{result.out}: {stats['rows']['reflector']} reflector, {stats['rows']['policy']} policy, "
        f"{stats['rows']['plain']} plain rows; negative share {stats['negative_share']:.1%}; "
        f"{result.episodes_generated} episodes generated now, {result.teacher_calls} teacher calls, "
        f"{result.cache_hits} cached answers; {stats['seconds_this_run']} s"
    )


SFT_FLAGS = {
    "lora_r": Flag(min=1), "lora_alpha": Flag(min=1), "lora_layers": Flag(min=1), "batch_size": Flag(min=1),
    "grad_accum": Flag(min=1), "max_length": Flag(min=8), "max_eval_rows": Flag(min=1), "eval_steps": Flag(min=0),
    "save_steps": Flag(min=1), "warmup_ratio": Flag(min=0.0, max=1.0), "focal_gamma": Flag(min=0.0), "threads": Flag(min=1),
}
"""Bounds `SFTConfig.check` leaves to the command line."""


@with_config_options(SFTConfig, into="sft_settings", exclude=("extra", "report_to"), flags=SFT_FLAGS)
def sft(
    verbose: bool = verbose_option(),
    report_to: str = report_to_option(),
    *,
    sft_settings: dict[str, Any],
) -> None:
    """Warm up a player by SFT on gen-data rows (loss on the completion only); prints held-out metrics."""
    from reflectrl.models import ModelLoadError
    from reflectrl.run_log import run_log
    from reflectrl.trainers.sft import WarmupError, run_warmup

    config = SFTConfig(**sft_settings, report_to=report_to_names(report_to), extra={"argv": sys.argv[1:]})
    try:
        with run_log(verbose=verbose):
            result = run_warmup(config)
    except KeyboardInterrupt:
        fail("interrupted; run the same command with --resume to continue from the last checkpoint", 130)
    except (WarmupError, ModelLoadError, OSError) as err:
        fail(str(err))
    metrics = result.metrics
    parts = [f"{k}={metrics[k]}" for k in ("global_step", "eval_loss", "label_accuracy", "chance_accuracy") if k in metrics]
    typer.echo(f"{result.out}: " + ", ".join(parts))


def reflect_data(
    data: Path = typer.Option(..., help="gen-data output folder (reflector.jsonl and policy.jsonl)."),
    reflector: str = typer.Option(
        ..., help="Trained reflector that writes the new reflections: an SFT adapter folder, or served:URL[#MODEL] (the same reflector on an inference server)."
    ),
    out: Path = typer.Option(..., help="Output folder (policy.jsonl, stats.json; re-run to continue)."),
    reflection_tokens: int = typer.Option(
        PlayersConfig.reflection_tokens, min=1, help="Longest reflection in tokens (use the value of RL and eval)."
    ),
    positive_only: bool = typer.Option(False, "--positive-only", help="Rewrite policy_positive.jsonl (no negative examples)."),
    max_episodes: Optional[int] = typer.Option(None, min=1, help="Rewrite only the first N episodes' rows (default: all)."),
    batch_size: int = typer.Option(32, min=1, help="Reflector prompts per generate call."),
    bf16: Optional[bool] = bf16_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Rewrite policy SFT rows with a trained reflector's own reflections (oracle labels kept).

    A policy trained on the teacher's reflections trusts them; at RL and evaluation time it reads the trained
    reflector's, which may be wrong. Train the policy on OUT/policy.jsonl so it learns the reflections it will see.
    """
    from tqdm.auto import tqdm

    from reflectrl.datagen import ConfigMismatch, CorruptJournal
    from reflectrl.datagen.student_reflections import StudentReflectionConfig, rewrite_policy_rows
    from reflectrl.models import BackendError, ModelLoadError
    from reflectrl.models.loading import is_adapter_folder
    from reflectrl.models.served_spec import is_served_spec
    from reflectrl.players.load import reflector_from_spec

    apply_threads(threads)
    served = is_served_spec(reflector)
    if not served and not is_adapter_folder(reflector):
        fail(
            f"--reflector {reflector} is not an adapter folder (no adapter_config.json); give the output of "
            "`reflectrl sft --role reflector` or served:URL#MODEL"
        )
    config = StudentReflectionConfig(
        data=str(data), reflector=str(reflector), reflection_tokens=reflection_tokens, positive_only=positive_only,
        max_episodes=max_episodes,
    )
    try:
        writer = reflector_from_spec(reflector, reflection_tokens=reflection_tokens, concurrency=batch_size, bf16=bf16)
        with tqdm(desc="reflect-data", unit="row", dynamic_ncols=True) as bar:
            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            stats = rewrite_policy_rows(config, writer, out, rows_per_batch=batch_size, on_batch=advance)
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to continue where it stopped", 130)
    except (ValueError, ConfigMismatch, CorruptJournal, ModelLoadError, BackendError, OSError) as err:
        fail(f"{err}" + ("; rows written so far are kept, run the same command again to continue" if isinstance(err, BackendError) else ""))
    typer.echo(
        f"{out / 'policy.jsonl'}: {stats['rows']} policy rows with the reflector's reflections "
        f"({stats['same_as_teacher']:.1%} identical to the teacher's); {stats['seconds_this_run']} s"
    )
