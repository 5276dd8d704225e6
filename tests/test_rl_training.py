"""Online RL end to end with the tiny random model: learning, determinism, curriculum, exact resume, CLI."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from reflectrl.cli.main import app
from reflectrl.envs.corridor import CorridorEnv
from reflectrl.players.load import load_rl_players
from reflectrl.protocol import MenuLayout, load_label_order, save_label_order
from reflectrl.rollout import LocalRolloutEngine
from reflectrl.trainers.checkpoint import latest_checkpoint
from reflectrl.trainers.online import (
    TIME_PREFIX,
    OnlineTrainer,
    RLConfig,
    resolve_levels,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(config: RLConfig, reflection: bool = False, run_dir=None, bf16: bool = False) -> OnlineTrainer:
    players = load_rl_players(
        "tiny-random",
        "tiny-random" if reflection else None,
        value_head=config.uses_critic,
        kl_reference=config.kl_coef > 0,
        reflection_tokens=4,
        # The tiny random model cannot learn to read a shuffled menu; with
        # fixed labels the corridor checks the RL machinery itself.
        shuffle_labels=False,
        init_seed=config.seed,
        bf16=bf16,
    )
    engine = LocalRolloutEngine(config.env, players.agent, 16, {"max_actions": len(players.label_set)})
    levels = resolve_levels(CorridorEnv.levels, config)
    return OnlineTrainer(config, players.policy, engine, levels=levels, run_dir=run_dir, reference=players.reference)


def _weights(trainer: OnlineTrainer) -> dict[str, torch.Tensor]:
    return {f"p{i}": p.detach().clone() for i, p in enumerate(trainer.updater.params)}


def _without_time(records):
    return [{k: v for k, v in r.items() if not k.startswith(TIME_PREFIX)} for r in records]


@pytest.mark.parametrize("algo", ["pg", "ppo", "grpo"])
def test_each_algorithm_lifts_corridor_success_from_chance_to_90_percent(algo):
    config = RLConfig(
        env="corridor", levels=("medium",), algo=algo, episodes_per_iter=16, group_size=4,
        lr=1e-3, eval_every=0, micro_batch_size=32, seed=1,
    )
    trainer = _trainer(config)
    before = trainer.evaluate(episodes=8)["val/success"]
    sampled = []
    for _ in range(25):
        sampled.append(trainer.step()["train/success"])
        if sampled[-1] >= 0.9 and len(sampled) >= 3:
            break
    after = trainer.evaluate(episodes=8)["val/success"]
    print(f"{algo}: sampled success per iteration {sampled}; greedy validation {before:.0%} -> {after:.0%}")
    assert sampled[0] <= 0.25  # chance at 'medium' is 5%
    assert before == 0.0
    assert sampled[-1] >= 0.9 and after >= 0.9


@pytest.mark.parametrize(
    "settings",
    [
        {"algo": "pg", "pg_baseline": "critic"},
        {"algo": "pg", "pg_baseline": "none", "normalize_advantages": False},
        {"algo": "ppo", "advantage_estimator": "mc", "minibatch_size": 4, "micro_batch_size": 3, "value_clip": 0.2},
    ],
)
def test_other_baselines_and_batching_train_with_finite_losses(settings):
    config = RLConfig(env="corridor", levels=("short",), episodes_per_iter=6, eval_every=0, lr=1e-3, **settings)
    trainer = _trainer(config)
    start = _weights(trainer)
    record = trainer.step()
    losses = {k: v for k, v in record.items() if k.startswith("loss/")}
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert ("loss/value" in losses) == config.uses_critic
    assert any(not torch.equal(start[k], p) for k, p in _weights(trainer).items())


def test_grpo_skips_steps_of_groups_whose_episodes_all_got_one_return():
    config = RLConfig(
        env="corridor", levels=("short",), algo="grpo", episodes_per_iter=8, group_size=4, eval_every=0,
        epochs=1, lr=1e-3, replay_size=0, skip_zero_advantage=True,
    )
    trainer = _trainer(config)
    batch = trainer.collect(1, "short")
    first, second = batch.episodes[:4], batch.episodes[4:]
    for episode in batch.episodes:  # group 0: every episode gets return 0 -> no signal
        for step in episode.steps:
            step.reward = 0.0
    second[0].steps[-1].reward = 1.0  # group 1: one episode differs -> all its steps have an advantage
    start = _weights(trainer)
    stats = trainer.updater.update(batch, [], 1)
    assert [e.group for e in first] == [0] * 4 and [e.group for e in second] == [1] * 4
    assert stats["update/skipped_steps"] == sum(e.length for e in first)
    assert stats["update/steps"] == sum(e.length for e in second)
    assert any(not torch.equal(start[k], p) for k, p in _weights(trainer).items())

    for step in second[0].steps:  # now no group has a signal: no pass, no optimizer step at all
        step.reward = 0.0
    start = _weights(trainer)
    stats = trainer.updater.update(batch, [], 2)
    assert stats["update/steps"] == 0.0 and stats["update/skipped_steps"] == batch.num_steps
    assert all(torch.equal(start[k], p) for k, p in _weights(trainer).items())
    with pytest.raises(ValueError, match="grpo only"):
        RLConfig(env="corridor", algo="ppo", skip_zero_advantage=True)


def test_a_step_past_max_kl_is_undone_with_its_optimizer_state_and_ends_the_update():
    base = dict(env="corridor", levels=("short",), algo="grpo", episodes_per_iter=8, group_size=4, eval_every=0, epochs=1, replay_size=0)
    # A huge learning rate: Adam's first step moves every weight by about lr, far past any small trust region.
    loose = _trainer(RLConfig(**base, lr=0.5, minibatch_size=4, micro_batch_size=4))
    batch = loose.collect(1, "short")
    batch.episodes[0].steps[-1].reward += 1.0  # one episode's return differs: every step of its group has an advantage
    start = _weights(loose)
    stats = loose.updater.update(batch, [], 1)
    assert "update/rejected_steps" not in stats and any(not torch.equal(start[k], p) for k, p in _weights(loose).items())

    strict = _trainer(RLConfig(**base, lr=0.5, minibatch_size=4, micro_batch_size=4, max_kl=1e-6))
    batch = strict.collect(1, "short")
    batch.episodes[0].steps[-1].reward += 1.0
    start, state = _weights(strict), strict.updater.optimizer.state_dict()
    stats = strict.updater.update(batch, [], 1)
    assert stats["update/rejected_steps"] == 1.0 and stats["loss/step_kl"] > 1e-6
    assert all(torch.equal(start[k], p) for k, p in _weights(strict).items())
    assert strict.updater.optimizer.state_dict()["state"] == state["state"] == {}  # Adam's moments as before: none yet

    # A trust region the steps stay within changes nothing: the same weights as without it.
    within = _trainer(RLConfig(**base, lr=1e-6, minibatch_size=4, micro_batch_size=4, max_kl=10.0))
    plain = _trainer(RLConfig(**base, lr=1e-6, minibatch_size=4, micro_batch_size=4))
    for trainer in (within, plain):
        batch = trainer.collect(1, "short")
        batch.episodes[0].steps[-1].reward += 1.0
        stats = trainer.updater.update(batch, [], 1)
    assert all(torch.equal(a, b) for a, b in zip(_weights(within).values(), _weights(plain).values()))
    with pytest.raises(ValueError, match="max_kl"):
        RLConfig(env="corridor", max_kl=0.0)


def test_a_resume_clears_what_a_kill_during_the_last_prune_left(tmp_path):
    config = RLConfig(env="corridor", levels=("short",), iterations=1, episodes_per_iter=4, eval_every=0, checkpoint_every=1)
    trainer = _trainer(config, run_dir=tmp_path / "run")
    trainer.train()
    checkpoints = tmp_path / "run" / "checkpoints"
    # A kill between moving an old checkpoint aside and deleting it (`_discard`) leaves it under a temporary name.
    leftover = checkpoints / ".tmp-old-abc123" / "iter-000000"
    leftover.mkdir(parents=True)
    (leftover / "trainer.json").write_text("{}")
    assert _trainer(config, run_dir=tmp_path / "run").resume() == 1
    assert sorted(p.name for p in checkpoints.iterdir()) == ["iter-000001"]


def _batch_dependent(policy, monkeypatch):
    """Make a row's log-probs depend on the batch it sits in, by a known shift, on every CPU.

    bfloat16 kernels round a row differently in another batch shape on CPUs with native bfloat16
    (AVX-512) but not on AVX2-only ones, so rounding alone cannot show which batches the ratio's
    denominator came from. The shift (0.1 per row of the batch, 0.01 per position in it) stands
    in for that rounding: like rounding it repeats exactly in every pass over the same batch.
    """
    forward = policy.forward_ids

    def shifted(prompt_ids, label_ids, temperature=1.0):
        out = forward(prompt_ids, label_ids, temperature)
        rows = torch.arange(len(prompt_ids), device=out.log_probs.device)
        return dataclasses.replace(out, log_probs=out.log_probs + (0.1 * len(prompt_ids) + 0.01 * rows)[:, None])

    monkeypatch.setattr(policy, "forward_ids", shifted)


@pytest.mark.parametrize("refresh", [True, False])
def test_ratios_start_at_exactly_one_under_bfloat16(refresh, monkeypatch):
    """Rollout log-probs come from other batches than the update's; its own micro-batches give the ratio's denominator."""
    config = RLConfig(
        env="corridor", levels=("short",), algo="grpo", episodes_per_iter=8, group_size=4, eval_every=0,
        micro_batch_size=3, epochs=1, lr=1e-3,
    )
    trainer = _trainer(config, bf16=True)
    assert trainer.engine.agent.policy is trainer.policy  # the shift reaches the rollouts and the update alike
    _batch_dependent(trainer.policy, monkeypatch)
    if not refresh:  # the check must be able to fail: the rollout's first step ran all 8 episodes in one batch
        monkeypatch.setattr(trainer.updater, "_refresh_old_log_probs", lambda micro_batches, first_step=0: None)
    record = trainer.step()
    if refresh:
        assert record["loss/approx_kl"] == 0.0 and record["loss/clip_fraction"] == 0.0
    else:
        # A batch of 8 against micro-batches of at most 3: log-ratios of -0.5 +- 0.07, beyond the 0.1 clip.
        assert record["loss/approx_kl"] > 0.0 and record["loss/clip_fraction"] > 0.0


@pytest.mark.parametrize(
    "settings",
    [
        {"algo": "grpo", "epochs": 1, "minibatch_size": 6, "micro_batch_size": 3},
        {"algo": "grpo", "epochs": 1, "bf16": True},
        {"algo": "ppo", "epochs": 2, "minibatch_size": 4, "micro_batch_size": 2},
    ],
)
def test_ratio_denominators_from_the_first_forward_pass_change_no_number(settings, monkeypatch):
    """The first optimizer step's micro-batches take their old log-probs from their own forward pass: the same
    metrics and weights, byte for byte, as with a no-grad pass of their own, with fewer passes."""
    settings = dict(settings)
    bf16 = settings.pop("bf16", False)
    config = RLConfig(env="corridor", levels=("short",), episodes_per_iter=6, group_size=3, eval_every=0, lr=1e-2, seed=3, **settings)
    runs = {}
    for reuse in (True, False):
        trainer = _trainer(config, bf16=bf16)
        trainer.updater.reuse_first_forward = reuse
        forward, no_grad_passes = trainer.policy.forward_ids, []

        def counted(prompt_ids, label_ids, temperature=1.0, forward=forward, passes=no_grad_passes):
            passes.append(not torch.is_grad_enabled())
            return forward(prompt_ids, label_ids, temperature)

        monkeypatch.setattr(trainer.policy, "forward_ids", counted)
        records = _without_time([trainer.step() for _ in range(3)])
        runs[reuse] = (records, _weights(trainer), sum(no_grad_passes))
    (records, weights, passes), (old_records, old_weights, old_passes) = runs[True], runs[False]
    assert records == old_records
    assert all(torch.equal(weights[k], old_weights[k]) for k in weights)
    assert any(r["update/replay_steps"] > 0 for r in records)  # replayed steps keep their own denominators
    # Every optimizer step's first micro-batch at least: one no-grad pass fewer per update.
    assert passes <= old_passes - 3


def test_training_continues_from_a_saved_adapter_with_its_value_head_and_a_frozen_reference(tmp_path):
    config = RLConfig(env="corridor", levels=("short",), algo="ppo", episodes_per_iter=4, eval_every=0, lr=1e-3)
    first = _trainer(config)
    first.step()
    first.save_final(tmp_path / "start")
    players = load_rl_players(str(tmp_path / "start"), None, value_head=True, kl_reference=True, shuffle_labels=False)
    saved = load_file(str(tmp_path / "start" / "adapter_model.safetensors"))
    assert len(players.policy.trainable_parameters()) == len(first.updater.params)
    for before, after in zip(first.updater.params, players.policy.trainable_parameters()):
        assert torch.equal(before.detach(), after.detach())
    assert "reference" in players.players.adapters and len(saved) > 0
    batch = LocalRolloutEngine("corridor", players.agent, 4, {"max_actions": len(players.label_set)}).collect(
        OnlineTrainer(config, players.policy, first.engine, levels=("short",)).requests(0, "short")
    )
    step = batch.episodes[0].steps[0]
    out = players.policy.forward_ids([step.prompt_ids], [step.label_ids])
    ref = players.reference.forward_ids([step.prompt_ids], [step.label_ids])
    assert torch.allclose(out.log_probs, ref.log_probs) and out.values is not None
    # The label order travels with the policy: trained with fixed labels, loaded with fixed labels.
    assert load_label_order(tmp_path / "start") == MenuLayout(shuffle_labels=False, label_after=False)
    assert load_rl_players(str(tmp_path / "start"), None).agent.shuffle_labels is False
    save_label_order(tmp_path / "start", True, label_after=True)
    loaded = load_rl_players(str(tmp_path / "start"), None).agent
    assert loaded.shuffle_labels is True and loaded.label_after is True
    # A record written before the layout existed holds the label order only: label first.
    (tmp_path / "start" / "label_order.json").write_text('{"shuffle_labels": false}')
    assert load_label_order(tmp_path / "start") == MenuLayout(shuffle_labels=False, label_after=False)
    # The trainer saves the layout its agent plays with.
    first.engine.agent.label_after = True
    first.save_final(tmp_path / "after")
    assert load_label_order(tmp_path / "after") == MenuLayout(shuffle_labels=False, label_after=True)


def test_same_seed_gives_the_same_run_and_another_seed_does_not():
    def run(seed):
        config = RLConfig(
            env="corridor", levels=("short",), algo="grpo", episodes_per_iter=8, group_size=4, step_groups=True,
            kl_coef=0.05, lr=1e-3, eval_every=1, eval_episodes=2, seed=seed,
        )
        trainer = _trainer(config, reflection=True)
        records = trainer.train(until=2)
        return _without_time(records), _weights(trainer)

    (m1, w1), (m2, w2), (m3, w3) = run(0), run(0), run(7)
    assert m1 == m2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert any("loss/kl_to_reference" in r for r in m1)
    assert m1 != m3 and any(not torch.equal(w1[k], w3[k]) for k in w1)


def test_curriculum_schedule_switches_level_and_clears_replay(tmp_path):
    config = RLConfig(
        env="corridor", algo="pg", episodes_per_iter=8, lr=3e-3, curriculum_schedule=(2,), eval_every=0,
        levels=("short", "medium"), replay_size=8, checkpoint_every=0,
    )
    trainer = _trainer(config, run_dir=tmp_path)
    records = trainer.train(until=3)
    assert [r["level"] for r in records] == ["short", "short", "medium"]
    assert records[1]["curriculum/switched_to"] == "medium"
    assert records[2]["replay/episodes_used"] == 0  # cleared at the switch
    assert "train/success/medium" in records[2]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [1, 2, 3]
    assert latest_checkpoint(tmp_path).name == "iter-000003"  # saved at the end


COMMON = [
    "train", "corridor", "--policy", "tiny-random", "--reflector", "tiny-random", "--reflection-tokens", "4",
    "--algo", "ppo", "--iters", "4", "--episodes-per-iter", "24", "--levels", "short", "--fixed-labels",
    "--lr", "1e-3", "--eval-every", "2", "--eval-episodes", "4", "--checkpoint-every", "1", "--replay-size", "4", "--quiet",
]


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_weights_and_metrics_as_a_straight_run(tmp_path):
    runner = CliRunner()
    straight = tmp_path / "straight"
    result = runner.invoke(app, COMMON + ["--out", str(straight)])
    assert result.exit_code == 0, result.output

    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "reflectrl.cli.main", *COMMON, "--out", str(killed)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        latest = latest_checkpoint(killed)
        if latest is not None and latest.name >= "iter-000002":
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    stopped_at = latest_checkpoint(killed).name
    assert "iter-000002" <= stopped_at < "iter-000004"
    assert not (killed / "final").exists()

    result = runner.invoke(app, COMMON + ["--out", str(killed), "--resume"])
    assert result.exit_code == 0, result.output

    a = load_file(str(straight / "final" / "adapter_model.safetensors"))
    b = load_file(str(killed / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    va = load_file(str(straight / "final" / "value_head.safetensors"))
    vb = load_file(str(killed / "final" / "value_head.safetensors"))
    assert all(torch.equal(va[k], vb[k]) for k in va)

    def metrics(folder):
        return _without_time(json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines())

    assert metrics(straight) == metrics(killed)
    assert [r["iteration"] for r in metrics(killed)] == [0, 1, 2, 3, 4]
    # The reflector answered repeated prompts from its cache, which the checkpoints carried across the kill.
    assert sum(r.get("reflect/cache_hits", 0) for r in metrics(killed)) > 0
    saved = json.loads((latest_checkpoint(killed) / "reflections.json").read_text())
    assert len(saved["entries"]) == metrics(killed)[-1]["reflect/cache_size"] > 0


def test_a_checkpoint_s_reflections_are_not_reused_with_another_reflector(tmp_path):
    from reflectrl.run_settings import ConfigMismatch
    from reflectrl.trainers.recipe import build_rl_run

    config = RLConfig(env="corridor", levels=("short",), algo="pg", episodes_per_iter=4, iterations=1, eval_every=0, checkpoint_every=1)
    first = build_rl_run(config, "tiny-random", "tiny-random", run_dir=tmp_path, reflection_tokens=4, shuffle_labels=False)
    first.trainer.train()
    assert len(first.players.reflection_cache) > 0
    again = build_rl_run(config, "tiny-random", "tiny-random", run_dir=tmp_path, reflection_tokens=4, shuffle_labels=False)
    assert again.trainer.resume() == 1 and again.players.reflection_cache.state_dict() == first.players.reflection_cache.state_dict()
    other = build_rl_run(config, "tiny-random", "tiny-random", run_dir=tmp_path, reflection_tokens=5, shuffle_labels=False)
    with pytest.raises(ConfigMismatch, match="another reflector"):
        other.trainer.resume()


def test_cli_refuses_bad_requests_with_clear_messages(tmp_path):
    runner = CliRunner()
    base = ["train", "corridor", "--policy", "tiny-random", "--out", str(tmp_path / "run"), "--quiet"]
    cases = [
        (base, "--reflector CKPT"),
        (base + ["--no-reflection", "--reflector", "tiny-random"], "not both"),
        (["train", "nowhere", "--policy", "tiny-random", "--no-reflection", "--out", str(tmp_path)], "unknown environment"),
        (base + ["--no-reflection", "--algo", "dqn"], "algo must be one of"),
        (base + ["--no-reflection", "--levels", "huge"], "unknown level"),
        (base + ["--no-reflection", "--algo", "grpo", "--episodes-per-iter", "6", "--group-size", "4"], "multiple of group_size"),
        (base + ["--no-reflection", "--env-option", "oops"], "KEY=VALUE"),
        (base + ["--reflector", "openai:m", "--reflector-url", "ftp://x"], "http"),
        (base + ["--reflector", "smollm2-135m"], "adapter folder on the policy's base"),
        (["train", "corridor", "--policy", str(tmp_path / "missing"), "--no-reflection", "--out", str(tmp_path / "r2")], "Error:"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output

    run = base + ["--no-reflection", "--episodes-per-iter", "2", "--eval-every", "0", "--horizon", "4"]
    ok = runner.invoke(app, run + ["--iters", "1"])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(app, run + ["--iters", "1"])
    assert again.exit_code == 2 and "--resume" in again.output
    changed = runner.invoke(app, run + ["--iters", "2", "--lr", "0.1", "--resume"])
    assert changed.exit_code == 2 and "lr" in changed.output and changed.output.count("Error:") == 1
    # A run written before a setting existed resumes: the missing setting had its default.
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    del saved["config"]["skip_zero_advantage"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(saved))
    longer = runner.invoke(app, run + ["--iters", "2", "--resume"])  # more iterations, same settings
    assert longer.exit_code == 0, longer.output


def test_cli_passes_the_grpo_switches_to_the_run(tmp_path):
    out = tmp_path / "run"
    args = ["train", "corridor", "--policy", "tiny-random", "--no-reflection", "--algo", "grpo", "--episodes-per-iter", "4",
            "--group-size", "2", "--iters", "1", "--eval-every", "0", "--horizon", "4", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(app, args + ["--no-grpo-std-norm", "--skip-zero-advantage"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["grpo_std_norm"] is False and config["skip_zero_advantage"] is True
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "update/skipped_steps" in record


class _Reflections(BaseHTTPRequestHandler):
    """A loopback chat-completions endpoint whose every answer is one fixed reflection."""

    def log_message(self, *args):
        pass

    keys_seen: list[str | None] = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.keys_seen.append(self.headers.get("Authorization"))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Keep walking forward."}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_reflector_behind_an_openai_compatible_server_feeds_the_policy():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reflections)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        players = load_rl_players("tiny-random", "openai:reflector", reflector_url=url, shuffle_labels=False)
        config = RLConfig(env="corridor", levels=("short",), episodes_per_iter=2, eval_every=0)
        engine = LocalRolloutEngine("corridor", players.agent, 2, {"max_actions": len(players.label_set)})
        batch = engine.collect(OnlineTrainer(config, players.policy, engine, levels=("short",)).requests(0, "short"))
    finally:
        server.shutdown()
    steps = [s for e in batch.episodes for s in e.steps]
    assert steps and all(s.reflection == "Keep walking forward." for s in steps)
    assert batch.timings["reflect"] > 0


def test_eval_finds_an_openai_reflector_through_the_environment_with_a_named_key(monkeypatch):
    from reflectrl.evaluation.agent_loader import AgentSpec, load_agent
    from reflectrl.evaluation.harness import EvalConfig, evaluate

    spec = AgentSpec("reflect", policy="tiny-random", reflector="openai:reflector", api_key_env="MY_SERVER_KEY", device="cpu")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        load_agent(spec)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reflections)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Reflections.keys_seen.clear()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("MY_SERVER_KEY", "s3cret")
    try:
        loaded = load_agent(spec)
        result = evaluate(loaded.agent, EvalConfig(env="corridor", episodes=2, level="short"), max_actions=loaded.max_actions, progress=False)
        loaded.close()
    finally:
        server.shutdown()
    assert len(result.episodes) == 2 and _Reflections.keys_seen and set(_Reflections.keys_seen) == {"Bearer s3cret"}
