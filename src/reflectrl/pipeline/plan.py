"""What a pipeline run is: its stages in the order they run, the comparison's rows, and the run folder's names.

Stages (one folder each under the run folder; `reflectrl.pipeline.stages` skips and resumes them, and
`reflectrl.pipeline.stage_functions` does their work):

1. ``data``: teacher data on the train split (`reflectrl.datagen.generate`; a
   killed run continues where it stopped);
2. ``sft-reflector``, ``sft-policy``, ``sft-plain``, ``sft-reflector-positive``,
   ``sft-policy-positive``: warm-up SFT of each player, the ``-positive``
   ones without negative examples (`reflectrl.trainers.sft.run_warmup`,
   resuming from its checkpoints);
3. ``rl-reflect`` (Reflect-RL), ``rl-reflect-positive`` (Reflect-RL without
   negative examples) and ``rl-plain`` (RL without reflection): online RL of
   the policy from its SFT adapter with the frozen SFT reflector
   (`reflectrl.trainers.online.OnlineTrainer`, resuming from its checkpoints);
4. ``eval-*``: every setting on the held-out split (`reflectrl.evaluation.harness`):
   the SFT-only players, the three RL runs, the prompted base model, and the
   oracle and random players for reference;
5. ``report.md`` with ``success.png`` and ``learning_curves.png`` in the run
   folder, rewritten at the end of every run, and ``timing.md`` (`reflectrl.pipeline.report`).

The ``-positive`` stages (the paper's "no negative examples" ablation) run
only with ``rows="all"`` (``reflectrl pipeline --rows all``).

With ``Preset.dagger`` (a number of episodes), ``dagger-data`` plays the SFT
reflective agent on train-split episodes and labels every state it visits
with the teacher's reflection, ``sft-reflector-dagger`` trains the SFT
reflector a further round on those rows (`reflectrl.datagen.dagger`), and
Reflect-RL trains and is evaluated with that reflector; the row
``eval-sft-reflect-dagger`` (the SFT policy with it) tells the round's share
of Reflect-RL's gain from RL's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from reflectrl.pipeline.presets import Preset
from reflectrl.trainers.rl_config import TRAINED_REFLECTOR

if TYPE_CHECKING:
    from reflectrl.envs import EnvEntry
    from reflectrl.trainers.online import RLConfig

SFT_JOBS: tuple[tuple[str, str, str], ...] = (
    ("sft-reflector", "reflector", "reflector.jsonl"),
    ("sft-policy", "policy", "policy.jsonl"),
    ("sft-plain", "plain", "plain.jsonl"),
    ("sft-reflector-positive", "reflector", "reflector_positive.jsonl"),
    ("sft-policy-positive", "policy", "policy_positive.jsonl"),
)
"""(stage, role, data file) of every SFT run."""
RL_JOBS: tuple[tuple[str, str, str | None, str], ...] = (
    ("rl-reflect", "sft-policy", "sft-reflector", "Reflect-RL"),
    ("rl-reflect-positive", "sft-policy-positive", "sft-reflector-positive", "Reflect-RL, no negative examples"),
    ("rl-plain", "sft-plain", None, "SFT + RL, no reflection"),
)
"""(stage, SFT policy stage, SFT reflector stage or None, curve label) of every RL run."""
RL_FINAL = "final"
RL_RUN = "run"
REFLECTION_CACHE = "reflection-cache"
"""Folder of the evaluation reflection caches (one JSON-lines file per reflector)."""
REFLECTOR_SERVERS = "reflector-servers"
"""Folder of the managed reflector servers (export and log per reflector) with ``serve_reflector``."""


@dataclass(frozen=True)
class Setting:
    """One row of the comparison."""

    key: str
    """Evaluation stage name is ``eval-<key>``."""
    label: str
    """Row label in the report (``{model}`` is replaced by the model spec)."""
    kind: str
    """Agent kind (see `reflectrl.evaluation.agent_loader`)."""
    policy: str | None = None
    """Policy adapter, relative to the run folder."""
    reflector: str | None = None
    """Reflector adapter, relative to the run folder."""
    reference: bool = False
    """A scripted reference player, or a diagnostic row (shown apart from the compared settings)."""
    teacher: bool = False
    """The policy reads the data's teacher, live, instead of a reflector (the ceiling; `reflectrl.teachers.live`)."""


