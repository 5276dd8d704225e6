"""What a rollout produces: steps, episodes and batches, with everything training needs.

A `Step` keeps the exact prompt token ids and label token ids the policy saw,
so the update recomputes log-probabilities from the same ids (no
re-tokenisation drift), plus the sampling-time log-probability, entropy and
value, and the environment's reward. An `Episode` also keeps a few `tags`
from the environment's last `info` (depth, question kind, task type, task id)
so evaluations can report success per group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

TAG_KEYS = ("depth", "kind", "task_type", "task_id", "game_id")
"""`info` entries copied into `Episode.tags` when the environment reports them."""


@dataclass(frozen=True)
class EpisodeRequest:
    """One episode to play: its environment seed, level and group (GRPO groups share a seed)."""

    seed: int
    level: str
    group: int = 0
    options: Mapping[str, Any] | None = field(default=None, hash=False)
    """Passed to `env.reset(seed=..., options=...)`, e.g. ``{"index": 3}`` to pick a fixed task."""


@dataclass
class Step:
    """One decision of the policy and what the environment answered."""

    prompt_ids: list[int]
    """Token ids of the policy prompt, exactly as fed to the model."""
    label_ids: list[int]
    """Label token id of each menu entry, in menu order."""
    action: int
    """Index of the chosen action in the menu."""
    log_prob: float
    """log pi_old(action | prompt) at sampling time (temperature included)."""
    entropy: float
    """Entropy of the label distribution at sampling time."""
    value: float | None
    """Value-head estimate at sampling time (None without a value head)."""
    reward: float
    done: bool
    """The episode ended at this step (terminated or truncated)."""
    state_key: str
    """Identifies the environment state (task + observation) for step-level groups."""
    reflection: str | None = None
    """The reflector's text (None when playing without reflection)."""
    invalid: bool = False
    """The environment rejected the action (see `reflectrl.envs.base`)."""
    action_text: str | None = None
    """The menu entry that was played (None when the agent named no action)."""
    answer: str | None = None
    """A prompted model's raw text answer (None for label-head agents)."""
    judged: dict[str, Any] | None = None
    """What an evaluation's judge said of this decision (oracle's entry, the reflection's advice and
    whether each was optimal; `reflectrl.evaluation.reflection_diagnostics`); None when not judged."""
    menu: list[str] | None = None
    """The menu entries the agent chose from, in action order (None where not recorded)."""
    labels: list[str] | None = None
    """The label the agent saw on each menu entry, in action order (None for agents without labels)."""
    probs: list[float] | None = None
    """The agent's probability of each menu entry, in action order (`StepRecord.probs`; None where it has none).
    Kept for inspection (`reflectrl view`); training recomputes its numbers from the token ids."""
    reflector_prompt: str | None = None
    """The reflector's prompt (None without a reflector). In memory only, for training the reflector
    (`RLConfig.train_reflector`): saved episodes leave it out, as it repeats the observation at length."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["reflector_prompt"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(**data)


@dataclass
class Episode:
    """A finished episode (ended by the environment or by the horizon)."""

    seed: int
    level: str
    group: int
    steps: list[Step] = field(default_factory=list)
    success: bool = False
    truncated: bool = False
    tags: dict[str, Any] = field(default_factory=dict)
    """Entries of `TAG_KEYS` from the episode's last `info` (empty for environments without them)."""
    options: dict[str, Any] | None = None
    """The reset options of the request (e.g. the task index)."""
    task: str = ""
    """The task text (constant over an episode; each step's `state_key` starts with it)."""

    @property
    def total_return(self) -> float:
        return float(sum(step.reward for step in self.steps))

    @property
    def length(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "level": self.level,
            "group": self.group,
            "success": self.success,
            "truncated": self.truncated,
            "tags": dict(self.tags),
            "options": dict(self.options) if self.options is not None else None,
            "task": self.task,
            "steps": [step.to_dict() for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        steps = [Step.from_dict(s) for s in data["steps"]]
        return cls(
            int(data["seed"]), str(data["level"]), int(data["group"]), steps, bool(data["success"]), bool(data["truncated"]),
            dict(data.get("tags") or {}), data.get("options"), str(data.get("task", "")),
        )


@dataclass
class Batch:
    """The episodes of one `collect` call, in request order, and where the time went."""

    episodes: list[Episode]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in 'reflect', 'decide' and 'environment'."""

    @property
    def num_steps(self) -> int:
        return sum(e.length for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return sum(e.success for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    @property
    def mean_return(self) -> float:
        return sum(e.total_return for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    @property
    def mean_length(self) -> float:
        return self.num_steps / len(self.episodes) if self.episodes else 0.0
