"""LoRA adapters: add, load, save and activate named adapters on one base model.

Several adapters can live on one set of base weights, as named LoRA adapters
of one `peft.PeftModel`, and each call activates the adapter it needs
(`adapter_scope`). Checkpoints are standard PEFT adapter folders
(`save_adapter`) that load with `PeftModel.from_pretrained(base, folder)` or
`load_model(folder)`.

The two players' adapters on one shared base, and their names, are
`reflectrl.players.two_players.TwoPlayerModel`; ``"default"`` is peft's name
for a single adapter.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError

from reflectrl.models.atomic import atomic_folder
from reflectrl.models.loading import ADAPTER_WEIGHTS, is_adapter_folder, unreadable_weights

log = logging.getLogger(__name__)


def is_peft_model(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def adapter_names(model) -> tuple[str, ...]:
    """Names of the adapters loaded on `model` (empty for a plain model)."""
    return tuple(model.peft_config) if is_peft_model(model) else ()


def add_lora(
    model,
    adapter_name: str = "default",
    *,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: str | Sequence[str] | None = None,
):
    """Add a fresh, trainable LoRA adapter; returns the `PeftModel` (the same one if `model` already is).

    `target_modules=None` adapts every linear layer of the transformer blocks
    (peft's ``"all-linear"``, which leaves the output head alone, so the label
    head keeps reading the base unembedding). A fresh adapter starts as the
    identity: LoRA's second matrix is initialised to zero.
    """
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}")
    if adapter_name in adapter_names(model):
        raise ValueError(f"the model already has an adapter named {adapter_name!r}")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if target_modules is not None else "all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )
    if is_peft_model(model):
        with _grad_flags_kept(model):
            model.add_adapter(adapter_name, config)
        _set_adapter_trainable(model, adapter_name, True)
        return model
    return get_peft_model(model, config, adapter_name=adapter_name)


def load_adapter(model, folder: str | os.PathLike, adapter_name: str, *, trainable: bool = False):
    """Load a PEFT adapter folder onto `model` under `adapter_name`; returns the `PeftModel`."""
    from peft import PeftModel

    folder = Path(folder)
    if not is_adapter_folder(folder):
        raise FileNotFoundError(f"{folder} is not a PEFT adapter folder (no adapter_config.json)")
    try:
        if is_peft_model(model):
            with _grad_flags_kept(model):
                model.load_adapter(str(folder), adapter_name=adapter_name, is_trainable=trainable)
            _set_adapter_trainable(model, adapter_name, trainable)
            return model
        return PeftModel.from_pretrained(model, str(folder), adapter_name=adapter_name, is_trainable=trainable)
    except SafetensorError as err:
        raise unreadable_weights(folder / ADAPTER_WEIGHTS, err) from err


def save_adapter(model, adapter_name: str, folder: str | os.PathLike) -> None:
    """Write one adapter as a standard PEFT folder, atomically (a killed save leaves the old folder)."""
    if adapter_name not in adapter_names(model):
        raise KeyError(f"no adapter named {adapter_name!r} on this model (loaded: {', '.join(adapter_names(model)) or 'none'})")
    # peft writes inside the temporary folder, so that what a kill leaves is the writer's own to clear away.
    with atomic_folder(folder) as tmp:
        scratch = tmp / ".peft"
        # Embedding layers are never adapted here; "auto" would look the base
        # model up (on the Hub for an id), which fails or stalls offline.
        model.save_pretrained(str(scratch), selected_adapters=[adapter_name], save_embedding_layers=False)
        # peft writes every adapter except "default" into a sub-folder named after it.
        written = scratch if adapter_name == "default" else scratch / adapter_name
        for item in written.iterdir():
            if item.is_file():
                os.replace(item, tmp / item.name)
        shutil.rmtree(scratch)


def lora_parameters(model, adapter_name: str) -> list[torch.nn.Parameter]:
    """The LoRA parameters of one adapter (empty when it is not loaded)."""
    if adapter_name not in adapter_names(model):
        return []
    marker = f".{adapter_name}."
    params = []
    for name, param in model.named_parameters():
        if "lora_" in name and (marker in name or name.endswith(f".{adapter_name}")):
            params.append(param)
    return params


@contextmanager
def adapter_scope(model, adapter: str | None) -> Iterator[None]:
    """Run the body with one adapter active.

    * ``None``: the model as it is (its active adapter, or the base weights of a plain model);
    * a loaded adapter's name: that adapter alone;
    * any other name: the base weights (all adapters disabled), which is how a
      missing player of a `TwoPlayerModel` (`reflectrl.players.two_players`) behaves.

    peft's `set_adapter` also changes which LoRA weights require gradients;
    this scope restores those flags, so a frozen reflector stays frozen and
    the policy's weights stay trainable whatever was activated in between.
    """
    if adapter is None or not is_peft_model(model):
        yield
        return
    if adapter not in model.peft_config:
        with base_weights(model):
            yield
        return
    previous = model.active_adapter
    if previous == adapter:
        yield
        return
    with _grad_flags_kept(model):
        model.set_adapter(adapter)
    try:
        yield
    finally:
        with _grad_flags_kept(model):
            model.set_adapter(previous)


@contextmanager
def base_weights(model) -> Iterator[None]:
    """Run the body on the base weights (all adapters disabled), keeping requires-grad flags."""
    if not is_peft_model(model):
        yield
        return
    with _grad_flags_kept(model), model.disable_adapter():
        yield


@contextmanager
def _grad_flags_kept(model) -> Iterator[None]:
    flags = [(param, param.requires_grad) for name, param in model.named_parameters() if "lora_" in name]
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def _set_adapter_trainable(model, adapter_name: str, trainable: bool) -> None:
    for param in lora_parameters(model, adapter_name):
        param.requires_grad_(trainable)
