"""Does a reflector trained with another SFT setting recommend the oracle's move more often? One seed, SFT only.

Retrains the reflector of a finished `reflectrl pipeline taxi` run (its own `sft-reflector` settings and data, with the
changes given) and evaluates the run's SFT reflective policy reading it on every drop-off start state, as the
pipeline's row "SFT only, with reflection" does; the report's reflection diagnostics (reflector right, follow rate,
success when every reflection was right) compare it with the run's own row.

    python experiments/taxi_focal/probe.py RUN OUT --set focal_gamma=2 [--set max_steps=240] [--threads 2]
    python experiments/taxi_focal/probe.py RUN OUT --teacher oracle:mapped --reflection-tokens 64

With `--teacher` the reflector trains on new teacher data instead of the run's: the pipeline's own data stage with
the run's data settings and that teacher (into OUT/data); the policy still is the run's, trained on the run's data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

from reflectrl.pipeline.presets import parse_assignments
from reflectrl.trainers.sft import run_warmup
from reflectrl.trainers.sft_config import SFTConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="finished pipeline run folder (one seed)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--set", dest="changes", action="append", default=[], help="SFTConfig field=value")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--teacher", default=None, help="teacher of new reflector data (default: the run's data)")
    parser.add_argument("--reflection-tokens", type=int, default=None, help="reflection budget (default: the run's)")
    args = parser.parse_args()
    preset = json.loads((args.run / "pipeline.json").read_text(encoding="utf-8"))["preset"]
    data = args.run / "data"
    if args.teacher:
        from reflectrl.pipeline.console import StageLines
        from reflectrl.pipeline.presets import preset as named_preset
        from reflectrl.pipeline.stage_functions import data_stage

        settings = named_preset(preset["name"], "taxi")
        settings = replace(settings, data=replace(settings.data, **{**preset["data"], "teacher": args.teacher}))
        data = args.out / "data"
        if not (data / "stats.json").is_file():
            print("data", json.dumps(data_stage("taxi", settings, StageLines(), data)), flush=True)

    saved = json.loads((args.run / "sft-reflector" / "warmup_config.json").read_text(encoding="utf-8"))
    known = {f.name for f in fields(SFTConfig)}
    config = SFTConfig(**{k: v for k, v in saved.items() if k in known})
    changes = parse_assignments(args.changes)
    # The saved path is relative to where the pipeline ran; the file is in the run's own data folder.
    config = replace(config, **changes, data=str(data / Path(config.data).name), out=str(args.out / "sft-reflector"), threads=args.threads, resume=True, extra={"probe_changes": changes})
    result = run_warmup(config, show_progress=False)
    print("reflector", json.dumps(result.metrics))

    command = [
        sys.executable, "-m", "reflectrl.cli.main", "eval", "taxi", "--agent", "reflect",
        "--policy", str(args.run / "sft-policy"), "--reflector", str(args.out / "sft-reflector"),
        "--level", preset["level"], "--horizon", str(preset["horizon"]), "--episodes", str(preset["eval"]["episodes"]),
        "--batch-size", str(preset["eval"]["batch_size"]), "--reflection-tokens", str(args.reflection_tokens or preset["reflection_tokens"]),
        "--seed", str(preset["seed"]), "--out", str(args.out / "eval-sft-reflect"),
    ] + (["--threads", str(args.threads)] if args.threads else [])
    print(" ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
