"""Taxi seeds with today's taxi cpu preset, forked from a finished multi-seed run of an earlier preset that differs
only after SFT.

The reflector's DAgger round (`Preset.dagger`, `reflectrl.datagen.dagger`) and the RL trust region
(`RLConfig.max_kl`) change only what comes after the SFT stages: the round's stages, the two RL runs and the
evaluations of their rows. The teacher data, the three SFT runs and the evaluations of the SFT rows have the same
settings and inputs, so this script copies them from SOURCE instead of training them again, writes today's preset
into the copy's pipeline.json files, removes the stages that change (`REDONE`), and runs the multi-seed pipeline
there: it skips the copied stages (their DONE.json) and runs the rest. A fresh `reflectrl pipeline taxi --seeds ...`
runs every stage from scratch and gives the same results on the same machine and thread count.

    python experiments/taxi_dagger/run_round.py SOURCE OUT --seeds 3,4 [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

from reflectrl.pipeline.plan import saved_settings
from reflectrl.pipeline.presets import preset
from reflectrl.pipeline.seeds import parse_seeds, run_seeds, seed_folder
from reflectrl.pipeline.stages import CONFIG
from reflectrl.storage import atomic_write_json

REDONE = ("rl-reflect", "rl-plain", "eval-rl-reflect", "eval-rl-plain", "eval-rl-ceiling")
"""Stages whose settings or inputs the round and the trust region change (everything else is copied)."""


def fork(source: Path, out: Path, seeds: list[int], chosen) -> None:
    """Copy `source`'s shared stages and each seed's unchanged stages into `out`, with `chosen` in every pipeline.json."""
    if out.exists():
        return  # a re-run continues the fork it made
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("report.md", "*.png", "timing.md", "view.html", "checkpoints"))
    for folder in [out] + [out / seed_folder(seed) for seed in seeds]:
        saved = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        seed_preset = chosen if folder == out else replace(chosen, training_seed=int(folder.name.split("-")[1]))
        saved["preset"] = saved_settings("taxi", seed_preset)
        atomic_write_json(folder / CONFIG, saved)
        if folder != out:
            for name in REDONE:
                shutil.rmtree(folder / name, ignore_errors=True)
            for name in ("report.md", "success.png", "learning_curves.png", "timing.md", "view.html"):
                (folder / name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    chosen = preset("cpu", "taxi")
    fork(args.source, args.out, seeds, chosen)
    run_seeds(
        "taxi", chosen, args.out, seeds, parallel=args.parallel, threads=args.threads, progress=False,
        command=f"python experiments/taxi_dagger/run_round.py SOURCE {args.out} --seeds {args.seeds}",
    )


if __name__ == "__main__":
    main()
