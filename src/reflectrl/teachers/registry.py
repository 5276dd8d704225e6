"""Build a teacher from its command-line spec: ``oracle``, ``oracle:STYLE``, ``openai:MODEL`` or ``hf:PATH``."""

from __future__ import annotations

import os
from pathlib import Path

from reflectrl.teachers.base import Teacher
from reflectrl.teachers.cache import CachedTeacher, TeacherCache
from reflectrl.teachers.oracle import ORACLE_STYLES

DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "OPENAI_BASE_URL"


class TeacherSpecError(ValueError):
    """A teacher spec that names no known teacher."""


def parse_teacher_spec(spec: str) -> tuple[str, str]:
    """('oracle', STYLE), ('openai', MODEL) or ('hf', PATH); `TeacherSpecError` for anything else."""
    spec = (spec or "").strip()
    if spec == "oracle":
        return "oracle", ""
    kind, _, rest = spec.partition(":")
    if kind == "oracle" and rest.strip() in ORACLE_STYLES:
        return kind, rest.strip()
    if kind in ("openai", "hf") and rest.strip():
        return kind, rest.strip()
    styles = ", ".join(f"'oracle:{style}'" for style in ORACLE_STYLES if style != "full")
    raise TeacherSpecError(f"unknown teacher {spec!r}: use 'oracle', {styles}, 'openai:MODEL' or 'hf:PATH'")


def make_teacher(
    spec: str,
    *,
    seed: int = 0,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 60.0,
    concurrency: int = 4,
) -> Teacher:
    """The teacher for `spec` (uncached; see `cached_teacher`).

    `base_url` is for ``openai:``; default ``$OPENAI_BASE_URL`` or the OpenAI API.
    """
    kind, rest = parse_teacher_spec(spec)
    if kind == "oracle":
        from reflectrl.teachers.oracle import OracleTeacher

        return OracleTeacher(seed=seed, style=rest or "full")
    if kind == "openai":
        from reflectrl.models.openai_backend import OpenAIChatClient
        from reflectrl.teachers.openai_teacher import OpenAITeacher

        url = base_url or os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_OPENAI_URL
        return OpenAITeacher(OpenAIChatClient(url, rest, api_key_env=api_key_env, timeout=timeout, concurrency=concurrency))
    from reflectrl.teachers.local_teacher import LocalModelTeacher

    return LocalModelTeacher(rest)


def cached_teacher(teacher: Teacher, cache_path: str | os.PathLike) -> CachedTeacher:
    """`teacher` behind the on-disk answer cache at `cache_path`."""
    return CachedTeacher(teacher, TeacherCache(Path(cache_path)))
