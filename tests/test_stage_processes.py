"""`run_stages_in_processes`: stages start when what they read is done, never two on one shared file, at most N at once,
and a failure stops new starts without cutting the running stages short."""

from __future__ import annotations

import pytest
from stage_workers import interval, timed_stage

from reflectrl.pipeline.stage_processes import run_stages_in_processes
from reflectrl.pipeline.stages import Stage


def _stage(name: str, needs: tuple[str, ...] = (), shares: str | None = None) -> Stage:
    return Stage(name, lambda folder: None, needs, shares)


def test_stages_wait_for_what_they_read_and_never_share_a_file_at_once(tmp_path):
    stages = [_stage("sft-reflector"), _stage("sft-policy"), _stage("rl", ("sft-reflector", "sft-policy")),
              _stage("eval-a", ("sft-reflector",), shares="cache"), _stage("eval-b", ("sft-reflector",), shares="cache"),
              _stage("done-before", ("data",))]
    jobs = {s.name: (str(tmp_path), s.name, 0.4, False) for s in stages}
    messages: list[str] = []
    run_stages_in_processes(stages, {"data"}, 2, timed_stage, jobs, messages.append)
    spans = {s.name: interval(tmp_path, s.name) for s in stages}
    assert spans["rl"][0] >= max(spans["sft-reflector"][1], spans["sft-policy"][1])
    assert spans["eval-a"][0] >= spans["sft-reflector"][1] and spans["eval-b"][0] >= spans["sft-reflector"][1]
    first, second = sorted([spans["eval-a"], spans["eval-b"]])
    assert second[0] >= first[1]  # one reflection cache: one after the other
    for start, _ in spans.values():  # never more than two at once
        assert sum(begin <= start < end for begin, end in spans.values()) <= 2
    assert messages == []


def test_finished_stages_are_not_run_again(tmp_path):
    stages = [_stage("data"), _stage("sft", ("data",))]
    run_stages_in_processes(stages, {"data"}, 2, timed_stage, {s.name: (str(tmp_path), s.name, 0.0, False) for s in stages}, print)
    assert not (tmp_path / "data.start").exists() and (tmp_path / "sft.end").exists()


def test_a_failed_stage_lets_the_running_ones_finish_and_starts_nothing_else(tmp_path):
    stages = [_stage("breaks"), _stage("long"), _stage("after", ("breaks",)), _stage("other")]
    seconds = {"breaks": 0.2, "long": 2.0, "after": 0.0, "other": 0.0}
    jobs = {s.name: (str(tmp_path), s.name, seconds[s.name], s.name == "breaks") for s in stages}
    messages: list[str] = []
    with pytest.raises(RuntimeError, match="stage breaks failed: breaks broke"):
        run_stages_in_processes(stages, set(), 2, timed_stage, jobs, messages.append)
    assert (tmp_path / "long.end").exists()  # the running stage finished its work
    assert not (tmp_path / "after.start").exists() and not (tmp_path / "other.start").exists()
    assert len(messages) == 1 and messages[0].startswith("[breaks] failed") and "waiting for long" in messages[0]


def test_a_stage_that_needs_a_stage_the_run_does_not_make_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="'rl' needs sft-policy"):
        run_stages_in_processes([_stage("rl", ("sft-policy",))], set(), 2, timed_stage, {}, print)
