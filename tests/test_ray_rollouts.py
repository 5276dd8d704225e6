"""The Ray rollout engine on a real local Ray: same episodes as the local engine, lost actors survived, exact resume."""

import json

import pytest
import torch
from alfworld_games import mini_data_set
from safetensors.torch import load_file
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray rollouts need ray (pip install 'reflectrl[ray]')")

from reflectrl.cli.main import app  # noqa: E402
from reflectrl.envs import lookup  # noqa: E402
from reflectrl.players.load import load_rl_players  # noqa: E402
from reflectrl.rollout import LocalRolloutEngine, RayRolloutEngine  # noqa: E402
from reflectrl.rollout.env_worker import EnvWorkerGroup, WorkerLost  # noqa: E402
from reflectrl.rollout.episode import EpisodeRequest  # noqa: E402
from reflectrl.rollout.ray_session import start_ray  # noqa: E402
from reflectrl.trainers.online import TIME_PREFIX  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ray_session():
    """A Ray on this machine for the module (two CPUs: actors reserve half a core each), stopped afterwards."""
    session = start_ray(None, num_cpus=2)
    assert session.started, "another Ray was already running in the test process"
    yield session
    session.stop()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def workers(ray_session):
    group = EnvWorkerGroup(2, cpus=0.5, call_timeout=120, max_restarts=4)
    yield group
    group.close()


@pytest.fixture(scope="module")
def players():
    # Shuffled labels: the agent's own random draws must line up between the engines too.
    return load_rl_players("tiny-random", None, shuffle_labels=True, init_seed=0)


def _collect(engine, requests):
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        return [e.to_dict() for e in engine.collect(requests, generator=generator, label_seed=11).episodes]


class _KillingAgent:
    """Delegates to an agent, and kills actor 0 of `workers` during its `kill_at`-th decision (episodes are running)."""

    def __init__(self, agent, workers, kill_at: int = 2):
        self.agent, self.workers, self.kill_at, self.calls = agent, workers, kill_at, 0
        self.shuffle_labels = agent.shuffle_labels

    @property
    def reflect_seconds(self):
        return self.agent.reflect_seconds

    def reseed(self, seed):
        self.agent.reseed(seed)

    def act(self, states, **kwargs):
        self.calls += 1
        if self.calls == self.kill_at:
            ray.kill(self.workers.actors[0])
        return self.agent.act(states, **kwargs)


def _same_episodes_local_ray_and_ray_with_a_kill(env_name, env_kwargs, requests, players, workers):
    kwargs = {**env_kwargs, "max_actions": len(players.label_set)}
    local = _collect(LocalRolloutEngine(env_name, players.agent, 4, kwargs), requests)
    assert sum(len(e["steps"]) for e in local) > len(requests), "too short to compare steps"
    assert any(e["options"] is None and e["steps"] for e in local)

    engine = RayRolloutEngine(env_name, players.agent, workers, 4, kwargs)
    try:
        # Observations (in the prompt ids and state keys), actions and rewards: everything.
        assert _collect(engine, requests) == local

        restarts = workers.restarts
        engine.agent = _KillingAgent(players.agent, workers)
        assert _collect(engine, requests) == local
        assert workers.restarts == restarts + 1
        assert engine.host.replayed_episodes > 0, "the kill came when actor 0 hosted no running episode"
    finally:
        engine.close()


def test_ray_engine_plays_taxi_as_the_local_engine_and_survives_a_killed_actor(players, workers):
    level = lookup("taxi").env_class().levels[-1]
    requests = [EpisodeRequest(seed, level, group) for group, seed in enumerate([3, 3, 41, 41, 5, 9, 12, 77])]
    _same_episodes_local_ray_and_ray_with_a_kill("taxi", {"horizon": 12}, requests, players, workers)


