"""`reflectrl export`: a trained player (or any model spec) as files that inference servers load (registered in `cli.main`)."""

from __future__ import annotations

from pathlib import Path

import typer

from reflectrl.cli.errors import fail


def export(
    adapter: str = typer.Argument(..., metavar="ADAPTER", help="An SFT/RL adapter folder, or any model spec (smollm2-135m, a model folder)."),
    out: Path = typer.Option(..., "--out", help="Export folder (model/, adapter/, model.gguf, adapter.gguf, export.json)."),
    merge: bool = typer.Option(False, "--merge", help="Fold the LoRA into the weights: model/ is the fine-tuned model, no adapter/."),
    gguf: bool = typer.Option(False, "--gguf", help="Also write GGUF files for llama.cpp: model.gguf (what model/ holds) and, for an adapter without --merge, adapter.gguf (its LoRA, for llama.cpp's --lora); Llama-architecture models only."),
    gguf_type: str = typer.Option("f32", "--gguf-type", help="GGUF tensor type: f32 (same numbers as transformers) or f16."),
    dtype: str = typer.Option("float32", "--dtype", help="Tensor type of model/: float32, bfloat16 or float16."),
) -> None:
    """Write a standard Hugging Face checkpoint (every tied tensor present, tokenizer included) and optionally a GGUF."""
    from reflectrl.models import ModelLoadError
    from reflectrl.models.export import export_model
    from reflectrl.models.gguf_writer import GGUFExportError

    try:
        record = export_model(adapter, out, merge=merge, gguf_type=gguf_type if gguf else None, dtype=dtype)
    except KeyboardInterrupt:
        fail("interrupted; nothing was written", 130)
    except (ValueError, ModelLoadError, GGUFExportError, OSError) as err:
        fail(str(err))
    parts = [f"{out / 'model'} ({'merged' if record.merged else 'base model'})"]
    if record.adapter:
        parts.append(f"{out / 'adapter'} (LoRA for vLLM --lora-modules)")
    if record.gguf:
        parts.append(f"{out / 'model.gguf'} ({'merged' if record.merged else 'base model'}, {record.gguf}, for llama.cpp)")
    if record.gguf_adapter:
        parts.append(f"{out / 'adapter.gguf'} (LoRA for llama.cpp --lora)")
    typer.echo("Exported " + ", ".join(parts))
