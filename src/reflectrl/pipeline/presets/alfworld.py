"""The ALFWorld environment's changes to each pipeline preset (its cpu preset starts from `TAXI_CPU_LESSONS`)."""

from __future__ import annotations

from typing import Any

from reflectrl.pipeline.presets.taxi import TAXI_CPU_LESSONS

CHANGES: dict[str, dict[str, Any]] = {
    # Test split = valid_unseen (room layouts never seen in training); pick and place tasks.
    "tiny": {"level": "easy"},
    # Meant for `reflectrl alfworld make-games --n 260` (208 train, 26 valid_seen, 26 valid_unseen games) as
    # ALFWORLD_DATA; the evaluation plays every valid_unseen game once (the default set of 20 games has 3).
    # Compact game text and a history of 4 steps (see `ALFWorldEnv`): mean prompt 241 tokens instead of 305, the
    # longest 292 instead of 665 (experiments/alfworld_pipeline/README.md).
    # The taxi cpu lessons (`TAXI_CPU_LESSONS`; concise reflections from the ALFWorld explainer: next command
    # first, about 26 tokens).
    # The search: the planner walks straight to where the object is hidden, which no player can see (run 1's SFT
    # reflector named the planner's place in 18% of search steps; with decoys, detours to other unvisited places,
    # its agent still revisited a place in 57% of its `go to`s). The oracle here searches as a player could
    # (`oracle_search="prior"`): receptacles in the order the train games hide the object type in, closed ones
    # opened, the first goal object seen taken; the planner after that. It wins 23 of the 26 valid_unseen games
    # within 15 steps, and its every search step follows from the task, the room's receptacles and the places
    # visited so far, which the status line lists (`show_visited`; the history shows only the last 4 steps).
    # Holding the object it goes to the target receptacle of the lowest number (the planner's nearest one is
    # not shown), and the errand's reflections give the task's own words ("The task is to put a cd in shelf."):
    # with "cd 1 belongs in a drawer" and the search's "A cd is often in a drawer", the 200-step reflector of
    # the first prior-search run named the wrong target type, from where such objects are found.
    # Labels after the actions ("go to drawer 1 (G)", `Menu.label_after`): with the label first, 160 SFT steps
    # left the reflective policy taking its reflection's command in 34% of held-out rows (a shuffled menu of
    # about 22 entries; run 1: 0 of 26 unseen games, 13% of steps followed); with the label after, 92% on the
    # same rows (experiments/alfworld_rl).
    # Grounded reflections (teacher `oracle:grounded`): the fact first, then the command ("soapbottle 1 is here, in
    # cabinet 3. Next: take soapbottle 1 from cabinet 3."). With the command first, the 300-step reflector named the
    # expert's `take` in 29% of the expert's unseen-room states and its `move` in 22% (it went on searching with
    # the object in view, and walked away from the target); with the fact first, 96% and 52%, the errand's
    # `go to` 46% -> 79%, the search unchanged (experiments/alfworld_rl/reflector_probe.py). 32 reflection
    # tokens: the command ends within 24 tokens in 82% of the grounded teacher rows, within 32 in 98%.
    "cpu": {
        "level": "full", "horizon": 15, "label_after": True, "reflection_tokens": 32,
        "env_kwargs": {"history_length": 4, "show_visited": True, "oracle_search": "prior"},
        **TAXI_CPU_LESSONS,
        "data": {"episodes": 200, **TAXI_CPU_LESSONS["data"], "teacher": "oracle:grounded"},
        "sft": {**TAXI_CPU_LESSONS["sft"], "max_steps": 160},
        # The reflector 200 steps instead of 60 (held-out token loss 0.157 -> 0.096): with the label-after policy
        # the SFT reflective agent won 1 of 26 unseen games with the 60-step reflector, 3 of 26 with this one; the
        # 60-step one wrote the errand's target wrong ("belongs in a countertop" for a drawer task).
        # 300 steps: on the expert's unseen-room states the 200-step reflector named the expert's command in 49%
        # of search steps and 17-33% of errand steps (experiments/alfworld_rl/reflector_probe.py).
        "sft_by_role": {"reflector": {"max_steps": 300, "lr_scheduler": "cosine"}},
        # RL starts on games whose walkthrough has at most 4 steps (in run 1 all 12 episodes of the first
        # full-level iteration failed, and GRPO learns nothing from a group with one return), and leaves out
        # the forward and backward passes of such groups (541 s of run 1's 863 s iteration).
        "rl": {**TAXI_CPU_LESSONS["rl"], "levels": ("easy", "full"), "curriculum_schedule": (2,), "skip_zero_advantage": True},
        "eval": {"episodes": None, "prompted_episodes": 10},
    },
    "gpu": {"level": "full", "horizon": 30, "rl": {"levels": ("easy", "medium", "full"), "curriculum_schedule": (30, 80)}, "eval": {"episodes": 100}},
}
"""Changes to each preset for alfworld: preset name -> changes, nested like `PRESET_CHANGES`
(`reflectrl.pipeline.presets.ENV_OVERRIDES["alfworld"]`)."""
