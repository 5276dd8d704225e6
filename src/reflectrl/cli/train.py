"""`reflectrl train`: online RL of the policy in an environment, with or without the frozen reflector.

The run folder (`--out`) holds:

* ``run.json``: the command's settings (a resumed run must use the same ones);
* ``metrics.jsonl``: one JSON line per iteration (and one for the start);
* ``tensorboard/``: the same metrics for TensorBoard (``--report-to`` chooses the trackers);
* ``checkpoints/iter-NNNNNN/``: atomic checkpoints (see `reflectrl.trainers.checkpoint`);
* ``final/``: the trained policy adapter (PEFT folder, plus ``value_head.safetensors``
  for PPO), loadable with `load_model` or as `--policy` of another run; with ``--train-reflector`` also
  ``final/reflector/``, the trained reflector adapter (`--reflector` of `reflectrl eval`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

import typer

from reflectrl.cli.config_options import Flag, with_config_options
from reflectrl.cli.errors import fail
from reflectrl.cli.options import RunOptions, apply_threads, report_to_names, report_to_option, with_run_options
from reflectrl.envs import lookup
from reflectrl.players.players_config import PlayersConfig
from reflectrl.run_settings import ConfigMismatch, changed_settings, read_saved
from reflectrl.storage import atomic_write_json
from reflectrl.trainers.curriculum import resolve_levels
from reflectrl.trainers.rl_config import TRAINED_REFLECTOR, RLConfig

FINAL = "final"
RUN_FILE = "run.json"


RL_FLAGS = {"iterations": Flag(aliases=("--iters",)), "advantage_estimator": Flag(aliases=("--advantage",))}
"""The older names of two `RLConfig` options, kept working beside ``--iterations`` and ``--advantage-estimator``."""


PLAYERS_FLAGS = {
    "reflection_tokens": Flag(min=1), "lora_r": Flag(min=1), "lora_alpha": Flag(min=1),
    "shuffle_labels": Flag(negative="--fixed-labels"), "label_after": Flag(negative="--label-first"),
}
"""Bounds `PlayersConfig` leaves to the command line, and the off switches of its layout flags."""


@with_run_options
@with_config_options(PlayersConfig, into="players_settings", flags=PLAYERS_FLAGS)
@with_config_options(RLConfig, into="rl_settings", exclude=("env",), flags=RL_FLAGS)
def train(
    env_name: str = typer.Argument(..., metavar="ENV", help="Environment name (see `reflectrl envs`)."),
    policy: str = typer.Option(..., "--policy", help="Policy to train: an SFT adapter folder, or a base model spec (tiny-random, smollm2-135m, a model folder) that gets a fresh LoRA adapter."),
    reflector: Optional[str] = typer.Option(None, "--reflector", help="Frozen reflector: an SFT adapter folder on the same base, the base spec itself, openai:MODEL (a chat server) or served:URL[#MODEL] (an inference server, raw completions; see `reflectrl serve-reflector`)."),
    reflector_url: Optional[str] = typer.Option(None, "--reflector-url", help="openai: reflector's server URL up to /v1 (default $OPENAI_BASE_URL)."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="openai: reflector: environment variable holding the API key."),
    no_reflection: bool = typer.Option(False, "--no-reflection", help="Train the plain policy without a reflector (the baseline)."),
    out: Path = typer.Option(..., "--out", help="Run folder (metrics, checkpoints, final adapter)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out (final policy, checkpoints, metrics) with a new one."),
    max_concurrent: int = typer.Option(16, "--max-concurrent", min=1, help="Episodes stepped in lockstep."),
    env_option: list[str] = typer.Option([], "--env-option", help="KEY=VALUE passed to the environment (repeatable)."),
    eval_env_option: list[str] = typer.Option([], "--eval-env-option", help="KEY=VALUE overriding --env-option for validation, e.g. split=test."),
    report_to: str = report_to_option(),
    *,
    rl_settings: dict[str, Any],
    players_settings: dict[str, Any],
    run: RunOptions,
) -> None:
    """Train the policy online with RL (REINFORCE, PPO or GRPO), the reflector frozen (or trained too: --train-reflector)."""
    try:
        _train(locals())
    except KeyboardInterrupt:
        typer.echo(f"\nInterrupted. Continue with the same command plus --resume (run folder {out}).", err=True)
        raise typer.Exit(130)



def _train(args: dict[str, Any]) -> None:
    from reflectrl.models.loading import ModelLoadError

    try:
        _run(args)
    except (ValueError, KeyError, OSError, ImportError) as err:  # bad settings, files, environments, prompts too long, no ray
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        fail(str(message))
    except typer.Exit:  # `fail` already said why (click's Exit is a RuntimeError)
        raise
    except ModelLoadError as err:  # nothing trained yet, so no checkpoint to point at
        fail(str(err))
    except RuntimeError as err:  # model loading, a reflector server, torch (e.g. out of memory)
        fail(f"{err}. The last complete checkpoint (if any) is kept; continue with --resume.")


def _run(args: dict[str, Any]) -> None:
    from reflectrl.models.served_spec import ServedSpec, is_served_spec
    from reflectrl.trainers.checkpoint import latest_checkpoint
    from reflectrl.trainers.recipe import build_rl_run
    from reflectrl.trainers.trackers import RunTrackers

    entry = lookup(args["env_name"])
    if args["no_reflection"] and args["reflector"] is not None:
        fail("choose either --reflector or --no-reflection, not both")
    if not args["no_reflection"] and args["reflector"] is None:
        fail("choose --reflector CKPT (Reflect-RL) or --no-reflection (the plain baseline)")
    config = RLConfig(**args["rl_settings"], env=entry.name)  # RLConfig checks the settings
    env_kwargs = parse_env_options(args["env_option"])
    eval_kwargs = {**env_kwargs, **parse_env_options(args["eval_env_option"])}
    resolve_levels(entry.env_class().levels, config)  # unknown levels fail before any model loads
    out = Path(args["out"])
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    settings = {
        "env": entry.name,
        "policy": args["policy"],
        # A served reflector is named by its model, not its address: a restarted server may listen on another port.
        "reflector": ServedSpec.parse(args["reflector"]).identity() if is_served_spec(args["reflector"]) else args["reflector"],
        **args["players_settings"],
        "bf16": args["run"].bf16,
        "env_options": env_kwargs,
        "eval_env_options": eval_kwargs,
        "config": config.to_dict(),
    }
    _check_run_folder(out, settings, args["resume"], latest_checkpoint(out) is not None, args["overwrite"])
    # Not a setting: where the metrics are shown does not change them, so a resume may report elsewhere.
    trackers = RunTrackers(report_to_names(args["report_to"]), out, out.absolute().name, settings)
    apply_threads(args["run"].threads)

    from reflectrl.trainers.data_parallel import launched_processes, make_accelerator

    # Under `accelerate launch` the processes share each update; the main one plays, shows and writes.
    accelerator = make_accelerator() if launched_processes() > 1 else None
    main = accelerator is None or accelerator.is_main_process
    device = str(accelerator.device) if accelerator is not None else args["run"].device
    bar = None if args["run"].quiet or not main else _Progress(config.iterations)
    run = build_rl_run(
        config, args["policy"], args["reflector"], run_dir=out, env_kwargs=env_kwargs, eval_env_kwargs=eval_kwargs,
        max_concurrent=args["max_concurrent"], log=bar.update if bar is not None else None, **args["players_settings"],
        device=device, bf16=args["run"].bf16, reflector_url=args["reflector_url"], reflector_api_key_env=args["api_key_env"],
        accelerator=accelerator, trackers=trackers,
    )
    try:
        _train_built(run.trainer, args, settings, config, out, bar)
    finally:
        run.close()


def _train_built(trainer, args: dict[str, Any], settings: dict[str, Any], config: RLConfig, out: Path, bar) -> None:
    if args["resume"]:
        done = trainer.resume()
        if bar is not None:
            bar.start_at(done)
        if trainer.is_main:
            typer.echo(f"Resuming {out} after iteration {done}." if done else f"No checkpoint in {out}: starting fresh.", err=True)
    if trainer.is_main:
        if args["overwrite"]:
            from reflectrl.trainers.checkpoint import CHECKPOINTS

            # Only now that the new run is built, so that a bad --policy costs the old run nothing. Old
            # checkpoints would be resumed into the new run, and an old final/ would outlive it if it is
            # killed; the metrics the trainer clears itself when it starts at iteration 0.
            for old in (out / CHECKPOINTS, out / FINAL):
                shutil.rmtree(old, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        # A kill while a resume rewrites it must not leave a torn file: the run could never be resumed again.
        atomic_write_json(out / RUN_FILE, settings)
    try:
        trainer.train()
    finally:
        if bar is not None:
            bar.close()
    trainer.save_final(out / FINAL)
    if not trainer.is_main:
        return
    last = next((r for r in reversed(trainer.history) if "val/success" in r), None)
    summary = f"Done: {trainer.iteration} iterations, policy saved to {out / FINAL}"
    if config.train_reflector:
        summary += f", reflector to {out / FINAL / TRAINED_REFLECTOR}"
    if trainer.stopped_by_time_limit:
        summary += f" (stopped by the time limit of {config.max_minutes} min)"
    if last is not None:
        summary += f"; validation success {last['val/success']:.0%} at iteration {last['iteration']}"
    typer.echo(summary + ".")


def parse_env_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings as environment keywords; VALUE is read as JSON when it parses (numbers, true, null), else as text."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"environment option {item!r} is not KEY=VALUE")
        if key in ("level", "max_actions", "horizon"):
            raise ValueError(f"set {key} with its own option, not --env-option")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _check_run_folder(out: Path, settings: dict[str, Any], resume: bool, has_checkpoint: bool, overwrite: bool) -> None:
    """Refuse to mix or lose runs: a folder with checkpoints needs --resume, --resume needs the same settings,
    and a finished run with nothing to resume from is only replaced with --overwrite."""
    saved_path = out / RUN_FILE
    if overwrite:
        if resume:
            fail("choose either --resume (continue the run in --out) or --overwrite (replace it), not both")
        return
    if has_checkpoint and not resume:
        fail(f"{out} already holds a run; add --resume to continue it, --overwrite to replace it, or choose another --out")
    if not has_checkpoint and (out / FINAL).exists():
        # Even with --resume: without a checkpoint the run would start afresh over the finished one.
        fail(f"{out} holds a finished run with no checkpoint to continue from; add --overwrite to replace it or choose another --out")
    if resume and saved_path.is_file():
        try:
            saved = read_saved(saved_path)
        except ConfigMismatch as err:
            fail(str(err))
        if saved is None:
            fail(f"{saved_path} is not valid JSON")
        changed = changed_settings(saved, settings, resumable=("config",))
        # Through RLConfig, as the checkpoint check does: a setting added after the run was
        # saved takes its default instead of reading as a change.
        try:
            saved_config = RLConfig.from_dict(saved.get("config", {})).to_dict()
        except (TypeError, ValueError) as err:
            fail(f"{saved_path} holds settings this version cannot read ({err}); use a new --out")
        changed += changed_settings(saved_config, settings["config"], RLConfig.RESUMABLE)
        if changed:
            fail(f"--resume with different settings than the run in {out}: {', '.join(changed)}")


class _Progress:
    """A tqdm bar showing success, return and loss per iteration."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="iter", dynamic_ncols=True)

    def start_at(self, done: int) -> None:
        self.bar.n = done
        self.bar.refresh()

    def update(self, record: dict[str, Any]) -> None:
        shown = {
            "success": f"{record['train/success']:.0%}" if "train/success" in record else None,
            "return": f"{record['train/return']:.2f}" if "train/return" in record else None,
            "loss": f"{record['loss/total']:.3f}" if "loss/total" in record else None,
            "val": f"{record['val/success']:.0%}" if "val/success" in record else None,
            "level": record.get("level"),
        }
        self.bar.set_postfix({k: v for k, v in shown.items() if v is not None}, refresh=False)
        if "train/success" in record:
            self.bar.update(1)
        else:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
