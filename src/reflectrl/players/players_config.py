"""`PlayersConfig`: the settings that shape the two players, which training and evaluation both need.

`reflectrl train` (and the pipeline's RL stage) and `reflectrl eval` build their players with
`reflectrl.players.load.load_rl_players`, whose keywords these fields are; `LoraShape` is also the LoRA part of
`reflectrl.trainers.sft_config.SFTConfig`, so a LoRA setting is declared once for SFT and RL. Kept apart from
`players.load` so that the CLI and the settings classes import it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass


# kw_only: a subclass may then declare fields without defaults (SFTConfig's role, data, out) after these.
@dataclass(kw_only=True)
class LoraShape:
    """The shape of a fresh LoRA adapter."""

    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""


@dataclass(kw_only=True)
class PlayersConfig(LoraShape):
    """How the players are built: the fresh policy adapter's LoRA shape (a policy given as a base model spec; an
    adapter folder keeps its own), the reflection budget and the menu's label layout."""

    reflection_tokens: int = 64
    """Maximum reflection length in tokens."""
    shuffle_labels: bool | None = None
    """Shuffle the action labels per step; None: as the policy checkpoint was trained, else shuffled."""
    label_after: bool | None = None
    """Menu entries as "action (label)" rather than "label. action"; None: as the policy checkpoint was trained, else label first."""
