"""Entry point of the `reflectrl` command: each command lives in its own module and is registered here."""

from __future__ import annotations

import typer

from reflectrl.cli.alfworld import app as alfworld_app
from reflectrl.cli.autoexplore import app as autoexplore_app
from reflectrl.cli.baselines import baselines
from reflectrl.cli.data import gen_data, reflect_data, sft
from reflectrl.cli.errors import fail
from reflectrl.cli.evaluate import evaluate
from reflectrl.cli.export import export
from reflectrl.cli.pipeline import pipeline
from reflectrl.cli.play import play
from reflectrl.cli.plot import plot
from reflectrl.cli.serve import serve_reflector
from reflectrl.cli.train import train
from reflectrl.cli.view import view
from reflectrl.envs import environments

app = typer.Typer(
    name="reflectrl",
    help="Reflect-RL: train language-model agents in text environments with a reflector and online RL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command("envs")
def list_envs() -> None:
    """List the environments, their gymnasium ids and curriculum levels."""
    try:
        registered = environments()
    except ImportError as err:
        fail(str(err))
    for entry in registered.values():
        levels = ", ".join(entry.env_class().levels)
        typer.echo(f"{entry.name:12s} {entry.gym_id:28s} levels: {levels}")
        typer.echo(f"{'':12s} {entry.summary}")


app.command("play")(play)
app.command("baselines")(baselines)
app.command("train")(train)
app.command("gen-data")(gen_data)
app.command("reflect-data")(reflect_data)
app.command("sft")(sft)
app.command("eval")(evaluate)
app.command("plot")(plot)
app.command("view")(view)
app.command("pipeline")(pipeline)
app.command("export")(export)
app.command("serve-reflector")(serve_reflector)
app.add_typer(autoexplore_app, name="autoexplore")
app.add_typer(alfworld_app, name="alfworld")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