SETTINGS: tuple[Setting, ...] = (
    Setting("sft-plain", "SFT only, no reflection", "plain", "sft-plain"),
    Setting("sft-reflect", "SFT only, with reflection", "reflect", "sft-policy", "sft-reflector"),
    Setting("sft-reflect-dagger", "SFT only, with reflection, reflector after its DAgger round", "reflect", "sft-policy", "sft-reflector-dagger"),
    Setting("rl-plain", "SFT + RL, no reflection", "plain", f"rl-plain/{RL_FINAL}"),
    Setting("rl-reflect-positive", "Reflect-RL, no negative examples", "reflect", f"rl-reflect-positive/{RL_FINAL}", "sft-reflector-positive"),
    Setting("rl-reflect", "Reflect-RL", "reflect", f"rl-reflect/{RL_FINAL}", "sft-reflector"),
    Setting("sft-ceiling", "SFT reflective policy reading the teacher's reflections (ceiling)", "reflect", "sft-policy", reference=True, teacher=True),
    Setting("rl-ceiling", "Reflect-RL policy reading the teacher's reflections (ceiling)", "reflect", f"rl-reflect/{RL_FINAL}", reference=True, teacher=True),
    Setting("prompted", "{model}, prompted", "prompted"),
    Setting("oracle", "Oracle (upper bound)", "oracle", reference=True),
    Setting("random", "Random (chance level)", "random", reference=True),
)
"""The report's rows, in the paper's order, then the reference players."""
PAIRED: tuple[tuple[str, str], ...] = (("rl-reflect", "sft-reflect"), ("rl-plain", "sft-plain"))
"""(RL setting, the SFT setting it started from) pairs compared seed by seed in the report."""

ROWS = ("core", "all")
"""Which rows a run makes: ``core`` (prompted, SFT with and without reflection, Reflect-RL, RL without
reflection, oracle, random) or ``all`` (adds the paper's ablation: Reflect-RL without negative examples)."""
ABLATION_STAGES = frozenset({"sft-reflector-positive", "sft-policy-positive", "rl-reflect-positive", "eval-rl-reflect-positive"})
"""Stages of the rows that only ``--rows all`` makes."""
DAGGER_DATA = "dagger-data"
DAGGER_REFLECTOR = "sft-reflector-dagger"
DAGGER_STAGES = frozenset({DAGGER_DATA, DAGGER_REFLECTOR, "eval-sft-reflect-dagger"})
"""Stages that only a preset with a DAgger round (`Preset.dagger`) makes."""


def stage_names(rows: str = "all", dagger: bool = False) -> list[str]:
    """Every stage `rows` makes, in the order they run (with `dagger`: a preset with a DAgger round)."""
    if rows not in ROWS:
        raise ValueError(f"unknown rows {rows!r}; choose from {', '.join(ROWS)}")
    names = (
        ["data"] + [job[0] for job in SFT_JOBS] + [DAGGER_DATA, DAGGER_REFLECTOR] + [job[0] for job in RL_JOBS]
        + [f"eval-{s.key}" for s in SETTINGS]
    )
    return [n for n in names if (rows == "all" or n not in ABLATION_STAGES) and (dagger or n not in DAGGER_STAGES)]


def evaluated_settings(rows: str = "all", dagger: bool = False) -> list[Setting]:
    """The rows of the comparison that `stage_names(rows, dagger)` evaluates, in `SETTINGS` order."""
    names = set(stage_names(rows, dagger))
    return [s for s in SETTINGS if f"eval-{s.key}" in names]


def has_dagger(preset: Preset) -> bool:
    """Whether `preset` trains the reflector a DAgger round (`Preset.dagger`)."""
    return preset.dagger.episodes > 0


def trained_reflector(preset: Preset, stage: str) -> str:
    """The reflector stage an RL run and its evaluation use: the DAgger round's where the preset has one."""
    return DAGGER_REFLECTOR if stage == "sft-reflector" and has_dagger(preset) else stage


def with_trained_reflector(setting: Setting, preset: Preset) -> Setting:
    """`setting` with the reflector its RL run trained with (`trained_reflector`), or the one it trained
    (`RLConfig.train_reflector`: saved beside the RL policy); other settings as they are."""
    if setting.key.startswith("rl-reflect") and setting.reflector and preset.rl.train_reflector:
        return replace(setting, reflector=f"{setting.policy}/{TRAINED_REFLECTOR}")
    if setting.key == "rl-reflect" and setting.reflector:
        return replace(setting, reflector=trained_reflector(preset, setting.reflector))
    return setting


def row_label(setting: Setting, preset: Preset) -> str:
    """The setting's row label with the preset's model named."""
    return setting.label.replace("{model}", preset.model)


def eval_level_names(entry: EnvEntry, preset: Preset) -> list[str]:
    """The evaluated levels by name (the preset's None: the environment's hardest), as the eval folders are named."""
    return [level or entry.env_class().levels[-1] for level in preset.eval_levels]


def rl_config(env: str, preset: Preset) -> RLConfig:
    """The RL run settings of `preset` (RLConfig checks them, so a bad preset fails before any model loads)."""
    levels = preset.rl.levels or ((preset.level,) if preset.level else ())
    return replace(preset.rl, env=env, levels=levels, horizon=preset.horizon, seed=preset.train_seed)


def saved_settings(env: str, preset: Preset) -> dict[str, Any]:
    """The preset as pipeline.json and the report show it: its RL part is what the RL stages run (`rl_config`).

    `Preset.rl` holds overrides of `RLConfig` whose env, levels, horizon and seed are only
    defaults until `rl_config` fills them in; stored as they are they would name another environment.
    """
    return {**preset.to_dict(), "rl": rl_config(env, preset).to_dict()}
