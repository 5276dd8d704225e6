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

Each built-in environment's changes are in a module of this package named after it (`taxi`, `corridor`,
`autoexplore`, `alfworld`, `textworld`), each group of settings with a one-line reason and a link to the study
that decided it (experiments/README.md indexes them); `taxi` also holds `TAXI_CPU_LESSONS`, which the other cpu
presets start from. An environment registered elsewhere brings its own (`EnvEntry.presets`).

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

from reflectrl.pipeline.presets import alfworld, autoexplore, corridor, taxi, textworld
# Named with the other preset settings (experiments/README.md), so importable with them.
from reflectrl.pipeline.presets.taxi import TAXI_CPU_LESSONS  # noqa: F401
from reflectrl.run_settings import as_saved
from reflectrl.trainers.rl_config import RLConfig
from reflectrl.trainers.sft_config import SFTConfig


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
"""Warm-up SFT of each player: `SFTConfig` fields (see their docs there) that presets set; role, data, output
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
    bf16: bool | None = None
    """bfloat16 autocast in every stage (SFT, the DAgger round's play, RL, evaluation); None: the device's default (on for a CUDA GPU with bfloat16, off on a CPU)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra environment keywords for data, RL and evaluation."""
    data: DataSettings = field(default_factory=DataSettings)
    sft: dict[str, Any] = field(default_factory=lambda: dict(SFT))
    """`SFTConfig` overrides of every SFT run."""
    sft_by_role: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Further `SFTConfig` overrides for one role (reflector, policy, plain), e.g. more steps for the reflector."""
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
        # A field added later and left unset is not saved: such a run saves and reports what it did before the field
        # existed (resuming fills it back in from `saved_defaults`).
        return {key: value for key, value in settings.items() if not (key in OMITTED_WHEN_UNSET and value is None)}


OMITTED_WHEN_UNSET = ("training_seed", "bf16")
"""`Preset` fields added after run folders existed: a run with one seed, or at the device's default precision."""


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
        # LoRA on every block: faster per minute than the top blocks only (experiments/taxi_sft/README.md).
        sft={"max_steps": 24, "batch_size": 8, "lr_scheduler": "cosine", "warmup_ratio": 0.05, "lora_layers": None,
             "max_eval_rows": 24, "save_steps": 8},
        # GRPO, one epoch: it learned where REINFORCE collapsed (experiments/taxi_rl/README.md); more epochs
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

ENV_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "taxi": taxi.CHANGES,
    "corridor": corridor.CHANGES,
    "autoexplore": autoexplore.CHANGES,
    "alfworld": alfworld.CHANGES,
    "textworld": textworld.CHANGES,
}
"""Per-environment changes to each preset (nested dicts replace fields of the stage settings)."""


def saved_defaults() -> dict[str, Any]:
    """What each saved preset field means when a run folder lacks it: its default, as an older version ran it.

    `StageRunner` fills these in before it compares a folder's pipeline.json with the current settings, so a
    field added since the folder was made is no change unless a preset sets it to something else. The SFT
    overrides hold only the keys a preset sets, so a key missing there means `SFTConfig`'s default, and the
    RL part is a whole `RLConfig`.
    """
    defaults = asdict(Preset(name="", model=""))
    del defaults["name"], defaults["model"]  # every version saved them
    defaults["sft"] = {
        f.name: f.default if f.default is not MISSING else f.default_factory()
        for f in fields(SFTConfig) if f.default is not MISSING or f.default_factory is not MISSING
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
    sft_keys = set(chosen.sft).union(*chosen.sft_by_role.values())
    unknown = sorted(sft_keys - {f.name for f in fields(SFTConfig)})
    if unknown:
        raise ValueError(f"preset {name!r} sets unknown SFT settings: {', '.join(unknown)}")
    if chosen.bf16 is not None and not isinstance(chosen.bf16, bool):
        raise ValueError(f"bf16 takes true, false or null, not {chosen.bf16!r}")
    # Refused rather than silently replaced by the stage's own value: a run would not be what its settings say.
    for part, asked in (("sft", sorted(sft_keys)), ("rl", sorted((changes or {}).get("rl", {})))):
        for key in asked:
            if key in SET_BY_THE_RUN[part]:
                raise ValueError(f"{part}.{key} is not a preset setting: {SET_BY_THE_RUN[part][key]}")
    return chosen


SET_BY_THE_RUN: dict[str, dict[str, str]] = {
    "sft": {
        **dict.fromkeys(("role", "data", "out", "run_name"), "each SFT stage sets it"),
        **dict.fromkeys(("eval_steps", "save_total_limit", "resume"), "the pipeline sets it (one evaluation at the end, resumable stages)"),
        "report_to": "give --report-to", "model": "set model", "seed": "give --seeds, or set seed", "threads": "give --threads, or set threads",
        "bf16": "set bf16",
    },
    "rl": {
        "env": "the pipeline's environment", "horizon": "set horizon (both SFT data and RL use it)",
        "seed": "give --seeds, or set seed",
    },
}
"""Fields of `SFTConfig` (`stage_functions.sft_stage`) and `RLConfig` (`plan.rl_config`) that a run fills in from
its stage, its command line or the preset's own keys; what to set instead."""


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
"""Preset fields that are dicts of their own: any key goes (SFT keys are checked against `SFTConfig` afterwards)."""


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
