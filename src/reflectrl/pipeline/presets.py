"""Pipeline presets: every knob of `reflectrl pipeline`, as overrides of each stage's own config.

* ``tiny``: the tiny random model and a handful of episodes; the whole
  pipeline runs in well under a minute. For tests: it checks the plumbing,
  not learning.
* ``cpu``: the embedded default (SmolLM2-135M-Instruct) on a 2-core CPU, in
  float32, every budget a number of steps, iterations or episodes (no time
  limit), so the same command gives the same table on any machine.
* ``gpu``: the paper's setting on one GPU: a 1.5B instruct model with LoRA,
  the paper's RL hyper-parameters (Adam 2e-4, gradient clip 0.3, PPO clip 0.1
  over 3 epochs, entropy bonus, replay of successful episodes), a curriculum
  where the environment has one, and 100 evaluation episodes. The model
  must be in the local Hugging Face cache (or reachable on the Hub).

`preset(name, env)` returns the preset with the environment's own levels,
horizon and sizes filled in (`ENV_OVERRIDES`). Every field can be changed
with `dataclasses.replace` for experiments; the run folder remembers the
exact preset, so a re-run with other settings needs another ``--out``.

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

Knobs, in order of effect: the SFT `max_steps`, `RLConfig.iterations` and `episodes_per_iter`,
`EvalSettings.episodes`, `Preset.reflection_tokens`, `Preset.horizon`. `max_minutes` (SFT) and
`RLConfig.max_minutes` are opt-in safety nets for a time budget, off in every preset: a stage
they stop has trained as many steps as fit on that machine, so the table stops being
reproducible. On a machine shared with other jobs use ``reflectrl pipeline --threads 1``: torch's
two threads then fight the other processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

from reflectrl.run_settings import as_saved
from reflectrl.trainers.rl_config import RLConfig
from reflectrl.trainers.sft import WarmupConfig


@dataclass(frozen=True)
class DataSettings:
    """Teacher data generation (`reflectrl.datagen.GenConfig`)."""

    episodes: int = 40
    """Expert episodes rolled out."""
    negatives: int = 2
    """Negative examples per episode."""
    random_prob: float = 0.1
    """Chance of a random expert action (puts off-path states into the data)."""
    decoy_prob: float = 0.0
    """Chance of the environment's decoy move where it has one (AutoExplore: read another file first; ALFWorld: search another place first)."""
    teacher: str = "oracle"
    """Teacher spec: oracle (offline), openai:MODEL or hf:PATH."""
    misleading: float = 0.0
    """Share of states that also get a policy row with a reflection arguing for a wrong action (label: the oracle's)."""


SFT: dict[str, Any] = {
    "max_steps": 12, "batch_size": 4, "learning_rate": 1e-3, "lr_scheduler": "constant_with_warmup", "warmup_ratio": 0.1,
    "lora_r": 16, "lora_alpha": 32, "lora_layers": 8, "max_length": 1024, "eval_fraction": 0.1, "max_eval_rows": 16,
    "save_steps": 4, "epochs": 1.0, "max_minutes": None,
}
"""Warm-up SFT of each player: `WarmupConfig` fields (see their docs there) that presets set; role, data, output
folder, model, seed and threads come from the stage and the preset."""

RL = RLConfig(iterations=3, episodes_per_iter=8, eval_every=0, eval_episodes=16, checkpoint_every=1, keep_checkpoints=1)
"""Online RL of the policy: the pipeline's `RLConfig` (short runs, a checkpoint every iteration, the learning curve from
training success); env, horizon, seed and (when `levels` is empty) the level come from the preset."""


@dataclass(frozen=True)
class EvalSettings:
    """Held-out evaluation of every setting (`reflectrl.evaluation.harness.EvalConfig`)."""

    episodes: int | str | None = 40
    """Episodes per setting and level: a number of seeds (task splits: of tasks), ``"all"`` for every start state
    where the environment lists them (`TextEnv.start_states`: exact rates) or every task of a task split, or None
    (``"all"`` where there are few, else `harness.DEFAULT_EPISODES` seeds; see `EvalConfig.episodes`)."""
    prompted_episodes: int | None = None
    """Episodes of the prompted base model (None: `episodes`); its invalid answers do not end an
    episode, so each of its episodes runs to the horizon and costs several times a trained row's."""
    batch_size: int = 16
    """Episodes stepped in lockstep."""
    levels: tuple[str, ...] = ()
    """Levels evaluated (empty: the preset's level); reported together and per level."""


