"""`reflectrl eval`: evaluate any agent on a held-out split (registered in `cli.main`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer

from reflectrl.cli.config_options import Flag, with_config_options
from reflectrl.cli.errors import fail
from reflectrl.cli.options import RunOptions, apply_threads, with_run_options
from reflectrl.evaluation.agent_loader import AGENT_KINDS
from reflectrl.evaluation.harness import EvalConfig
from reflectrl.players.players_config import PlayersConfig

EVAL_FLAGS = {"horizon": Flag(min=1), "batch_size": Flag(min=1)}
"""Bounds `EvalConfig.check` leaves to the command line, where a bad value is a usage error."""
EVAL_OWN = ("env", "episodes", "env_kwargs")
"""`EvalConfig` fields with options of their own: ENV, --episodes (a count or 'all') and --env-option (KEY=VALUE)."""
TRAINED_PLAYERS = ("lora_r", "lora_alpha", "shuffle_labels", "label_after")
"""`PlayersConfig` fields eval leaves as they are: the policy it plays is trained already, and its checkpoint
records its menu layout (`load_agent` reads it)."""


@with_run_options
@with_config_options(PlayersConfig, into="players_settings", exclude=TRAINED_PLAYERS, flags={"reflection_tokens": Flag(min=1)})
@with_config_options(EvalConfig, into="eval_settings", exclude=EVAL_OWN, flags=EVAL_FLAGS)
def evaluate(
    env_name: str = typer.Argument(..., metavar="ENV", help="Environment name (see `reflectrl envs`)."),
    agent: str = typer.Option(..., "--agent", help=f"Agent kind: {', '.join(AGENT_KINDS)}."),
    model: Optional[str] = typer.Option(None, "--model", help="prompted: a local model spec, or the server's model name with --base-url."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url",
        help="OpenAI-compatible server (up to /v1) for a prompted model or an openai: reflector (which falls back to $OPENAI_BASE_URL).",
    ),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the server's API key."),
    policy: Optional[str] = typer.Option(None, "--policy", help="plain/reflect: policy adapter folder (SFT or RL output) or a base model spec."),
    reflector: Optional[str] = typer.Option(None, "--reflector", help="reflect: reflector adapter folder, the base spec, openai:MODEL, served:URL[#MODEL] (an inference server), or teacher:SPEC (the teacher itself, live: the policy's ceiling)."),
    episodes: Optional[str] = typer.Option(
        None, "--episodes",
        help="Episodes, or 'all': every task of a task split, or every start state where the environment lists them "
        "(taxi: 100 at dropoff, 300 at pickup and full); default 'all' where there are at most 1000, else 50 seeds.",
    ),
    constrained: bool = typer.Option(
        False, "--constrained",
        help="prompted, local model: pick the most likely menu label instead of parsing a free answer "
        "(label-restricted decoding; never an invalid action).",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for eval.json, eval.md and episodes.jsonl."),
    show: int = typer.Option(0, "--show", min=0, help="Print this many annotated episodes (state, reflection, action), failures first."),
    env_option: list[str] = typer.Option([], "--env-option", help="KEY=VALUE passed to the environment (repeatable)."),
    *,
    eval_settings: dict[str, Any],
    players_settings: dict[str, Any],
    run: RunOptions,
) -> None:
    """Evaluate an agent: success with a 95% interval, return, steps, invalid actions, per group."""
    from reflectrl.cli.train import parse_env_options
    from reflectrl.envs import lookup
    from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
    from reflectrl.evaluation.harness import annotate, plan_episodes
    from reflectrl.evaluation.harness import evaluate as run_evaluation

    try:
        entry = lookup(env_name)
        config = EvalConfig(
            env=entry.name, episodes=_episodes(episodes), env_kwargs=parse_env_options(env_option), **eval_settings,
        )
        if out is not None and out.exists() and not out.is_dir():
            fail(f"--out {out} exists and is not a folder")
        plan_episodes(config)  # a bad split or level fails before any model is loaded
        spec = AgentSpec(
            kind=agent, model=model, base_url=base_url, api_key_env=api_key_env, policy=policy, reflector=reflector,
            **players_settings, seed=config.seed, device=run.device, bf16=run.bf16, env=entry.name,
        )
        spec.check()
        apply_threads(run.threads)
        if constrained and (agent != "prompted" or base_url):
            fail("--constrained goes with --agent prompted and a local --model (a chat server only returns text)")
        loaded = load_agent(spec)
        if constrained:
            loaded = _label_restricted(loaded)
        try:
            result = run_evaluation(
                loaded.agent, config, max_actions=loaded.max_actions, description=loaded.description, progress=not run.quiet
            )
        finally:
            loaded.close()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail("interrupted; nothing was written", 130)
    except KeyError as err:
        fail(str(err.args[0]) if err.args else "unknown name")
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        # bad settings or files, a missing optional engine, model loading or a model server
        fail(str(err) or type(err).__name__)
    _print(result)
    if show:
        typer.echo("")
        typer.echo(annotate(result.episodes, show))
    if out is not None:
        try:
            result.write(out)
        except OSError as err:
            fail(f"cannot write the results to {out}: {err}")
        typer.echo(f"Results written to {out} (step by step in a browser: reflectrl view {out})")


def _episodes(value: str | None) -> int | str | None:
    """--episodes as `EvalConfig.episodes` wants it: a positive count, "all" or None."""
    from reflectrl.evaluation.harness import ALL

    if value is None or value == ALL:
        return value
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        fail(f"--episodes must be a positive number or {ALL!r}, not {value!r}")
    return count


def _label_restricted(loaded):
    """The same prompted model, deciding by label-restricted decoding (`PromptedAgent(constrained=True)`)."""
    from reflectrl.evaluation.prompted_agent import PromptedAgent

    free = loaded.agent
    agent = PromptedAgent(
        free.model, free.tokenizer, answer_tokens=free.answer_tokens, shuffle_labels=free.shuffle_labels,
        max_prompt_tokens=free.max_prompt_tokens, chat=free.chat, constrained=True,
    )
    return replace(loaded, agent=agent, max_actions=len(agent.label_set), description=f"{loaded.description}, label-restricted")


def _print(result) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from reflectrl.evaluation.tables import interval, pct

    console = Console()
    if not console.is_terminal:
        console = Console(width=110)  # a log file has no width; 80 columns would squeeze the table
    table = Table(title=Text(f"{result.config.env}: {result.plan}"))
    for column in ("agent", "success", "95% interval", "episodes", "return", "steps", "invalid"):
        table.add_column(column, justify="left" if column == "agent" else "right", no_wrap=column != "agent")
    rows = [(result.agent, result.summary)]
    rows += [(f"  {key}", group) for key, group in result.summary.get("groups", {}).items()]
    for label, s in rows:
        cells = (
            label, pct(s["success"]), interval(s), str(s["episodes"]),
            f"{s['mean_return']:+.2f}", f"{s['mean_steps']:.1f}", pct(s["invalid_rate"]),
        )
        table.add_row(*(Text(c) for c in cells))  # Text: brackets and paths are not rich markup
    console.print(table)
    diagnostics = result.diagnostics
    if diagnostics:
        from reflectrl.evaluation.reflection_diagnostics import DIAGNOSTIC_COLUMNS

        shown = ", ".join(f"{title} {'-' if diagnostics[key] is None else pct(diagnostics[key])}" for key, title in DIAGNOSTIC_COLUMNS)
        console.print(Text(f"Reflections over {diagnostics['steps']} judged steps: {shown}"))
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items() if v >= 0.05)
    console.print(f"{result.seconds:.1f} s" + (f" ({timing})" if timing else ""), highlight=False)
