"""A run's third-party output: progress bars and known warnings off the console, everything in its log file.

The libraries a run uses draw progress bars of their own (transformers loading
weights, datasets reading a JSON-lines file, the GGUF conversion) and repeat
harmless messages at every stage (`KNOWN_MESSAGES`); between them a run's own
lines are hard to find. `run_log` turns them off on the console for a block,
unless asked to be verbose, and copies every warning and library log record of
the block, and reflectrl's own log records, into a log file when given one: what
the console leaves out stays on record.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

KNOWN_MESSAGES: tuple[str, ...] = (
    # peft reads this deprecated transformers property each time it wraps a model (every SFT stage and RL run);
    # the call is peft's, not ours, and nothing changes for us until transformers 6.
    "`is_gradient_checkpointing` is deprecated",
    # transformers' checkpoint rotation on a file system with coarse modification times; it then orders the
    # checkpoints by step number, which is what a run wants.
    "mtime may not be reliable on this filesystem",
)
"""Parts of warnings and library log messages that are kept off the console (they still go to the log file)."""
LIBRARIES = ("transformers", "datasets", "huggingface_hub", "peft", "accelerate")
"""Loggers of the libraries whose console handlers `run_log` filters (some of them do not propagate to the root)."""
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _KnownMessages(logging.Filter):
    """Drops the records that contain one of `KNOWN_MESSAGES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(known in text for known in KNOWN_MESSAGES)


class _Trimmed(logging.Formatter):
    """A captured warning ends with a newline of its own; the handler adds one more, an empty line."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).rstrip("\n")


class _WarningConsole(logging.StreamHandler):
    """Prints a captured warning on stderr as Python does."""

    def __init__(self):
        super().__init__()
        self.setFormatter(_Trimmed("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # The stderr of the moment: a live progress display replaces it to print above itself.
        self.stream = sys.stderr
        super().emit(record)


@contextmanager
def run_log(log_file: Path | None = None, verbose: bool = False) -> Iterator[None]:
    """For the block: third-party progress bars off and `KNOWN_MESSAGES` off the console (both left on with
    `verbose`); with `log_file` (its folder made by then), every warning, every record of `LIBRARIES` and
    reflectrl's own records (from INFO up) appended to that file.

    Warnings go through `logging` for the block (`logging.captureWarnings`), printed on stderr as Python
    prints them. Everything changed is restored at the end, so blocks nest (a multi-seed run and each seed's run).
    """
    import datasets
    from transformers.utils import logging as hf_logging

    with ExitStack() as stack:
        if not verbose:
            if hf_logging.is_progress_bar_enabled():  # also turns off huggingface_hub's
                hf_logging.disable_progress_bar()
                stack.callback(hf_logging.enable_progress_bar)
            if not datasets.are_progress_bars_disabled():
                datasets.disable_progress_bars()
                stack.callback(datasets.enable_progress_bars)
        hf_logging.get_logger()  # transformers sets its loggers up on first use; done now, so that they get the filter

        # catch_warnings restores how warnings were shown (and their filters) at the end; captureWarnings(False)
        # first clears logging's own note of the capture, without which the next block's capture would do nothing.
        stack.enter_context(warnings.catch_warnings())
        logging.captureWarnings(True)
        stack.callback(logging.captureWarnings, False)
        warning_log = logging.getLogger("py.warnings")
        # An enclosing block's console handler already prints them (one per block would print each twice).
        if not any(isinstance(h, _WarningConsole) for h in warning_log.handlers):
            _add_handler(stack, warning_log, _WarningConsole())
        # Warnings go to the console and the log files of this logger's own handlers, not also to whatever
        # handlers the root logger has.
        stack.callback(setattr, warning_log, "propagate", warning_log.propagate)
        warning_log.propagate = False
        if not verbose:
            known = _KnownMessages()
            consoles = [
                h for name in ("py.warnings",) + LIBRARIES for h in logging.getLogger(name).handlers
                if not isinstance(h, logging.FileHandler)  # an enclosing block's log file keeps everything
            ]
            for handler in consoles:
                handler.addFilter(known)
                stack.callback(handler.removeFilter, known)

        if log_file is not None:
            # Opened at its first record: a run that is refused before it writes anything (its folder
            # is a file, say) leaves no log behind.
            to_file = logging.FileHandler(log_file, encoding="utf-8", delay=True)
            to_file.setFormatter(_Trimmed(FILE_FORMAT))
            stack.callback(to_file.close)
            own = logging.getLogger("reflectrl")
            stack.callback(own.setLevel, own.level)
            if own.getEffectiveLevel() > logging.INFO:
                own.setLevel(logging.INFO)
            for logger in [logging.getLogger(), warning_log] + [logging.getLogger(name) for name in LIBRARIES]:
                # The root gets the records of loggers that propagate; the others need the handler themselves.
                if logger is logging.getLogger() or not logger.propagate:
                    _add_handler(stack, logger, to_file)
        yield


def _add_handler(stack: ExitStack, logger: logging.Logger, handler: logging.Handler) -> None:
    logger.addHandler(handler)
    stack.callback(logger.removeHandler, handler)
