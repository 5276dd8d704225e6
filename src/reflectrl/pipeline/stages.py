"""Resumable stages of a pipeline run.

Each stage writes into its own folder under the run folder and is marked done
by a `DONE.json` written last, atomically. A re-run skips stages that are
done; a stage that was killed is simply run again, and it resumes from its own
checkpoints (data generation, SFT and RL all resume). The run folder remembers
the configuration it was made with, so a re-run with a different one cannot
silently mix results. The comparison is by meaning: a setting that a folder
made by an older version lacks counts as its default (`StageRunner`'s
`defaults`), and a refusal names the settings that differ.
"""

from __future__ import annotations

import datetime
import gc
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectrl.pipeline.console import StageLines
from reflectrl.run_settings import ConfigMismatch, as_saved, read_saved
from reflectrl.storage import atomic_write_json

DONE = "DONE.json"
CONFIG = "pipeline.json"

__all__ = ["CONFIG", "DONE", "ConfigMismatch", "Stage", "StageRunner"]


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline."""

    name: str
    """Folder name under the run folder, and the name shown in logs."""
    run: Callable[[Path], dict[str, Any] | None]
    """Does the work in the given folder; may return a summary kept in DONE.json."""
    needs: tuple[str, ...] = ()
    """Stages whose results this one reads: it starts after they are done."""
    shares: str | None = None
    """A file this stage reads and appends to that other stages use too (an evaluation reflection cache): stages
    that share one never run at the same time."""


class StageRunner:
    """Runs stages in order, skipping those already done.

    `defaults` mirrors `config`'s nesting with the value each setting had before it was saved (see
    `changed_keys`); a folder that lacks a setting is compared as if it held that value. Each stage runs
    inside `lines.stage` and ends with one line of `lines` (default: printed with `log`): how long it took
    and what it reported (`StageLines.summary`).
    """

    def __init__(
        self, root: Path, config: dict[str, Any], log: Callable[[str], None] = print, defaults: Mapping[str, Any] | None = None,
        lines: StageLines | None = None,
    ):
        self.root = Path(root)
        self.lines = lines if lines is not None else StageLines(log)
        self.log = self.lines.say
        if self.root.exists() and not self.root.is_dir():
            raise ConfigMismatch(f"{self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        saved = self.root / CONFIG
        wanted = as_saved(config)
        if saved.exists():
            previous = read_saved(saved)
            if not isinstance(previous, dict):
                raise ConfigMismatch(f"{saved} cannot be read; use another --out folder (or delete it to start over)")
            changed = changed_keys(previous, wanted, as_saved(defaults or {}))
            if changed:
                raise ConfigMismatch(
                    f"{self.root} was made with a different configuration ({saved}): {', '.join(changed)} differ; "
                    "use another --out folder (or delete it to start over)"
                )
        else:
            atomic_write_json(saved, wanted)

    def done(self, name: str) -> dict[str, Any] | None:
        """The DONE record of a finished stage, or None."""
        return read_saved(self.root / name / DONE)

    def run(self, stage: Stage) -> dict[str, Any]:
        """Run `stage` unless it is done; returns its DONE record."""
        previous = self.done(stage.name)
        if previous is not None:
            self.log(f"[{stage.name}] already done ({previous['seconds']:.0f} s), skipped")
            return previous
        folder = self.root / stage.name
        resumed = folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        self.lines.detail(f"[{stage.name}] {'resuming (an earlier run stopped in this stage)' if resumed else 'running'}")
        start = time.perf_counter()
        try:
            with self.lines.stage(stage.name):
                summary = stage.run(folder) or {}
        except BaseException:
            self.lines.detail(f"[{stage.name}] stopped after {time.perf_counter() - start:.0f} s ({self.lines.summary() or 'no progress reported'})")
            raise
        finally:
            gc.collect()  # models of one stage should not stay in memory during the next
        import torch

        record = {
            "stage": stage.name,
            "seconds": time.perf_counter() - start,
            "resumed": resumed,
            # A stage run in a worker of `--parallel` has fewer threads than the invocation that reports it.
            "torch_threads": torch.get_num_threads(),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "summary": summary,
        }
        atomic_write_json(folder / DONE, record)
        progress = self.lines.summary()
        self.log(f"[{stage.name}] done in {_duration(record['seconds'])}{' (resumed)' if resumed else ''}{': ' + progress if progress else ''}")
        return record


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def changed_keys(saved: Mapping[str, Any], wanted: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between `saved` and `wanted`, sorted.

    A setting missing on either side takes its value from `defaults` (same nesting), so a field added after
    a folder was made is no difference where it keeps the behaviour the folder was made with; one with no
    default differs from any value.
    """
    changed = []
    for key in sorted(set(saved) | set(wanted)):
        default = defaults.get(key, _ABSENT)
        old, new = saved.get(key, default), wanted.get(key, default)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changed += changed_keys(old, new, default if isinstance(default, Mapping) else {}, f"{prefix}{key}.")
        elif old != new:
            changed.append(prefix + key)
    return changed


_ABSENT = object()
