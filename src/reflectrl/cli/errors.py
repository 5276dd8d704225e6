"""How commands report a user's mistake: one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

from typing import NoReturn

import typer

from reflectrl.envs import EnvEntry, lookup

USAGE_ERROR = 2
"""Exit status of a command given a bad name, option or file."""


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``Error: message`` on stderr and end the command with `code`."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def env_entry(name: str) -> EnvEntry:
    """The registered environment called `name` (short name or gymnasium id); an unknown name fails the command."""
    try:
        return lookup(name)
    except KeyError as err:
        fail(err.args[0])
    except ImportError as err:  # a module of $REFLECTRL_ENVS that does not import
        fail(str(err))
