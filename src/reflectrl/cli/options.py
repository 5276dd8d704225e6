"""Options that several commands share: CPU threads and compute precision."""

from __future__ import annotations

from typing import Any, Optional

import typer


def threads_option() -> Any:
    return typer.Option(
        None, "--threads", min=1,
        help="torch CPU threads (default: torch's); 1 is often faster on a machine busy with other jobs.",
    )


def bf16_option() -> Any:
    return typer.Option(
        None, "--bf16/--no-bf16",
        help="bfloat16 autocast for the models (default: on GPUs with bfloat16; off on CPUs, so every CPU computes the same numbers).",
    )


def apply_threads(threads: Optional[int]) -> None:
    """Set torch's CPU thread count; it changes speed and at most float rounding, not the method."""
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
