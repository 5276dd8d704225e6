"""Taxi seeds with the reflector's DAgger round, forked from a finished multi-seed run of the same preset without it.

The round (`Preset.dagger`, `reflectrl.datagen.dagger`) changes only Reflect-RL's side after SFT: its reflector, so
the ``rl-reflect`` stage, its evaluation and its ceiling row. Every other stage (teacher data, the three SFT runs, RL
without reflection, every other evaluation) has the same settings and inputs with or without it, so this script
copies them from SOURCE instead of training them again, writes the round's preset into the copy's pipeline.json
files, and runs the multi-seed pipeline there: it skips the copied stages (their DONE.json) and runs the round, then
Reflect-RL and its evaluations. A fresh `reflectrl pipeline taxi --seeds ...` with the round in the preset runs the
same stages from scratch.

    python experiments/taxi_dagger/run_round.py SOURCE OUT --seeds 3,4 --episodes 200 --steps 60 [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

from reflectrl.pipeline.presets import DaggerSettings, preset
from reflectrl.pipeline.run import saved_settings
from reflectrl.pipeline.seeds import parse_seeds, run_seeds, seed_folder
from reflectrl.pipeline.stages import CONFIG
from reflectrl.storage import atomic_write_json

CHANGED = ("rl-reflect", "eval-rl-reflect", "eval-rl-ceiling")
"""Stages whose inputs the round changes (everything else is copied)."""


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
            for name in CHANGED:
                shutil.rmtree(folder / name, ignore_errors=True)
            for name in ("report.md", "success.png", "learning_curves.png", "timing.md", "view.html"):
                (folder / name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--share", type=float, default=1.0)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    chosen = replace(preset("cpu", "taxi"), dagger=DaggerSettings(args.episodes, args.steps, args.share))
    fork(args.source, args.out, seeds, chosen)
    run_seeds(
        "taxi", chosen, args.out, seeds, parallel=args.parallel, threads=args.threads, progress=False,
        command=f"python experiments/taxi_dagger/run_round.py SOURCE {args.out} --seeds {args.seeds} --episodes {args.episodes} "
        f"--steps {args.steps} --share {args.share}",
    )


if __name__ == "__main__":
    main()
