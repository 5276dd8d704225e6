"""Copy what a multi-seed run's report rests on into the experiments tree, without the adapters and checkpoints.

Kept per run: report.md, timing.md, pipeline.json and the plots; per seed: its report, timing, pipeline.json, every
stage's DONE.json, the RL runs' metrics.jsonl, every evaluation's eval.md and eval.json, and the reflective rows'
episodes (gzipped), which the reflection diagnostics and the viewer read. `reflectrl.pipeline.aggregate` rebuilds
the report over seeds from exactly these files. Machine paths in the copied text become ``runs/NAME``.

    python experiments/collect_seeds.py RUN DEST [--name NAME]
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
from pathlib import Path

TEXT = ("report.md", "timing.md", "pipeline.json")
EPISODES_KEPT = ("eval-sft-reflect", "eval-rl-reflect", "eval-sft-reflect-dagger", "eval-rl-reflect-positive")


def _copy_text(source: Path, target: Path, run: Path, name: str) -> None:
    text = source.read_text(encoding="utf-8")
    text = re.sub(re.escape(str(run.absolute())) + r"(?=[/\s\"'`)]|$)", f"runs/{name}", text)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def collect(run: Path, dest: Path, name: str) -> None:
    for folder in [run] + sorted(p for p in run.glob("seed-*") if p.is_dir()):
        into = dest / folder.relative_to(run)
        for file in TEXT:
            if (folder / file).is_file():
                _copy_text(folder / file, into / file, run, name)
        for png in folder.glob("*.png"):
            into.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, into / png.name)
        for done in folder.glob("*/DONE.json"):
            _copy_text(done, into / done.relative_to(folder), run, name)
        for metrics in folder.glob("*/run/metrics.jsonl"):
            _copy_text(metrics, into / metrics.relative_to(folder), run, name)
        for evaluated in folder.glob("eval-*/*/eval.*"):
            if evaluated.suffix in (".md", ".json"):
                _copy_text(evaluated, into / evaluated.relative_to(folder), run, name)
        for stage in EPISODES_KEPT:
            for episodes in folder.glob(f"{stage}/*/episodes.jsonl"):
                target = into / episodes.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(episodes, "rb") as source, gzip.GzipFile(target.with_suffix(".jsonl.gz"), "wb", mtime=0) as packed:
                    shutil.copyfileobj(source, packed)
        for stats in folder.glob("dagger-data/stats.json"):
            _copy_text(stats, into / stats.relative_to(folder), run, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--name", default=None, help="The run's name in the copied text (default: the run folder's name).")
    args = parser.parse_args()
    collect(args.run, args.dest.absolute(), args.name or args.run.absolute().name)


if __name__ == "__main__":
    main()
