"""The taxi environment's changes to each pipeline preset, and `TAXI_CPU_LESSONS`: the part of its cpu preset
that the cpu presets of the other environments start from.

Time of ``reflectrl pipeline taxi --preset cpu`` (level dropoff, horizon 10, concise reflections),
measured from two fresh clones on the project's 2-core CPU with 2 torch threads, float32, idle
machine (experiments/taxi_pipeline): 43 min 03 s, and 45 min 10 s in an earlier run whose prompted
row played 20 episodes (33 s more; its other stages 11% faster to 37% slower); the same table
and byte-identical adapters; peak memory 5.4-5.5 GiB. Another machine's CPU trained other adapters
from the same data (its table and why: experiments/taxi_pipeline, "Another machine").

=============================  =======  =================================================
stage                          seconds  notes
=============================  =======  =================================================
data (120 oracle episodes)     4
SFT reflector (60 x 4 rows)    281-317  4.7-5.3 s per step
SFT policies (120 x 4 rows)    464-523  3.9-4.4 s per step (plain rows are shorter)
2 x RL (GRPO, 4 iterations x   224-645  Reflect-RL costs more (reflections, 42-78% of
12 episodes)                            them from the cache per iteration)
4 trained rows (100 starts)    70-200   reflect rows cost more (measured on 100 seeds)
prompted row (10 seeds)        19
oracle, random, report         1
=============================  =======  =================================================

Since then the taxi cpu preset adds the reflector's DAgger round (`DaggerSettings`: its play and labelling of 200
train episodes, 60 reflector steps, one more evaluation row), an RL trust region, reasoned reflections of up to
60 tokens and the reflector's own RL (`RLConfig.train_reflector`): seed 0 of the preset before the last took 89.8
minutes alone (experiments/taxi_dagger), and the reflector's RL adds about 12 to the Reflect-RL stage and 5 to its
evaluation (stage times, experiments/taxi_reflector_rl).
"""

from __future__ import annotations

from typing import Any

TAXI_CPU_LESSONS: dict[str, Any] = {
    # Concise reflections (next move first) and misleading rows (17%): the reflective policy that also saw
    # wrong reflections in SFT was the start from which Reflect-RL improved in experiments/taxi_rl (66% -> 72%).
    "data": {"teacher": "oracle:concise", "misleading": 0.17},
    # The policies' label loss drops late (a plateau near ln 6, then a fall between steps 80 and 120 of
    # 8 rows): a cosine decay over 80 steps ended them mid-fall, flat (held-out loss 1.03, entropy 1.1
    # nats in RL), and GRPO from there lowered greedy success 52% -> 17%. A constant rate for 120 steps
    # leaves them sharp (entropy 0.37) and RL lifts them (plain: 58% -> 65%, experiments/taxi_pipeline).
    # Rows of 4 halve SFT's time, which keeps the taxi run within 45 minutes. The plain policy learns as
    # well as with 8 (held-out label accuracy 83% either way); the reflective policy is left less sharp
    # (75% instead of 100%, loss 0.56 instead of 0.21), and Reflect-RL ends below RL without reflection
    # (61% vs 78%; with 8 rows and 6 RL iterations of 16 episodes, 83 minutes: 69% vs 65%).
    "sft": {"max_steps": 120, "batch_size": 4, "save_steps": 20, "lr_scheduler": "constant_with_warmup"},
    # The reflector's token loss falls early (0.07 at step 50 of 8 rows; held-out 0.15 after 60 steps of 4
    # rows); it decays to a clean end.
    "sft_by_role": {"reflector": {"max_steps": 60, "lr_scheduler": "cosine"}},
    # gamma 0.9 and step groups: the settings under which Reflect-RL improved on its SFT start in
    # experiments/taxi_rl (gamma 1 rewards crashing early over driving on and then crashing);
    # minibatches of 32 steps: a few small Adam steps per iteration instead of one.
    "rl": {"iterations": 4, "episodes_per_iter": 12, "gamma": 0.9, "step_groups": True, "minibatch_size": 32},
}
"""What made the taxi cpu preset learn (experiments/taxi_rl, experiments/taxi_pipeline): the cpu entries of the
other environments start from it (data settings other than teacher and misleading share are per environment)."""