@dataclass(frozen=True)
class DaggerSettings:
    """A further SFT round of the reflector on the states its SFT agent visits, labelled by the teacher
    (`reflectrl.datagen.dagger`); Reflect-RL then trains its policy with, and is evaluated with, that reflector."""

    episodes: int = 0
    """Train-split episodes the SFT reflective agent plays greedily (0: no round)."""
    steps: int = 60
    """SFT steps of the round, starting from the SFT reflector's weights (its other SFT settings apply)."""
    first_round_share: float = 1.0
    """Rows of the first round's reflector data mixed in, as a multiple of the visited states' rows."""
    disagreements_only: bool = False
    """Keep only the visited states where the agent's reflection was not the teacher's word for word (the states the
    first round got wrong); otherwise every distinct visited state."""


@dataclass(frozen=True)
class Preset:
    """Everything `reflectrl pipeline` does for one environment."""

    name: str
    """Preset name (tiny, cpu, gpu)."""
    model: str
    """Base model spec of both players and of the prompted baseline."""
    level: str | None = None
    """Level of the teacher data, of RL (without a curriculum) and of the evaluation; None: the hardest."""
    horizon: int | None = None
    """Episode step limit everywhere; None: the environment's default."""
    reflection_tokens: int = 32
    """Longest reflection the reflector writes during RL and evaluation."""
    answer_tokens: int = 4
    """Longest answer of the prompted baseline."""
    seed: int = 0
    """Seed of the teacher data and of the evaluation (its episodes and label shuffles), and of training unless
    `training_seed` is set."""
    training_seed: int | None = None
    """Seed of everything training draws (None: `seed`): SFT's LoRA initialisation, its held-out rows, data order
    and label shuffles, and RL's episode seeds, sampling, label shuffles, replay and minibatches. The teacher data and
    the evaluation episodes do not depend on it, so runs that differ only in it are paired (`reflectrl.pipeline.seeds`)."""
    shuffle_labels: bool = True
    """Shuffle the menu labels per step in the data (the trained policies keep that order in RL and evaluation)."""
    label_after: bool = False
    """Menus as "action (label)" in the data (`protocol.Menu.label_after`; the trained policies keep the layout)."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    device: str | None = None
    """cpu or cuda (None: cuda when available)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra environment keywords for data, RL and evaluation."""
    data: DataSettings = field(default_factory=DataSettings)
    sft: dict[str, Any] = field(default_factory=lambda: dict(SFT))
    """`WarmupConfig` overrides of every SFT run."""
    sft_by_role: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Further `WarmupConfig` overrides for one role (reflector, policy, plain), e.g. more steps for the reflector."""
    rl: RLConfig = field(default_factory=lambda: RL)
    eval: EvalSettings = field(default_factory=EvalSettings)
    dagger: DaggerSettings = field(default_factory=DaggerSettings)

    @property
    def eval_levels(self) -> tuple[str | None, ...]:
        """Levels the evaluation plays (None: the environment's hardest)."""
        return self.eval.levels or (self.level,)

    @property
    def train_seed(self) -> int:
        """The seed SFT and RL draw from."""
        return self.seed if self.training_seed is None else self.training_seed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (stored in the run folder)."""
        settings = asdict(self)
        if self.training_seed is None:
            # A run with one seed saves and reports what it did before training seeds were separate.
            del settings["training_seed"]
        return settings


PRESET_CHANGES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        model="tiny-random", horizon=10, reflection_tokens=4, answer_tokens=2, threads=1, device="cpu",
        data={"episodes": 6, "negatives": 1},
        sft={"max_steps": 2, "batch_size": 2, "lora_layers": None, "max_eval_rows": 4, "save_steps": 1, "eval_fraction": 0.25},
        rl={"iterations": 3, "episodes_per_iter": 4, "micro_batch_size": 16},
        eval={"episodes": 4, "batch_size": 8},
    ),
    "cpu": dict(
        model="smollm2-135m", horizon=10, reflection_tokens=24,
        data={"episodes": 60, "negatives": 2},
        # LoRA on every block learned faster per minute than on the top blocks only (taxi, plain role:
        # held-out loss 1.43 after 50 steps of 8 rows against 1.65; experiments/taxi_sft).
        sft={"max_steps": 24, "batch_size": 8, "lr_scheduler": "cosine", "warmup_ratio": 0.05, "lora_layers": None,
             "max_eval_rows": 24, "save_steps": 8},
        # GRPO with one epoch: the algorithm that lifted taxi drop-off from 44% to 75-80% in
        # experiments/taxi_rl; REINFORCE with a batch-mean baseline collapsed there, and more epochs
        # multiply the update's cost.
        rl={"algo": "grpo", "group_size": 4, "epochs": 1, "iterations": 2, "episodes_per_iter": 8},
        # batch_size >= episodes: all episodes in one lockstep batch, so each reflection round
        # decodes for every running episode at once (rounds, not states, drive the decoding cost).
        eval={"episodes": 30, "batch_size": 64, "prompted_episodes": 10},
    ),
    "gpu": dict(
        model="Qwen/Qwen2.5-1.5B-Instruct", reflection_tokens=64, answer_tokens=8,
        data={"episodes": 500, "negatives": 2},
        sft={"max_steps": -1, "epochs": 2.0, "batch_size": 8, "learning_rate": 2e-4, "lr_scheduler": "cosine",
             "warmup_ratio": 0.05, "lora_layers": None, "max_length": 2048, "max_eval_rows": 200, "save_steps": 100},
        # The paper's RL hyper-parameters.
        rl={"algo": "ppo", "iterations": 150, "episodes_per_iter": 32, "lr": 2e-4, "grad_clip": 0.3, "entropy_coef": 0.01,
            "ppo_clip": 0.1, "epochs": 3, "replay_size": 32, "replay_episodes": 4, "micro_batch_size": 8,
            "eval_every": 10, "eval_episodes": 32, "checkpoint_every": 5},
        eval={"episodes": 100, "batch_size": 32},
    ),
}
"""Each preset as changes to the defaults (`DataSettings`, `SFT`, `RL`, `EvalSettings`, `Preset`); nested dicts
change fields of a stage's settings, the same way `ENV_OVERRIDES` changes a preset for one environment."""


