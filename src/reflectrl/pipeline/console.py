"""A pipeline's console: one line per stage, and the run folder's log file that keeps the rest.

Each stage reports how far it is with `StageLines.update` (steps, iterations or
episodes done of those planned, and its key metric: loss, training success,
success). On a terminal the running stage's line is drawn in place (rich): a bar,
done/planned, the rate, the time left and the metric. When the stage ends the
`StageRunner` writes the stage's one line: how long it took, how far it went,
the rate and the metric. The details (each RL iteration, SFT's logged losses)
go to the log file only, or to the console too with ``verbose``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
from rich.text import Text

LOG_FILE = "pipeline.log"
"""The run folder's log file: every console line, the details and third-party warnings (`reflectrl.run_log`)."""

_file_log = logging.getLogger(__name__)


class StageLines:
    """The console of a run's stages (see the module's docstring).

    `log` prints a console line; `verbose` also prints the details. Every line and detail is a record of
    this module's logger, which `reflectrl.run_log.run_log` writes to the run folder's log file. `live`:
    draw the running stage's line on `console` (default: stdout) when it is a terminal and not `verbose`
    (third-party bars would break into it).
    """

    def __init__(
        self, log: Callable[[str], None] = print, *, live: bool = False, verbose: bool = False, console: Console | None = None
    ):
        self._log = log
        self.verbose = verbose
        self.console = console if console is not None else Console()
        self.live = live and not verbose and self.console.is_terminal
        self._begin(None)

    def say(self, message: str) -> None:
        """A console line (also in the log file)."""
        self._log(message)
        _file_log.info(message)

    def note(self, message: str) -> None:
        """A line for the log file only (what the caller prints itself, such as the command and the verdict)."""
        _file_log.info(message)

    def detail(self, message: str) -> None:
        """A line for the log file (and the console when verbose)."""
        _file_log.info(message)
        if self.verbose:
            self._log(message)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """The block of one stage: `update` reports its progress, drawn live on a terminal."""
        self._begin(name)
        try:
            if not self.live:
                yield
                return
            columns = (TextColumn(f"[{name}]", markup=False), BarColumn(bar_width=24), _Status(self))
            with Progress(*columns, console=self.console, transient=True) as bar:
                self._bar, self._task = bar, bar.add_task(name, total=None)
                yield
        finally:
            self._bar = self._task = None

    def update(self, done: int, total: int | None, unit: str, metric: str | None = None) -> None:
        """The running stage has done `done` of `total` `unit` (plural, e.g. "steps"); `metric` replaces the shown one."""
        now = time.monotonic()
        if self._first is None or done < self._first[0]:
            self._first = (done, now)  # the rate counts from here: a resumed stage's earlier work is not this run's
        self.done, self.total, self.unit = done, total, unit
        if metric is not None:
            self.metric = metric
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def summary(self) -> str:
        """How far the stage went, its rate and its metric ("" before any `update`)."""
        return ", ".join(self._parts(time_left=False))

    def status(self) -> str:
        """The live line's text after the bar: done/planned, the rate, the time left and the metric."""
        return " · ".join(self._parts(time_left=True)) or "starting"

    def _parts(self, time_left: bool) -> list[str]:
        if self._first is None:
            return []
        parts = [f"{self.done}/{self.total if self.total is not None else '?'} {self.unit}"]
        rate = self._rate()
        if rate is not None:
            parts.append(_rate_text(rate, self.unit))
            if time_left and self.total is not None:
                parts.append(f"{_clock(max(0, self.total - self.done) / rate)} left")
        return parts + ([self.metric] if self.metric else [])

    def _begin(self, name: str | None) -> None:
        self.name = name
        self.done, self.total, self.unit, self.metric = 0, None, "", ""
        self._first: tuple[int, float] | None = None
        self._bar = self._task = None

    def _rate(self) -> float | None:
        if self._first is None:
            return None
        first_done, first_time = self._first
        elapsed = time.monotonic() - first_time
        return (self.done - first_done) / elapsed if self.done > first_done and elapsed > 0 else None


def _rate_text(rate: float, unit: str) -> str:
    # Slow stages (an RL iteration takes minutes) read better as time per unit.
    return f"{rate:.1f} {unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{unit.removesuffix('s')}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Status(ProgressColumn):
    """`StageLines.status`, redrawn with the line (the time left changes between updates)."""

    def __init__(self, lines: StageLines):
        super().__init__()
        self.lines = lines

    def render(self, task) -> Text:
        return Text(self.lines.status())
