"""Write a model as a self-contained safetensors checkpoint that any loader reads the same way.

transformers saves tied weights once (the output head shares the input
embedding, so only one of the two names is written) and relies on its own
loader to tie them again. Other loaders do not: vLLM reads such a file with an
empty input embedding and then answers nothing but end-of-text tokens. So every
name of the state dict is written here with its own copy of the tensor.
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"


def full_state_dict(model) -> dict:
    """Every tensor of `model` under every name it has, each with its own contiguous storage."""
    # safetensors refuses tensors that share memory, which is exactly what tied weights do.
    return {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}


def save_standalone(model, folder: str | os.PathLike) -> None:
    """Write config.json, generation_config.json (when the model has one) and `WEIGHTS_FILE` with every tied name present.

    The config is rebuilt without a ``quantization_config`` section: a model
    dequantised from GGUF still carries that section, and loaders would then
    look for quantised tensors that the float file does not have.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = model.config.to_dict()
    settings.pop("quantization_config", None)
    type(model.config).from_dict(settings).save_pretrained(folder)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(folder)
    save_file(full_state_dict(model), str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