def _changed(base: Preset, changes: dict[str, Any]) -> Preset:
    changes = dict(changes)
    for part in ("data", "rl", "eval", "dagger"):
        if part in changes:
            changes[part] = replace(getattr(base, part), **changes[part])
    if "sft" in changes:
        changes["sft"] = {**base.sft, **changes["sft"]}
    if "sft_by_role" in changes:
        roles = {**base.sft_by_role}
        for role, settings in changes["sft_by_role"].items():
            roles[role] = {**roles.get(role, {}), **settings}
        changes["sft_by_role"] = roles
    return replace(base, **changes)


PRESETS: dict[str, Preset] = {
    name: _changed(Preset(name=name, model="", sft=dict(SFT), rl=RL), changes) for name, changes in PRESET_CHANGES.items()
}

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

ENV_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "taxi": {
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
    },
    "corridor": {
        "tiny": {"level": "short"},
        "cpu": {"level": "medium", "horizon": None},
        "gpu": {"level": "long", "rl": {"levels": ("short", "medium", "long"), "curriculum_schedule": (20, 50)}},
    },
    "autoexplore": {
        # Test split = repositories never used for training; the prompts are long (listings, file heads).
        "tiny": {"level": "depth1", "env_kwargs": {"view_chars": 200}},
        # The taxi cpu lessons (`TAXI_CPU_LESSONS`; concise reflections: next command first, 20-30 tokens).
        # Teacher data on train tasks of every depth (0-3): the same moves (cd towards the question's
        # topic, cat, id) at every depth. RL on depth 1 for two iterations, then depth 2 (the paper's
        # curriculum, shortened); every test task at depth 1 (48) and depth 2 (64) for every row.
        # Decoy reads (half the time, another file of the folder before the answer): with the oracle's reads
        # only, every read on the expert's path was followed by "id" (58% of the rows after a read; the rest
        # were negatives), and the SFT reflective agent answered with the first file it read (wrong id in 96%
        # of its depth-1 held-out episodes; experiments/autoexplore_rl).
        # Policies 200 steps: 120 left the reflective policy following its reflection's command in 61% of steps.
        # Labels after the actions, as on ALFWorld, whose shuffled menus of about 22 entries this label layout
        # took the reflective policy from following its reflection in 34% of held-out rows to 92%.
        "cpu": {
            "level": "all", "horizon": 8, "label_after": True, "env_kwargs": {"view_chars": 300},
            **TAXI_CPU_LESSONS,
            "data": {"episodes": 200, "decoy_prob": 0.5, **TAXI_CPU_LESSONS["data"]},
            "sft": {**TAXI_CPU_LESSONS["sft"], "max_steps": 200},
            # 400 reflector steps named the oracle's first folder in 2/3 of the depth-1 test tasks but still did not
            # tell a file that answers from another after reading it (`id` after either as often; 40 minutes instead
            # of 12): the budget stays at 100 steps.
            "sft_by_role": {"reflector": {"max_steps": 100, "lr_scheduler": "cosine"}},
            # Groups whose episodes all got one return carry no policy-gradient signal: their passes are left out
            # (run 1's training success was 0-17% per iteration, so most groups are such groups).
            "rl": {**TAXI_CPU_LESSONS["rl"], "levels": ("depth1", "depth2"), "curriculum_schedule": (2,), "skip_zero_advantage": True},
            "eval": {"episodes": None, "levels": ("depth1", "depth2"), "batch_size": 64, "prompted_episodes": None},
        },
        "gpu": {
            "level": "depth2", "horizon": 15,
            "rl": {"levels": ("depth0", "depth1", "depth2"), "curriculum_schedule": (30, 80)},
            "eval": {"episodes": None, "levels": ("depth1", "depth2")},
        },
    },
    "alfworld": {
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
    },
    "textworld": {
        # Coin collector (the default challenge); two games per split keep the tiny run's generation to seconds.
        "tiny": {"level": "easy", "env_kwargs": {"games": 2}},
        # A first proposal from the other environments' cpu presets, not run end to end yet. Coin collector at the
        # medium level: a chain of 2-5 rooms with a dead end beside each, walkthroughs of 2-5 commands, menus of
        # 4-6 commands; the objective spells out the route, so a player that keeps track of its progress wins.
        # The taxi cpu lessons (`TAXI_CPU_LESSONS`) with the taxi run's reasoned reflections and no misleading
        # rows ("I am in the Kitchen. Last command (go south) was good. The coin is here. Next: take coin."), the
        # reflector as many steps as a policy, labels after the actions (as on the other menus that change from
        # step to step). Teacher data at this level: reflections of 19-33 tokens (mean 27), so 40 reflection
        # tokens hold every one; reflector prompts of 159-258 tokens, policy prompts of 180-282 (40 episodes,
        # SmolLM2's tokenizer). RL on easy games for two iterations, then medium; every test game of both levels.
        # Reference rows at horizon 12 on the 40 test games: oracle 100% at both levels (3.5 steps), random 37.5%
        # at easy, 10% at medium. 40 games per split: the run generates at most 160 games (2-9 s each on a busy
        # 2-core CPU, once per cache) instead of 280 with the default 100 train games.
        "cpu": {
            "level": "medium", "horizon": 12, "label_after": True, "reflection_tokens": 40,
            "env_kwargs": {"challenge": "coin_collector", "games": 40},
            **TAXI_CPU_LESSONS,
            "data": {"episodes": 120, "teacher": "oracle:reasoned", "misleading": 0.0},
            "sft_by_role": {"reflector": {"max_steps": 120, "lr_scheduler": "cosine"}},
            "rl": {**TAXI_CPU_LESSONS["rl"], "levels": ("easy", "medium"), "curriculum_schedule": (2,), "skip_zero_advantage": True},
            "eval": {"episodes": None, "levels": ("easy", "medium"), "batch_size": 64, "prompted_episodes": 10},
        },
        "gpu": {
            "level": "hard", "horizon": 30, "env_kwargs": {"challenge": "treasure_hunter"},
            "rl": {"levels": ("easy", "medium", "hard"), "curriculum_schedule": (30, 80)}, "eval": {"episodes": None},
        },
    },
}
"""Per-environment changes to each preset (nested dicts replace fields of the stage settings)."""


