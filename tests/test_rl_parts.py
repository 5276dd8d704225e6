"""Replay buffer, curriculum, atomic checkpoints, the corridor environment and the local rollout engine."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import reflectrl  # noqa: F401  (registers the environments)
from reflectrl.envs import make_env
from reflectrl.envs.base import run_policy
from reflectrl.envs.corridor import CorridorEnv
from reflectrl.evaluation import evaluate_scripted
from reflectrl.rollout import Episode, EpisodeRequest, LocalRolloutEngine, Step
from reflectrl.trainers.checkpoint import (
    capture_rng_state,
    checkpoint_iteration,
    latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
    verify_checkpoint,
)
from reflectrl.trainers.curriculum import Curriculum
from reflectrl.trainers.replay import ReplayBuffer


def _episode(seed, success, steps=2, level="short"):
    step = Step([1, 2, 3], [7, 8], 1, -0.5, 0.6, None, 1.0, False, "k")
    return Episode(seed, level, 0, [step] * steps, success=success)


# ------------------------------------------------------------------ replay
def test_replay_keeps_only_successes_fifo_and_round_trips():
    buffer = ReplayBuffer(capacity=3)
    assert buffer.add([_episode(i, success=i % 2 == 0) for i in range(10)]) == 5
    assert [e.seed for e in buffer.episodes] == [4, 6, 8]
    rng = np.random.default_rng(0)
    sample = buffer.sample(2, rng)
    assert len(sample) == 2 and len({e.seed for e in sample}) == 2
    assert len(buffer.sample(10, rng)) == 3
    restored = ReplayBuffer(capacity=3)
    restored.load_state_dict(json.loads(json.dumps(buffer.state_dict())))
    assert [e.to_dict() for e in restored.episodes] == [e.to_dict() for e in buffer.episodes]
    buffer.clear()
    assert len(buffer) == 0 and buffer.sample(2, rng) == []
    with pytest.raises(ValueError):
        ReplayBuffer(capacity=4).load_state_dict(restored.state_dict())
    assert ReplayBuffer(capacity=0).add([_episode(0, True)]) == 0


# -------------------------------------------------------------- curriculum
def test_curriculum_schedule_and_threshold():
    by_schedule = Curriculum(["a", "b", "c"], schedule=[2, 5])
    moves = [by_schedule.advance(i) for i in range(1, 8)]
    assert moves == [False, True, False, False, True, False, False]
    assert by_schedule.level == "c" and by_schedule.switches == [(0, "a"), (2, "b"), (5, "c")]

    by_threshold = Curriculum(["a", "b"], threshold=0.8)
    assert not by_threshold.advance(1, validation_success=0.5)
    assert not by_threshold.advance(2)
    assert by_threshold.advance(3, validation_success=0.85)
    assert not by_threshold.advance(4, validation_success=1.0)  # last level is never left
    copy = Curriculum(["a", "b"], threshold=0.8)
    copy.load_state_dict(json.loads(json.dumps(by_threshold.state_dict())))
    assert copy.level == "b" and copy.switches == by_threshold.switches


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": []},
        {"levels": ["a", "a"]},
        {"levels": ["a", "b"], "schedule": [3, 2]},
        {"levels": ["a"], "schedule": [1]},
        {"levels": ["a", "b"], "threshold": 1.5},
    ],
)
def test_curriculum_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        Curriculum(**kwargs)


# ------------------------------------------------------------- checkpoints
def _write(payload):
    def write(folder):
        (folder / "state.json").write_text(json.dumps(payload))
        (folder / "sub").mkdir()
        (folder / "sub" / "weights.bin").write_bytes(os.urandom(1000))

    return write


def test_checkpoints_are_complete_pruned_and_verified(tmp_path):
    for it in (1, 2, 3):
        save_checkpoint(tmp_path, it, _write({"it": it}), keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["iter-000002", "iter-000003"]
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "iter-000003" and checkpoint_iteration(latest) == 3
    # damage the newest: the previous complete one is used
    (latest / "sub" / "weights.bin").write_bytes(b"broken")
    assert not verify_checkpoint(latest)
    assert latest_checkpoint(tmp_path).name == "iter-000002"
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_a_failure_while_writing_leaves_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 1, _write({"it": 1}))

    def crash(folder):
        (folder / "half.json").write_text("{")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, crash)
    assert latest_checkpoint(tmp_path).name == "iter-000001"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["iter-000001"]
    # re-saving an existing iteration replaces it atomically
    save_checkpoint(tmp_path, 1, _write({"it": "again"}))
    assert json.loads((latest_checkpoint(tmp_path) / "state.json").read_text()) == {"it": "again"}


def test_a_kill_mid_write_never_leaves_a_broken_checkpoint(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, pathlib
        from reflectrl.trainers.checkpoint import save_checkpoint
        def write(folder):
            for i in range(40):
                (folder / f"part{{i}}.bin").write_bytes(os.urandom(200_000))
        it = 0
        while True:
            it += 1
            save_checkpoint(pathlib.Path({str(tmp_path)!r}), it, write, keep=2)
            print(it, flush=True)
        """
    )
    for delay in (0.8, 1.3):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one checkpoint is complete
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        latest = latest_checkpoint(tmp_path)
        assert latest is not None and verify_checkpoint(latest)
        assert all(verify_checkpoint(p) for p in (tmp_path / "checkpoints").glob("iter-*"))


