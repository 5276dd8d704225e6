"""Refusing to continue work made with other settings: one rule for SFT, RL, gen-data and the pipeline.

Every resumable job (an SFT run, an RL run, a gen-data folder, a pipeline run
folder) saves its settings next to its results. Continuing it compares the
saved settings with the current ones, key by key, leaving out the settings
its config declares resumable (a class attribute ``RESUMABLE`` on the config:
a longer run, a time limit, thread counts); any other difference raises
`ConfigMismatch` naming the settings, because mixing two configurations in
one folder would give results that belong to neither.

Callers read the saved settings back through their config class first, so a
setting added after the folder was made takes its default instead of reading
as a change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class ConfigMismatch(ValueError):
    """A folder holds work made with other settings (the message names them and says what to do)."""


def changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any], resumable: Iterable[str] = ()) -> list[str]:
    """Names of the settings that differ between `saved` and `current`, except the `resumable` ones, sorted."""
    free = set(resumable)
    return sorted(k for k in set(saved) | set(current) if k not in free and saved.get(k) != current.get(k))


def as_saved(settings: Any) -> Any:
    """`settings` as they read back from a JSON file (tuples become lists), so the two compare equal."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def read_saved(path: str | Path) -> dict[str, Any] | None:
    """The settings object saved at `path`, or None when the file is missing or not JSON (a folder that cannot be trusted).

    JSON that is not an object raises `ConfigMismatch`: nothing here writes one, so the file was
    replaced from outside, and reading it as "nothing saved" or indexing it as settings would
    redo, mix or crash on the work beside it.
    """
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        raise ConfigMismatch(f"{path} holds JSON that is not an object of settings; move it away or use another folder")
    return saved
