"""Continue the RL stages of a finished ALFWorld pipeline run for more iterations; evaluate them as the pipeline does.

Run 3's Reflect-RL made 2 updates in 4 iterations (its other iterations had no successful episode, and a GRPO
group with one return teaches nothing). This asks what the same run does with more iterations: each RL run
resumes from its last checkpoint (iteration 4) in a copy, with only `iterations` changed (a setting a resumed
run may change), so iterations 5.. are what the pipeline would have run with a larger budget. The stages are
the pipeline's own functions; the evaluation plays the same 26 unseen-room games, reusing the run's
reflection cache like the pipeline's own evaluations.

    ALFWORLD_DATA=runs/alfworld-games python experiments/alfworld_rl/more_rl.py runs/pipeline-alfworld \
        runs/alfworld-more-rl --iterations 8

Run it from the folder the pipeline ran in (the run's game folder is a relative path). Re-running resumes.
Writes OUT/summary.md: each continued row next to its SFT start and its 4-iteration result, paired seed by seed.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path

from reflectrl.evaluation.paired import compare_paired
from reflectrl.evaluation.tables import pct
from reflectrl.pipeline import plan
from reflectrl.pipeline.console import StageLines
from reflectrl.pipeline.presets import preset as get_preset
from reflectrl.pipeline.report import eval_episodes, rl_curve
from reflectrl.pipeline.stage_functions import eval_stage, local_reflector, rl_stage
from reflectrl.pipeline.stages import CONFIG, Stage, StageRunner
from reflectrl.run_settings import as_saved, changed_settings, read_saved

ENV = "alfworld"
LEVEL = "full"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="finished `reflectrl pipeline alfworld` run folder")
    parser.add_argument("out", type=Path, help="folder of the continued runs and their evaluations")
    parser.add_argument("--iterations", type=int, default=8, help="RL iterations in all (more than the run's own)")
    parser.add_argument("--rows", default="rl-reflect,rl-plain", help="RL stages to continue, comma-separated")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()

    saved = read_saved(args.source / CONFIG)
    preset = get_preset(saved["preset"]["name"], ENV)
    preset = replace(preset, env_kwargs={**preset.env_kwargs, **saved["preset"]["env_kwargs"]})
    if changed_settings(saved, as_saved({"env": ENV, "preset": plan.saved_settings(ENV, preset)})):
        raise SystemExit(f"{args.source} was not made with this checkout's {preset.name!r} preset; nothing to continue")
    longer = replace(preset, rl=replace(preset.rl, iterations=args.iterations))
    planned = saved["preset"]["rl"]["iterations"]
    wanted = args.rows.split(",")

    args.out.mkdir(parents=True, exist_ok=True)
    # One console for the runner and the stage functions: a stage draws its progress inside its runner block.
    progress = StageLines(print, live=not args.quiet)
    runner = StageRunner(args.out, {"source": str(args.source.resolve()), "iterations": args.iterations}, lines=progress)
    # The evaluation names its reflector relative to the run folder, as the pipeline's does.
    link = args.out / "sft-reflector"
    if not link.exists():
        link.symlink_to((args.source / "sft-reflector").resolve(), target_is_directory=True)
    if not (args.out / plan.REFLECTION_CACHE).exists():
        shutil.copytree(args.source / plan.REFLECTION_CACHE, args.out / plan.REFLECTION_CACHE)

    settings = {s.key: s for s in plan.SETTINGS}
    lines = [
        f"# {args.source.name}: RL continued to {args.iterations} iterations ({LEVEL}, every valid_unseen game, greedy)",
        "",
        "| row | success | 95% interval | mean return | vs SFT start: won / lost, McNemar p, return diff [95%] "
        f"| vs {planned} iterations: won / lost, return diff [95%] | training successes per iteration |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage, policy, reflector, label in plan.RL_JOBS:
        if stage not in wanted:
            continue
        if not (args.out / stage / plan.RL_RUN).exists():
            shutil.copytree(args.source / stage / plan.RL_RUN, args.out / stage / plan.RL_RUN)
        runner.run(Stage(stage, partial(
            rl_stage, ENV, longer, args.source / policy, args.source / reflector if reflector else None, local_reflector, progress,
        )))
        record = runner.run(Stage(f"eval-{stage}", partial(
            eval_stage, ENV, preset, settings[stage], args.out, progress, local_reflector,
        )))
        start = dict(plan.PAIRED)[stage]
        after = eval_episodes(args.out, stage, LEVEL)
        vs_sft = compare_paired(eval_episodes(args.source, start, LEVEL), after, seed=preset.seed)
        vs_before = compare_paired(eval_episodes(args.source, stage, LEVEL), after, seed=preset.seed)
        summary = record["summary"]["summary"]
        wins = [round(rate * longer.rl.episodes_per_iter) for _, rate in rl_curve(args.out / stage, "train/success")]
        lines.append(
            f"| {label} | {pct(summary['success'])} | [{pct(summary['ci_low'])}, {pct(summary['ci_high'])}] "
            f"| {summary['mean_return']:+.2f} "
            f"| {vs_sft.won} / {vs_sft.lost}, p = {vs_sft.mcnemar_p:.2g}, {vs_sft.return_difference:+.2f} "
            f"[{vs_sft.return_ci_low:+.2f}, {vs_sft.return_ci_high:+.2f}] "
            f"| {vs_before.won} / {vs_before.lost}, {vs_before.return_difference:+.2f} "
            f"[{vs_before.return_ci_low:+.2f}, {vs_before.return_ci_high:+.2f}] | {', '.join(map(str, wins))} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
