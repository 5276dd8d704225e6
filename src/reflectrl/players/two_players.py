"""The two players on one shared base model: the reflector and the policy as two LoRA adapters.

Both players can live on one set of base weights: the reflector and the
policy are two named LoRA adapters of one `peft.PeftModel`, and each call
activates the adapter it needs (`reflectrl.models.adapters.adapter_scope`).
Either adapter may be absent; that player then uses the base weights.

Adapter names used by this project: ``"reflector"`` and ``"policy"``, and for
an RL run with a KL penalty the frozen starting points ``"reference"`` (the
policy's) and ``"reflector_reference"`` (the reflector's, when RL trains it).
"""

from __future__ import annotations

import os

from reflectrl.models.adapters import adapter_names, adapter_scope, add_lora, base_weights, load_adapter, save_adapter
from reflectrl.models.loading import load_model
from reflectrl.players.local_reflector import LocalReflector
from reflectrl.players.policy import LabelPolicy

REFLECTOR = "reflector"
POLICY = "policy"
ROLES = (REFLECTOR, POLICY)
REFERENCE = "reference"
"""Adapter name of the frozen starting policy used by the KL penalty."""
REFLECTOR_REFERENCE = "reflector_reference"
"""Adapter name of the frozen starting reflector that the KL penalty compares with."""


class TwoPlayerModel:
    """One base model in memory carrying the reflector and policy adapters.

    Either adapter may be absent; that player then uses the base weights.
    Typical use::

        players = TwoPlayerModel.load("smollm2-135m", reflector="out/reflector", policy="out/policy")
        reflector = players.local_reflector()
        policy = players.label_policy(value_head=True)
    """

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def load(
        cls,
        base: str,
        *,
        reflector: str | os.PathLike | None = None,
        policy: str | os.PathLike | None = None,
        dtype=None,
        device=None,
        trainable_policy: bool = True,
    ) -> TwoPlayerModel:
        """Load `base` once and the adapter folders on top (reflector frozen, policy trainable by default)."""
        model, tokenizer = load_model(base, dtype=dtype, device=device)
        if reflector is not None:
            model = load_adapter(model, reflector, REFLECTOR, trainable=False)
        if policy is not None:
            model = load_adapter(model, policy, POLICY, trainable=trainable_policy)
        model.eval()
        return cls(model, tokenizer)

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names of the loaded adapters."""
        return adapter_names(self.model)

    def has(self, adapter: str) -> bool:
        return adapter in self.adapters

    def add_adapter(self, adapter_name: str = POLICY, **lora) -> None:
        """Add a fresh LoRA adapter (keyword arguments as `add_lora`), e.g. a policy to train from scratch."""
        self.model = add_lora(self.model, adapter_name, **lora)

    def use(self, adapter: str | None):
        """Context manager: run with `adapter` active; None (or an absent adapter) means the base weights."""
        if adapter is None:
            return base_weights(self.model)
        return adapter_scope(self.model, adapter)

    def save(self, adapter_name: str, folder: str | os.PathLike) -> None:
        """Save one adapter as a PEFT folder (`save_adapter`)."""
        save_adapter(self.model, adapter_name, folder)

    def local_reflector(self, **kwargs) -> LocalReflector:
        """A `LocalReflector` on the reflector adapter (base weights when absent)."""
        return LocalReflector(self.model, self.tokenizer, adapter=REFLECTOR, **kwargs)

    def label_policy(self, label_set=None, **kwargs) -> LabelPolicy:
        """A `LabelPolicy` on the policy adapter (base weights when absent)."""
        return LabelPolicy(self.model, self.tokenizer, label_set, adapter=POLICY, **kwargs)