def test_rng_state_round_trips_through_json():
    state = json.loads(json.dumps(capture_rng_state()))
    expected = (torch.rand(3), np.random.rand(2), __import__("random").random())
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(2), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


# ---------------------------------------------------------------- corridor
@pytest.mark.parametrize("level", CorridorEnv.levels)
def test_corridor_passes_gymnasium_checks(level):
    check_env(gymnasium.make("reflectrl/Corridor-v0", level=level).unwrapped, skip_render_check=True)


def test_corridor_rules_oracle_and_chance():
    env = make_env("corridor", level="medium")
    _, info = env.reset(seed=0)
    assert info["actions"] == ["wait", "walk forward", "walk back", "open the side door"]
    assert env.horizon == 6
    _, reward, terminated, _, info = env.step("walk back")
    assert (reward, terminated, info["position"]) == (-0.05, False, 0)
    assert env.step("walk forward")[1] == 0.1
    assert env.step("walk back")[1] == -0.1
    env.step("walk forward")
    _, reward, terminated, _, info = env.step("open the side door")
    assert terminated and reward == -1.0 and not info["success"]
    total, success, steps = run_policy(env, lambda e, i: e.oracle_index(), seed=3)
    assert success and steps == 3 and total == pytest.approx(1.0 + 0.2)
    for level, chance in (("short", 0.14), ("medium", 0.053), ("long", 0.008)):
        assert evaluate_scripted("corridor", "oracle", 20, level=level).success_rate == 1.0
        random_rate = evaluate_scripted("corridor", "random", 2000, level=level).success_rate
        assert abs(random_rate - chance) < 0.03, (level, random_rate)


# ---------------------------------------------------------- rollout engine
@dataclass
class _Record:
    prompt_ids: list
    label_ids: list
    action: int
    log_prob: float
    entropy: float
    value: float | None
    reflection: str | None
    answer: str | None = None


class _ScriptedAgent:
    """Walks forward with probability `p_forward`, else picks uniformly; records like a real agent."""

    def __init__(self, p_forward):
        self.p_forward = p_forward
        self.batch_sizes = []
        self.rng = np.random.default_rng(0)

    shuffle_labels = False
    reflect_seconds = 0.0

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, states, greedy=False, generator=None, envs=()):
        self.batch_sizes.append(len(states))
        actions, records = [], []
        for state in states:
            forward = state.actions.index("walk forward")
            if greedy or self.rng.random() < self.p_forward:
                action = forward
            else:
                action = int(self.rng.integers(len(state.actions)))
            ids = [len(state.history), len(state.observation)]
            records.append(_Record(ids, [10, 11, 12, 13], action, -0.1, 1.0, 0.5, None))
            actions.append(action)
        return actions, records


def test_engine_plays_episodes_that_end_independently():
    agent = _ScriptedAgent(p_forward=0.5)
    engine = LocalRolloutEngine("corridor", agent, max_concurrent=3)
    requests = [EpisodeRequest(seed=s, level=lvl, group=s // 2) for s, lvl in enumerate(["short", "long"] * 4)]
    batch = engine.collect(requests, label_seed=5)
    assert [(e.seed, e.level, e.group) for e in batch.episodes] == [(r.seed, r.level, r.group) for r in requests]
    assert max(agent.batch_sizes) == 3 and min(agent.batch_sizes) >= 1
    assert len({e.length for e in batch.episodes}) > 1
    for episode in batch.episodes:
        assert episode.steps[-1].done and not any(s.done for s in episode.steps[:-1])
        assert episode.success == (episode.steps[-1].reward == 1.0)
        assert episode.length <= 2 * (2 if episode.level == "short" else 5)
        assert all(s.label_ids == [10, 11, 12, 13] and s.value == 0.5 for s in episode.steps)
    assert set(batch.timings) == {"reflect", "decide", "environment"}
    again = LocalRolloutEngine("corridor", _ScriptedAgent(0.5), max_concurrent=3).collect(requests, label_seed=5)
    assert [e.to_dict() for e in again.episodes] == [e.to_dict() for e in batch.episodes]
    greedy = engine.collect(requests[:2], greedy=True)
    assert greedy.success_rate == 1.0 and greedy.mean_length == pytest.approx((2 + 5) / 2)
