"""Rollout scale-out benchmark: ALFWorld episodes per second, local engine vs Ray with 1, 2 and 4 env workers.

ALFWorld is the environment whose stepping costs most (a PDDL planner state
per game, text rendering of every admissible command), so it is where moving
environments into Ray actors can pay. One run collects the same batch of
episodes (same seeds, same policy, same sampling seed) with

* the local engine (environments stepped in this process, one after another);
* the Ray engine with 1, 2 and 4 environment actors (they step their shares
  of the batch at the same time; the policy's forward pass stays one batched
  call in this process);

and reports episodes and steps per second, and per lockstep step the seconds
spent in the environment and in the model (reflect + decide). Those two
columns are what a cluster divides: environment time by the actors,
model time by GPUs (or a reflector server). Each setting plays the batch
once to warm up (games loaded, actors started), then `--repeats` times; the
median is reported. Every Ray batch is checked equal to the local one.

Usage:
  python benchmarks/bench_rollout_scale.py [--episodes 16 --horizon 10 --concurrent 16 --workers 1,2,4
      --policy tiny-random --repeats 3 --save benchmarks/results/bench_rollout_scale.txt]
Without --data-dir a small ALFWorld data set is generated into a temporary folder first.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from reflectrl.envs.alfworld import ALFWorldEnv
from reflectrl.players.load import load_rl_players
from reflectrl.rollout import LocalRolloutEngine, RayRolloutEngine
from reflectrl.rollout.env_worker import EnvWorkerGroup
from reflectrl.rollout.episode import EpisodeRequest
from reflectrl.rollout.ray_session import start_ray


def timed_collects(engine, requests, repeats: int) -> tuple[dict[str, float], list]:
    """Median seconds of `repeats` collects after one warm-up, split into environment and model; and the episodes."""
    rows, episodes = [], None
    for attempt in range(repeats + 1):
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        with torch.no_grad():
            batch = engine.collect(requests, generator=generator, label_seed=1)
        total = time.perf_counter() - start
        episodes = [e.to_dict() for e in batch.episodes]
        if attempt == 0:
            continue  # warm-up: games parsed, actors' environments built
        steps = max(max(e.length for e in batch.episodes), 1)  # lockstep steps of the batch (the longest episode)
        rows.append({
            "total": total,
            "episodes_per_second": len(batch.episodes) / total,
            "steps_per_second": batch.num_steps / total,
            "env_per_step": batch.timings["environment"] / steps,
            "model_per_step": (batch.timings["reflect"] + batch.timings["decide"]) / steps,
            "worker_busy_per_step": getattr(engine.host, "worker_seconds", 0.0),
            "lockstep_steps": steps,
            "steps": batch.num_steps,
        })
        if hasattr(engine.host, "worker_seconds"):
            rows[-1]["worker_busy_per_step"] = engine.host.worker_seconds / steps
            engine.host.worker_seconds = 0.0
    summary = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    return summary, episodes


def data_root(args) -> Path:
    if args.data_dir is not None:
        return Path(args.data_dir)
    from reflectrl.envs.alfworld.generator import GeneratorConfig, make_games

    root = Path(tempfile.mkdtemp(prefix="bench_alfworld_"))
    made = make_games(GeneratorConfig(out=root, n=args.games, task_types="all", seed=0, valid_fraction=0.0, workers=2))
    if made.failed:
        raise SystemExit(f"could not generate the ALFWorld games: {made.failed}")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="ALFWorld data root (default: generate --games games)")
    parser.add_argument("--games", type=int, default=12)
    parser.add_argument("--policy", default="tiny-random", help="policy model spec or adapter folder")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=16, help="episodes stepped in lockstep")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated env actor counts")
    parser.add_argument("--worker-cpus", type=float, default=0.5, help="CPUs each actor reserves")
    parser.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray (default: the machine's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    lines: list[str] = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
        if args.save is not None:  # line by line: what was measured survives a run that cannot finish
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text("\n".join(lines) + "\n")

    report(f"command: python benchmarks/bench_rollout_scale.py {' '.join(sys.argv[1:])}".strip())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    report(f"machine: CPU ({platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start), "
           f"torch {torch.__version__}, 1 torch thread")
    report(f"date: {datetime.date.today().isoformat()}")
    root = data_root(args)
    players = load_rl_players(args.policy, None, shuffle_labels=True, init_seed=0, device="cpu")
    kwargs = {"data_dir": str(root), "split": "train", "task_types": "all", "horizon": args.horizon,
              "max_actions": len(players.label_set)}
    requests = [EpisodeRequest(seed, "full", seed) for seed in range(args.episodes)]
    games = len(ALFWorldEnv(data_dir=str(root), split="train", task_types="all").games)
    source = f"--data-dir {args.data_dir}" if args.data_dir is not None else "generated"
    report(f"setting: ALFWorld ({games} train games, {source}, all task types), {args.episodes} episodes of at most "
           f"{args.horizon} steps, {args.concurrent} in lockstep, policy {args.policy} (no reflector), "
           f"median of {args.repeats} batches after one warm-up")
    report()
    header = (f"{'engine':<16}{'episodes/s':>11}{'steps/s':>9}{'env s/step':>12}{'model s/step':>14}"
              f"{'actors busy s/step':>20}{'same batch':>12}")
    report(header)

    def row(name: str, summary: dict[str, float], same: str) -> None:
        busy = f"{summary['worker_busy_per_step']:.3f}" if summary["worker_busy_per_step"] else "-"
        report(f"{name:<16}{summary['episodes_per_second']:>11.2f}{summary['steps_per_second']:>9.1f}"
               f"{summary['env_per_step']:>12.3f}{summary['model_per_step']:>14.3f}{busy:>20}{same:>12}")

    local, reference = timed_collects(LocalRolloutEngine("alfworld", players.agent, args.concurrent, kwargs), requests, args.repeats)
    row("local", local, "-")
    counts = [int(c) for c in args.workers.split(",")]
    try:
        session = start_ray(None, num_cpus=args.ray_cpus)
    except RuntimeError as err:
        for count in counts:
            report(f"ray, {count} actor(s): not measured, Ray did not start ({err})")
        session = None
    try:
        for count in counts if session is not None else []:
            try:
                workers = EnvWorkerGroup(count, cpus=args.worker_cpus, call_timeout=600)
            except RuntimeError as err:
                report(f"ray, {count} actor(s): not measured, the actors did not start ({err})")
                continue
            engine = RayRolloutEngine("alfworld", players.agent, workers, args.concurrent, kwargs)
            try:
                summary, episodes = timed_collects(engine, requests, args.repeats)
            finally:
                engine.close()
                workers.close()
            row(f"ray, {count} actor{'s' if count > 1 else ''}", summary, "yes" if episodes == reference else "NO")
    finally:
        if session is not None:
            session.stop()
    report()
    report(f"{local['steps']:.0f} policy steps per batch over {local['lockstep_steps']:.0f} lockstep steps. env s/step: "
           "seconds the driver spent on resets and steps per lockstep step (for Ray: waiting for the actors, "
           "round trips included); actors busy: the actors' own reset and step seconds, summed over actors.")


if __name__ == "__main__":
    main()