def saved_defaults() -> dict[str, Any]:
    """What each saved preset field means when a run folder lacks it: its default, as an older version ran it.

    `StageRunner` fills these in before it compares a folder's pipeline.json with the current settings, so a
    field added since the folder was made is no change unless a preset sets it to something else. The SFT
    overrides hold only the keys a preset sets, so a key missing there means `WarmupConfig`'s default, and the
    RL part is a whole `RLConfig`.
    """
    defaults = asdict(Preset(name="", model=""))
    del defaults["name"], defaults["model"]  # every version saved them
    defaults["sft"] = {
        f.name: f.default if f.default is not MISSING else f.default_factory()
        for f in fields(WarmupConfig) if f.default is not MISSING or f.default_factory is not MISSING
    }
    defaults["rl"] = RLConfig().to_dict()
    return as_saved(defaults)


def _env_overrides(env: str) -> Mapping[str, Mapping[str, Any]]:
    """`ENV_OVERRIDES` of a built-in environment, else the presets its registration gives (`EnvEntry.presets`)."""
    if env in ENV_OVERRIDES:
        return ENV_OVERRIDES[env]
    from reflectrl.envs import lookup

    try:
        return lookup(env).presets
    except KeyError:
        return {}


def preset(name: str, env: str, changes: Mapping[str, Any] | None = None) -> Preset:
    """The named preset with `env`'s overrides applied, then `changes` (nested like `PRESET_CHANGES`; see
    `parse_assignments` and `read_changes` for the command line's ``--set`` and ``--config``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    chosen = _changed(PRESETS[name], _env_overrides(env).get(name, {}))
    if changes:
        chosen = _changed(chosen, _checked_changes(chosen, changes))
    unknown = sorted(set(chosen.sft).union(*chosen.sft_by_role.values()) - {f.name for f in fields(WarmupConfig)})
    if unknown:
        raise ValueError(f"preset {name!r} sets unknown SFT settings: {', '.join(unknown)}")
    return chosen


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """``["rl.iterations=8", "sft.max_steps=200"]`` -> ``{"rl": {"iterations": 8}, "sft": {"max_steps": 200}}``.

    A value is read as JSON where it parses (numbers, true/false, null, lists), else taken as text, so
    ``data.teacher=oracle:concise`` needs no quotes. Keys are checked against the preset by `preset`.
    """
    changes: dict[str, Any] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise ValueError(f"--set takes KEY=VALUE with a dotted KEY (rl.iterations=8), not {text!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, last = key.strip().split(".")
        target = changes
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {text!r}: {part} is given a value and sub-settings")
        target[last] = value
    return changes


def read_changes(path: str | os.PathLike) -> dict[str, Any]:
    """Preset changes from a TOML file, nested as `parse_assignments` makes them (``[rl]`` then ``iterations = 8``)."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as err:
        raise ValueError(f"cannot read the settings file {path}: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err


def merge_changes(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """`first` with `second` over it, nested dicts merged key by key (a file's settings, then ``--set``)."""
    merged = dict(first)
    for key, value in second.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_changes(merged[key], value)
        else:
            merged[key] = value
    return merged


_FREE_FORM = frozenset({"env_kwargs", "sft", "sft_by_role"})
"""Preset fields that are dicts of their own: any key goes (SFT keys are checked against `WarmupConfig` afterwards)."""


def _checked_changes(base: Preset, changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` with each value given the type of the setting it replaces; an unknown key names the known ones."""
    known = {f.name for f in fields(Preset)}
    checked: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in known or key == "name":
            raise ValueError(f"unknown setting {key!r}; choose from {', '.join(sorted(known - {'name'}))}")
        current = getattr(base, key)
        if key in _FREE_FORM:
            if not isinstance(value, Mapping):
                raise ValueError(f"{key} takes sub-settings ({key}.NAME=VALUE), not one value")
            checked[key] = dict(value)
        elif is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"{key} takes sub-settings ({key}.NAME=VALUE), not one value")
            parts = {f.name for f in fields(current)}
            for name in value:
                if name not in parts:
                    raise ValueError(f"unknown setting {key}.{name}; choose from {', '.join(sorted(parts))}")
            checked[key] = {name: _typed(f"{key}.{name}", getattr(current, name), v) for name, v in value.items()}
        else:
            checked[key] = _typed(key, current, value)
    return checked


def _typed(key: str, current: Any, value: Any) -> Any:
    """`value` as the type of the setting's `current` value (a list for a tuple, an int for a float)."""
    if isinstance(value, Mapping):
        raise ValueError(f"{key} takes one value, not sub-settings")
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ValueError(f"{key} takes true or false, not {value!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, (int, float)) and not isinstance(current, bool) and isinstance(value, str):
        raise ValueError(f"{key} takes a number, not {value!r}")
    return value
