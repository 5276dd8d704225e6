"""Taxi main-job variants for the question "does reflection pay?" (issue: reflection must pay).

Each variant is the taxi cpu preset (`reflectrl pipeline taxi`) with a few settings changed, run as an
ordinary pipeline run folder (resumable: re-run the same command), so its report carries the ceiling rows
and the reflection diagnostics. Both arms always read the same observation and get the same policy SFT
rows, steps and RL budget; only the reflective arm has a reflector.

    python experiments/taxi_reflection/variants.py VARIANT OUT [--seed S]

Variants (each a dict of changes to the preset, applied like the presets' own changes):
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace

from reflectrl.pipeline.presets import preset
from reflectrl.pipeline.run import run_pipeline

VARIANTS: dict[str, dict] = {
    # Today's main job (described observation, concise reflections, reflector 60 steps).
    "main": {},
    # The paper's observation (map and legend only), reasoned reflections (what the map shows, the verdict on
    # the last move, then "Next: ..."; 43 tokens on average, 57 at most), the reflector as many steps as a policy.
    "map-reasoned": {
        "env_kwargs": {"observation": "map"}, "teacher": "oracle:reasoned", "reflection_tokens": 60, "reflector_steps": 120,
    },
    # The same with the described observation: what the observation alone changes.
    "described-reasoned": {"teacher": "oracle:reasoned", "reflection_tokens": 60, "reflector_steps": 120},
    # map-reasoned without misleading rows: the policy learns to follow the reflection.
    "map-reasoned-trusting": {
        "env_kwargs": {"observation": "map"}, "teacher": "oracle:reasoned", "reflection_tokens": 60, "reflector_steps": 120,
        "misleading": 0.0,
    },
    # described-reasoned without misleading rows: the reflector copies the facts the observation states, the policy
    # learns to follow it (the first variant showed a 120-step reflector cannot read positions off the map).
    "described-reasoned-trusting": {"teacher": "oracle:reasoned", "reflection_tokens": 60, "reflector_steps": 120, "misleading": 0.0},
    # described-reasoned-trusting with each menu entry as "action (label)": the label comes right after the
    # words the reflection recommends, as on ALFWorld and AutoExplore, where this layout raised the reflective
    # policy's follow rate (34% -> 92% of held-out rows on ALFWorld).
    "described-reasoned-trusting-label-after": {
        "teacher": "oracle:reasoned", "reflection_tokens": 60, "reflector_steps": 120, "misleading": 0.0, "label_after": True,
    },
    # map-reasoned with reflections sampled at temperature 1 during RL (the paper's setting).
    "map-reasoned-sampled": {
        "env_kwargs": {"observation": "map"}, "teacher": "oracle:reasoned", "reflection_tokens": 60, "reflector_steps": 120,
        "reflection_temperature": 1.0,
    },
}


def variant_preset(name: str, seed: int = 0):
    """The taxi cpu preset with the variant's changes."""
    changes = dict(VARIANTS[name])
    base = preset("cpu", "taxi")
    data = base.data
    if "teacher" in changes:
        data = replace(data, teacher=changes.pop("teacher"))
    if "misleading" in changes:
        data = replace(data, misleading=changes.pop("misleading"))
    roles = {role: dict(settings) for role, settings in base.sft_by_role.items()}
    if "reflector_steps" in changes:
        roles["reflector"] = {**roles.get("reflector", {}), "max_steps": changes.pop("reflector_steps")}
    rl = base.rl
    if "reflection_temperature" in changes:
        rl = replace(rl, reflection_temperature=changes.pop("reflection_temperature"))
    env_kwargs = {**base.env_kwargs, **changes.pop("env_kwargs", {})}
    return replace(base, data=data, sft_by_role=roles, rl=rl, env_kwargs=env_kwargs, seed=seed, **changes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    command = "python experiments/taxi_reflection/variants.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    result = run_pipeline("taxi", variant_preset(args.variant, args.seed), args.out, command=command, progress=not args.quiet)
    print(result.verdict)
    print(f"Report: {result.report}")


if __name__ == "__main__":
    main()
