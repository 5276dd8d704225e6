"""Command-line options made from the fields of a settings dataclass (`RLConfig`, `SFTConfig`).

Each setting is declared once, in its dataclass: its name, type, default and the docstring below it become
``--field-name``, its type, its default and its help, so a command cannot drift from the settings it builds.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

import typer

_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Flag:
    """What a field's option needs beyond ``--field-name``: more click declarations (names older commands
    and scripts use, e.g. ``--iters``), bounds the dataclass itself does not check, and for a bool the name of
    its off switch where ``--no-field-name`` would read badly (``--fixed-labels``)."""

    aliases: tuple[str, ...] = ()
    min: Optional[float] = None
    max: Optional[float] = None
    negative: Optional[str] = None


def field_docs(config_class: type) -> dict[str, str]:
    """Each field's attribute docstring (the string literal right below it), whitespace collapsed.

    Python drops such a string at run time and dataclasses keep no field docs, so they are read from the source.
    """
    docs: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):  # a subclass's docstring replaces its base's
        if dataclasses.is_dataclass(klass):
            docs.update(_class_field_docs(klass))
    return docs


def _class_field_docs(klass: type) -> dict[str, str]:
    body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
    return {
        statement.target.id: " ".join(following.value.value.split())
        for statement, following in zip(body, body[1:])
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
        and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        and isinstance(following.value.value, str)
    }


def config_parameters(
    config_class: type, *, exclude: tuple[str, ...] = (), flags: Optional[dict[str, Flag]] = None,
) -> list[inspect.Parameter]:
    """Keyword-only typer options, one per field of `config_class` not in `exclude`."""
    flags = flags or {}
    unknown = (set(exclude) | set(flags)) - {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise TypeError(f"{config_class.__name__} has no fields {sorted(unknown)}")
    kinds = typing.get_type_hints(config_class)
    docs = field_docs(config_class)
    return [
        _parameter(f, kinds[f.name], docs.get(f.name, ""), flags.get(f.name, Flag()))
        for f in dataclasses.fields(config_class) if f.name not in exclude
    ]


def with_config_options(
    config_class: type, *, into: str, exclude: tuple[str, ...] = (), flags: Optional[dict[str, Flag]] = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add an option per field of `config_class` (those in `exclude` the command sets itself) to a command, which
    gets their values as a dict in its keyword `into`, ready for ``config_class(**values, ...)``.

    typer reads a command's options from its signature, so the options are added to the signature
    (as `with_run_options` adds the shared ones).
    """
    added = config_parameters(config_class, exclude=exclude, flags=flags)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != into]
        clashes = {p.name for p in own} & {p.name for p in added}
        if into not in signature.parameters or clashes:
            raise TypeError(f"{command.__name__} needs a keyword {into!r} and no parameters named like fields: {sorted(clashes)}")

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {p.name: kwargs.pop(p.name) for p in added}
            return command(**kwargs, **{into: values})

        parameters = own + added
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def _parameter(field: dataclasses.Field, kind: Any, doc: str, flag: Flag) -> inspect.Parameter:
    name = "--" + field.name.replace("_", "-")
    base, optional = _without_none(kind)
    element = _tuple_element(base)
    default = _default(field)
    extra: dict[str, Any] = {"min": flag.min, "max": flag.max}
    if element is not None:
        annotation: Any = Optional[str]
        default = _tuple_text(default)
        extra = {"metavar": f"{element.__name__.upper()},...", "callback": _tuple_reader(element, name)}
    elif base in _SCALARS:
        annotation = Optional[base] if optional else base
        if base is bool:
            name = f"{name}/{flag.negative or '--no-' + name[2:]}"
    else:
        raise TypeError(f"field {field.name}: no option for type {kind}; exclude it and set it in the command")
    option = typer.Option(default, name, *flag.aliases, help=_help_text(doc), **extra)
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _without_none(kind: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None`` and ``Optional[X]``, else (kind, False)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [k for k in typing.get_args(kind) if k is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return kind, False


def _tuple_element(kind: Any) -> Optional[type]:
    """X of ``tuple[X, ...]`` (a scalar), else None."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
        return args[0]
    return None


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return ...  # typer's mark of a required option


def _tuple_text(default: Any) -> Optional[str]:
    """A tuple default as the option's text: comma-separated, None for an empty one (no default shown)."""
    if default is ...:
        return default
    return ",".join(str(item) for item in default) or None


def _tuple_reader(element: type, name: str) -> Callable[[Optional[str]], tuple]:
    """Parse a tuple option's comma-separated text while click parses the command line, so a bad item is
    reported as a bad value of that option."""

    def read(value: Optional[str]) -> tuple:
        items = [item.strip() for item in (value or "").split(",") if item.strip()]
        try:
            return tuple(element(item) for item in items)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a comma-separated list of {element.__name__} values", param_hint=name)

    return read


def _help_text(doc: str) -> str:
    """`doc` safe from typer's rich markup, which would swallow bracketed words such as ``reflectrl[ray]``."""
    try:
        from rich.markup import escape
    except ImportError:  # without rich typer prints help as written
        return doc
    return escape(doc)
