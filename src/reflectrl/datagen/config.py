"""Settings of one data-generation run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

SPLIT_SEED_OFFSETS = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
"""Episode seeds of each split start here (plus `GenConfig.seed`), so splits never share an episode."""


@dataclass
class GenConfig:
    """What `generate` does; saved next to the data so a re-run can check it continues the same run."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("episodes", "out")
    """Settings a re-run may change (see `reflectrl.run_settings`): more episodes continue the same data."""

    env: str
    """Environment short name or gymnasium id."""
    out: str
    """Output folder."""
    teacher: str = "oracle"
    """Teacher spec: ``oracle``, ``openai:MODEL`` or ``hf:PATH``."""
    episodes: int = 100
    """Expert episodes to roll out."""
    random_prob: float = 0.1
    """Probability that the expert takes a uniformly random action instead of the oracle's."""
    decoy_prob: float = 0.0
    """Probability, at each expert step where the environment offers a decoy (`TextEnv.decoy_action`: AutoExplore
    before reading the answer file, ALFWorld before going to where the object is), that the expert takes it: the
    data then shows moves that did not pay off although nothing visible said so, and what the oracle does after
    them. 0: none (no random draw either)."""
    negatives: int = 2
    """Negative examples per episode: step off the optimal path at this many different steps."""
    misleading: float = 0.0
    """Share of states that also get a policy row whose reflection the teacher wrote for a wrong admissible
    action, with the oracle's label: a trained reflector is sometimes wrong, and a policy that only saw
    right reflections learns to obey them blindly (see `generate`). 0: none."""
    split: str = "train"
    """train, validation or test: selects a disjoint range of episode seeds."""
    seed: int = 0
    """Base seed (episode seeds, random actions, label shuffling, oracle wording)."""
    level: str | None = None
    """Curriculum level (default: the environment's hardest)."""
    horizon: int | None = None
    """Episode length limit (default: the environment's)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the environment's constructor."""
    model: str = "smollm2-135m"
    """Model spec whose tokenizer defines the labels and counts tokens."""
    max_prompt_tokens: int | None = None
    """Prompt budget (older history is cut first, see `reflectrl.protocol`); None: the tokenizer's limit."""
    shuffle_labels: bool = True
    """Shuffle the labels of every menu (as rollouts do)."""
    label_after: bool = False
    """Write menu entries as "action (label)" instead of "label. action" (`protocol.Menu.label_after`)."""

    def seed_of(self, episode: int) -> int:
        """The environment seed of episode `episode`."""
        return self.seed + SPLIT_SEED_OFFSETS[self.split] + episode

    def identity(self) -> dict[str, Any]:
        """The settings that must match for a re-run to continue this run (all but the episode count)."""
        data = asdict(self)
        for key in self.RESUMABLE:
            data.pop(key)
        return data

    def check(self) -> None:
        """Raise ValueError for settings that cannot work."""
        if self.split not in SPLIT_SEED_OFFSETS:
            raise ValueError(f"unknown split {self.split!r}; choose from {', '.join(SPLIT_SEED_OFFSETS)}")
        if self.episodes < 1:
            raise ValueError("episodes must be >= 1")
        if not 0.0 <= self.random_prob <= 1.0:
            raise ValueError("random_prob must be between 0 and 1")
        if not 0.0 <= self.decoy_prob <= 1.0:
            raise ValueError("decoy_prob must be between 0 and 1")
        if self.negatives < 0:
            raise ValueError("negatives must be >= 0")
        if not 0.0 <= self.misleading <= 1.0:
            raise ValueError("misleading must be between 0 and 1")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 16:
            raise ValueError("max_prompt_tokens must be at least 16")
