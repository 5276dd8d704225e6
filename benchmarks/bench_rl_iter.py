"""Online RL iteration benchmark: where the seconds of one iteration go, and episodes per second.

Runs a few `OnlineTrainer` iterations on DangerousTaxi (by default) with the
embedded default model, once with the reflector (Reflect-RL) and once
without (the plain baseline), and reports per iteration the seconds spent in

* reflect: the frozen reflector generating reflections (batched, KV cache);
* decide: building prompts and the label-head forward pass that samples actions;
* environment: resets and steps;
* update: the policy-gradient update (forward + backward + Adam);

plus the total and episodes per second. The first iteration warms up caches
and is left out of the medians.

"Reflect-RL, no cache" is the same Reflect-RL run with the reflection cache
off (the path before the cache existed): every reflector prompt is decoded,
also the ones a GRPO group, a repeated route or a validation replay asked
before. The reflect column of the two rows, per policy step, is the cache's
saving; the cache's hit rate is printed beside it.

A fourth run, "plain transformers", is the baseline the ratios are taken
against: the same plain-policy iteration with float32 weights and every
prompt run whole, left-padded (no bfloat16 autocast, no shared-prefix
reuse), i.e. what a straightforward transformers forward pass costs.

Usage:
  python benchmarks/bench_rl_iter.py [--env taxi --level dropoff --episodes 8 --iters 3
      --reflection-tokens 48 --algo pg --threads 2 --save benchmarks/results/bench_rl_iter.txt]
Pass --policy/--reflector to time SFT adapters instead of the base model.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from reflectrl.models import EMBEDDED_DEFAULT
from reflectrl.pipeline.presets import preset
from reflectrl.trainers.online import TIME_PREFIX
from reflectrl.trainers.recipe import build_rl_run

PARTS = ("reflect", "decide", "environment", "update")


def run(args, reflection: bool, baseline: bool = False, cache: bool = True) -> list[dict]:
    """Metrics of `args.iters` iterations with or without the reflector (`baseline`: plain float32 forwards)."""
    # The cpu preset's RL settings (gamma, step groups, minibatches, ...) with the benchmark's sizes.
    config = replace(
        preset("cpu", args.env).rl, env=args.env, levels=(args.level,) if args.level else (), algo=args.algo, iterations=args.iters,
        episodes_per_iter=args.episodes, group_size=args.group_size, eval_every=0, checkpoint_every=0,
        micro_batch_size=args.micro_batch, seed=0, reflection_cache=cache,
    )
    reflector = (args.reflector or args.policy) if reflection else None
    run = build_rl_run(
        config, args.policy, reflector, max_concurrent=args.episodes, reflection_tokens=args.reflection_tokens,
        device="cpu", bf16=False if baseline else args.bf16,
    )
    if baseline:
        run.players.policy.prefix_reuse = False
    return run.trainer.train()


def summarise(records: list[dict]) -> dict[str, float]:
    timed = records[1:] if len(records) > 1 else records  # the first iteration warms up
    summary = {part: statistics.median(r[f"{TIME_PREFIX}{part}"] for r in timed) for part in PARTS}
    summary["total"] = statistics.median(r[f"{TIME_PREFIX}iteration"] for r in timed)
    summary["episodes_per_second"] = statistics.median(r[f"{TIME_PREFIX}episodes_per_second"] for r in timed)
    summary["steps"] = statistics.median(r["update/steps"] for r in timed)
    summary["cache_hit_rate"] = statistics.median(r.get("reflect/cache_hit_rate", 0.0) for r in timed)
    # The whole run too, warm-up included: the cache starts empty, so its first iteration is its worst.
    summary["reflect_per_step_all"] = sum(r[f"{TIME_PREFIX}reflect"] for r in records) / max(sum(r["update/steps"] for r in records), 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="taxi")
    parser.add_argument("--level", default="dropoff")
    parser.add_argument("--policy", default=EMBEDDED_DEFAULT, help="model spec or SFT policy adapter folder")
    parser.add_argument("--reflector", default=None, help="SFT reflector adapter (default: the base model reflects)")
    parser.add_argument("--algo", default="grpo", choices=["pg", "ppo", "grpo"])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--reflection-tokens", type=int, default=48)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bfloat16 autocast for the fast runs (default: the device default, off on CPUs)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--save", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--agents", default="all", choices=["all", "reflect"],
                        help="all four rows, or only the two Reflect-RL rows (the cache's old path beside the new)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lines: list[str] = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    report(f"command: python benchmarks/bench_rl_iter.py {' '.join(sys.argv[1:])}".strip())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    report(f"machine: CPU ({platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start), "
           f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    report(f"date: {datetime.date.today().isoformat()}")
    report(f"setting: {args.env} level {args.level or 'default'}, policy {args.policy}, algo {args.algo}, "
           f"{args.episodes} episodes per iteration (all in lockstep), reflections up to {args.reflection_tokens} tokens, "
           f"medians over iterations 2..{args.iters}")
    report()
    header = f"{'agent':18s} " + " ".join(f"{p:>11s}" for p in PARTS) + f" {'total':>9s} {'steps':>6s} {'episodes/s':>11s}"
    summaries = {}
    runs = (
        ("Reflect-RL, no cache", True, False, False), ("Reflect-RL", True, False, True),
        ("no reflection", False, False, True), ("plain transformers", False, True, True),
    )
    if args.agents == "reflect":
        runs = runs[:2]
    for name, reflection, baseline, cache in runs:
        start = time.perf_counter()
        summaries[name] = summarise(run(args, reflection, baseline, cache))
        print(f"  ({name}: {time.perf_counter() - start:.0f} s including model loading)", flush=True)
    report("seconds per iteration")
    report(header)
    for name, summary in summaries.items():
        row = f"{name:18s} " + " ".join(f"{summary[p]:11.2f}" for p in PARTS)
        row += f" {summary['total']:9.2f} {summary['steps']:6.0f} {summary['episodes_per_second']:11.3f}"
        report(row)
    report()
    report("milliseconds per policy step (episodes end at different lengths, so this compares runs fairly)")
    report(f"{'agent':18s} " + " ".join(f"{p:>11s}" for p in PARTS))
    for name, summary in summaries.items():
        steps = max(summary["steps"], 1)
        report(f"{name:18s} " + " ".join(f"{1000 * summary[p] / steps:11.0f}" for p in PARTS))
    report()
    old, new = summaries["Reflect-RL, no cache"], summaries["Reflect-RL"]
    per_step = [(s["reflect"] / max(s["steps"], 1)) for s in (old, new)]
    report(f"reflection cache: hit rate {new['cache_hit_rate']:.0%} (median per iteration); reflect time per policy step "
           f"{1000 * per_step[0]:.0f} ms without the cache, {1000 * per_step[1]:.0f} ms with it ({per_step[0] / max(per_step[1], 1e-9):.2f}x less)")
    whole = [s["reflect_per_step_all"] for s in (old, new)]
    report(f"over all {args.iters} iterations (the first included): {1000 * whole[0]:.0f} ms without the cache, "
           f"{1000 * whole[1]:.0f} ms with it ({whole[0] / max(whole[1], 1e-9):.2f}x less)")
    if "plain transformers" in summaries:
        fast, slow = summaries["no reflection"], summaries["plain transformers"]
        report("ratio plain transformers / no reflection, per policy step: " + ", ".join(
            f"{p} {(slow[p] / max(slow['steps'], 1)) / max(fast[p] / max(fast['steps'], 1), 1e-9):.2f}x" for p in ("decide", "update")
        ))
    report()
    report("reflect + decide + environment = rollout; total also counts batching and bookkeeping.")
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
