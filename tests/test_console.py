"""A run's console: one live line per stage, third-party bars and known warnings kept off it, all of it in the log file."""

from __future__ import annotations

import io
import logging
import re
import warnings

import pytest
from rich.console import Console

from reflectrl.pipeline.console import StageLines
from reflectrl.pipeline.stages import Stage, StageRunner
from reflectrl.run_log import KNOWN_MESSAGES, run_log

KNOWN = "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` instead."
"""The FutureWarning that peft's use of transformers raised at every SFT stage."""


def _seconds_out(printed: list[str]) -> list[str]:
    """The lines with their stage's wall time (not the patched clock's) as N."""
    return [re.sub(r"done in \d+ s", "done in N s", line) for line in printed]


def _terminal() -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=120), screen


def test_a_stage_draws_one_live_line_and_ends_as_one_logged_line(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("reflectrl.pipeline.console.time.monotonic", lambda: clock[0])
    console, screen = _terminal()
    printed: list[str] = []
    lines = StageLines(printed.append, live=True, console=console)
    assert lines.live

    def work(folder):
        lines.update(0, 40, "steps")
        clock[0] += 10
        lines.update(10, 40, "steps", "loss 1.234")
        assert lines.status() == "10/40 steps · 1.0 steps/s · 0:30 left · loss 1.234"
        clock[0] += 290
        lines.update(40, 40, "steps", "loss 0.500")

    StageRunner(tmp_path / "run", {}, lines=lines).run(Stage("sft-policy", work))
    assert _seconds_out(printed) == ["[sft-policy] done in N s: 40/40 steps, 7.5 s/step, loss 0.500"]
    assert "[sft-policy]" in screen.getvalue()  # drawn on the terminal, then cleared (transient)
    # An RL iteration of minutes reads as time per iteration; a stage that reports nothing still gets its line.
    with lines.stage("rl-plain"):
        assert lines.status() == "starting"
        lines.update(1, 4, "iterations", "training success 50%")
        clock[0] += 150
        lines.update(2, 4, "iterations")
        assert lines.status() == "2/4 iterations · 150.0 s/iteration · 5:00 left · training success 50%"
    StageRunner(tmp_path / "run", {}, lines=lines).run(Stage("quiet", lambda folder: None))
    assert _seconds_out(printed)[-1] == "[quiet] done in N s"


def test_no_live_line_off_a_terminal_or_when_verbose(tmp_path):
    screen = io.StringIO()
    assert not StageLines(live=True, console=Console(file=screen)).live  # a pipe or a file
    console, _ = _terminal()
    assert not StageLines(live=True, verbose=True, console=console).live  # the libraries' bars would break into it
    printed: list[str] = []
    lines = StageLines(printed.append, live=True, console=Console(file=screen))
    StageRunner(tmp_path / "run", {}, lines=lines).run(Stage("data", lambda folder: lines.update(6, 6, "episodes", "198 rows")))
    assert screen.getvalue() == "" and _seconds_out(printed) == ["[data] done in N s: 6/6 episodes, 198 rows"]


def test_details_go_to_the_log_file_and_to_the_console_only_when_verbose(tmp_path):
    printed: list[str] = []
    with run_log(tmp_path / "run.log"):
        StageLines(printed.append).detail("[rl-plain] iteration 1/3: training success 0%")
        StageLines(printed.append).say("[rl-plain] done in 5 s")
        StageLines(printed.append, verbose=True).detail("[rl-plain] iteration 2/3: training success 50%")
    assert printed == ["[rl-plain] done in 5 s", "[rl-plain] iteration 2/3: training success 50%"]
    log = (tmp_path / "run.log").read_text()
    assert "iteration 1/3" in log and "done in 5 s" in log and "iteration 2/3" in log


def test_library_bars_and_known_warnings_stay_off_the_console_but_reach_the_log_file(tmp_path, capfd):
    import datasets
    from transformers.utils import logging as hf_logging

    assert any(known in KNOWN for known in KNOWN_MESSAGES)
    log_file = tmp_path / "run.log"
    library_console = io.StringIO()  # stands for transformers' own stderr handler
    handler = logging.StreamHandler(library_console)
    hf_logging.get_logger().addHandler(handler)
    try:
        with pytest.warns(UserWarning):  # pytest's own recording is back after the block
            with run_log(log_file):
                assert not hf_logging.is_progress_bar_enabled() and datasets.are_progress_bars_disabled()
                warnings.warn(KNOWN, FutureWarning)
                warnings.warn("something new and worth seeing", UserWarning)
                trainer_log = hf_logging.get_logger("transformers.trainer_utils")
                trainer_log.warning("mtime may not be reliable on this filesystem, falling back to numerical ordering")
                trainer_log.warning("a library warning worth seeing")
            assert hf_logging.is_progress_bar_enabled() and not datasets.are_progress_bars_disabled()
            warnings.warn("recorded by pytest again", UserWarning)
    finally:
        hf_logging.get_logger().removeHandler(handler)
    err = capfd.readouterr().err
    assert "something new and worth seeing" in err and "is_gradient_checkpointing" not in err
    assert "a library warning worth seeing" in library_console.getvalue() and "mtime" not in library_console.getvalue()
    log = log_file.read_text()
    assert "FutureWarning: `is_gradient_checkpointing`" in log and "something new" in log and "mtime may not be reliable" in log
    assert "\n\n" not in log  # a warning's own trailing newline adds no empty line


def test_verbose_keeps_the_library_output_and_nested_blocks_print_a_warning_once(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    handlers = {name: list(logging.getLogger(name).handlers) for name in ("", "py.warnings", "transformers", "reflectrl")}
    with run_log(tmp_path / "outer.log"):
        with run_log(tmp_path / "inner.log", verbose=True):
            assert not hf_logging.is_progress_bar_enabled()  # the outer block's choice stands
            warnings.warn("printed once", UserWarning)
        with run_log(verbose=True):
            pass
    with run_log(verbose=True):
        assert hf_logging.is_progress_bar_enabled()
        warnings.warn(KNOWN, FutureWarning)
    err = capfd.readouterr().err
    assert err.count("UserWarning: printed once") == 1 and "is_gradient_checkpointing" in err
    assert "printed once" in (tmp_path / "outer.log").read_text() and "printed once" in (tmp_path / "inner.log").read_text()
    assert {name: list(logging.getLogger(name).handlers) for name in handlers} == handlers  # all removed