CHANGES: dict[str, dict[str, Any]] = {
    # Drop-off is the paper's reported DangerousTaxi level; its optimal episodes take 1-9 steps.
    # Its menu is always the same six actions, so labels stay fixed: a shuffled label would only
    # add a look-up for the policy to learn, not remove a shortcut.
    "tiny": {"level": "dropoff"},
    # Concise reflections (next move first, 26 tokens on average, 32 at most) fit the reflection budget
    # whole: the default style's average is 60 tokens, so a 24-token budget cut off the recommended
    # move that the policy had learned to read at the end of every teacher reflection.
    # Every one of drop-off's 100 start states once per row, all in one lockstep batch: exact rates (the 100
    # test seeds played before held only 64 distinct starts, and scored the RL rows 6-9 points above the
    # whole level). The prompted model (0 of 20 in the runs before, each episode to the horizon) plays 10
    # seeded episodes, which keeps the run within 45 minutes.
    # Reasoned reflections (the verdict on the last move, the observation's facts in its own words, then
    # "Next:"; 47 tokens on average, 59 at most) and no misleading rows, the reflector as many steps as a
    # policy: with misleading rows the SFT policy followed even the teacher's own reflections in 64% of steps
    # and won 32% of the start states with them (its own reflector: 52%); without, it followed them in 82% and
    # won 69%
    # (experiments/taxi_reflection). The described observation, not the paper's map: a 120-step 135M
    # reflector did not learn to read positions off the map (right in 41% of steps, its agent 0%).
    # Menus as "move south (0)": the label right after the words the reflection recommends. With "0. move south"
    # the SFT policy's label loss sat on a plateau and fell at a step that varied with the seed: over 6 seeds
    # the policy reading the teacher's own reflections won 9% to 99% of the start states (experiments/taxi_seeds);
    # with the label after, seed 0's policy reached held-out label accuracy 100% and won all 100 with them
    # (experiments/taxi_reflection).
    # No entropy bonus: the label-after reflective policy leaves SFT near-deterministic (entropy 1e-4 nats), so
    # the bonus's gradient is tiny and Adam, which divides by its size, turns it into full-size steps in no
    # useful direction: seed 0's first RL iteration moved the policy by 0.87 nats of KL, after which it never
    # dropped the passenger off (Reflect-RL 0%, from 68% after SFT); without it the update is exactly zero
    # (experiments/taxi_seeds_v2).
    "cpu": {
        "level": "dropoff", "shuffle_labels": False, "label_after": True, "reflection_tokens": 60,
        **TAXI_CPU_LESSONS,
        "data": {"episodes": 120, "teacher": "oracle:reasoned", "misleading": 0.0},
        "sft_by_role": {"reflector": {"max_steps": 120, "lr_scheduler": "cosine"}},
        # A trust region of 0.25 nats per optimizer step: with a zero entropy bonus Adam still turned seed 3's
        # reflective-policy gradient of norm 1e-4 into a step of 1.05 nats of KL, and Reflect-RL fell from 61% to 0%;
        # the steps of the plain policy that RL lifted from 67% to 82% moved it 0.01-0.06 nats
        # (experiments/taxi_dagger).
        # The reflector trained by RL too, from reflections sampled at temperature 1: the SFT policy does what its
        # reflection says (right in 100% of steps where the reflection is right, 0% where it is wrong), so RL of the
        # policy alone left Reflect-RL where its reflector was. On seed 0, Adam 1e-4 on the reflector took it from
        # right in 76.7% of steps to 91.3% and Reflect-RL from 66% to 76% (RL without reflection 52%); started from the
        # first-round reflector instead of the DAgger round's, 84.3% -> 80.2% and 68% -> 70% (experiments/taxi_reflector_rl).
        "rl": {**TAXI_CPU_LESSONS["rl"], "entropy_coef": 0.0, "max_kl": 0.25, "reflection_temperature": 1.0,
               "train_reflector": True, "reflector_lr": 1e-4},
        # The reflector's DAgger round: the SFT agent's visited states on 200 train episodes, labelled by the teacher,
        # with as many first-round rows, 60 more steps. On seed 3 the SFT agent went from 61% to 72% with it (the
        # reflector right in 82.9% of steps instead of 76.5%); the round on the wrongly reflected states alone
        # took it to 15% (experiments/taxi_dagger).
        "dagger": {"episodes": 200, "steps": 60},
        "eval": {"episodes": "all", "batch_size": 100, "prompted_episodes": 10},
    },
    "gpu": {
        "level": "dropoff", "horizon": 20, "shuffle_labels": False, "rl": {"levels": ("pickup", "dropoff"), "curriculum_schedule": (40,)},
        "eval": {"episodes": "all"},
    },
}
"""Changes to each preset for taxi: preset name -> changes, nested like `PRESET_CHANGES`
(`reflectrl.pipeline.presets.ENV_OVERRIDES["taxi"]`)."""