@pytest.mark.slow  # builds the mini ALFWorld data set (shared with the ALFWorld tests) and loads games in the actors
def test_ray_engine_plays_alfworld_as_the_local_engine_and_survives_a_killed_actor(players, workers, tmp_path_factory):
    root = mini_data_set(tmp_path_factory)
    kwargs = {"data_dir": str(root), "split": "train", "task_types": "all", "horizon": 6}
    requests = [EpisodeRequest(seed, "full", group) for group, seed in enumerate([0, 1, 2, 2, 3, 4])]
    _same_episodes_local_ray_and_ray_with_a_kill("alfworld", kwargs, requests, players, workers)


def test_a_run_that_loses_more_actors_than_allowed_stops_with_a_clear_error(players, ray_session):
    group = EnvWorkerGroup(1, cpus=0.5, call_timeout=60, max_restarts=0)
    engine = RayRolloutEngine("corridor", _KillingAgent(players.agent, group), group, 2, {"max_actions": len(players.label_set)})
    try:
        with pytest.raises(WorkerLost, match="after 0 replacement"):
            _collect(engine, [EpisodeRequest(seed, "long", seed) for seed in range(4)])
    finally:
        group.close()


COMMON = [
    "train", "corridor", "--policy", "tiny-random", "--no-reflection", "--algo", "pg", "--episodes-per-iter", "8",
    "--levels", "long", "--fixed-labels", "--lr", "1e-3", "--eval-every", "1", "--eval-episodes", "4",
    "--checkpoint-every", "1", "--replay-size", "4", "--quiet",
]
RAY = ["--ray", "--env-workers", "2", "--env-worker-cpus", "0.5"]


@pytest.mark.slow
def test_a_run_resumed_under_ray_equals_a_straight_local_run(tmp_path, ray_session):
    runner = CliRunner()
    straight, split = tmp_path / "straight", tmp_path / "split"
    result = runner.invoke(app, COMMON + ["--iters", "3", "--out", str(straight)])
    assert result.exit_code == 0, result.output
    # Two iterations under Ray, then the run continues from its checkpoint, still under Ray.
    result = runner.invoke(app, COMMON + RAY + ["--iters", "2", "--out", str(split)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, COMMON + RAY + ["--iters", "3", "--out", str(split), "--resume"])
    assert result.exit_code == 0, result.output
    assert "Resuming" in result.output and "after iteration 2" in result.output
    assert ray.is_initialized(), "the CLI stopped a Ray it had not started"

    a = load_file(str(straight / "final" / "adapter_model.safetensors"))
    b = load_file(str(split / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def metrics(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith(TIME_PREFIX)} for line in lines]

    assert metrics(straight) == metrics(split)
    assert [r["iteration"] for r in metrics(split)] == [0, 1, 2, 3]


def test_an_unreachable_ray_address_fails_soon_with_one_line_naming_it():
    import subprocess
    import sys
    import time

    probe = (
        "from reflectrl.rollout.ray_session import start_ray\n"
        "try:\n    start_ray('127.0.0.1:1')\n"
        "except ConnectionError as err:\n    print('ConnectionError:', err)\n"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert time.monotonic() - start < 20
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ConnectionError:") and "127.0.0.1:1" in lines[0], done.stdout + done.stderr


def test_a_replacement_actor_that_dies_too_ends_the_run_with_worker_lost(players, ray_session, monkeypatch):
    group = EnvWorkerGroup(1, cpus=0.5, call_timeout=60, max_restarts=3)
    replace = group.replace

    def replace_with_a_dying_actor(index, reason):
        replace(index, reason)
        ray.kill(group.actors[index])

    monkeypatch.setattr(group, "replace", replace_with_a_dying_actor)
    engine = RayRolloutEngine("corridor", _KillingAgent(players.agent, group), group, 2, {"max_actions": len(players.label_set)})
    try:
        with pytest.raises(WorkerLost, match="environment worker 0 .*replacement") as lost:
            _collect(engine, [EpisodeRequest(seed, "long", seed) for seed in range(4)])
        assert isinstance(lost.value.__cause__, ray.exceptions.RayActorError) and "\n" not in str(lost.value)
    finally:
        group.close()
