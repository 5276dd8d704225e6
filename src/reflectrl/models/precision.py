"""Compute precision: bfloat16 autocast where the hardware runs it natively."""

from __future__ import annotations

import contextlib

import torch


def bf16_autocast_supported(device: torch.device | str | None = None) -> bool:
    """Whether bfloat16 autocast is the default on `device` (default: CUDA when available, else the CPU).

    On CUDA: when the GPU has bf16. On the CPU: never by default, even where
    the CPU has native bf16 (AVX512-BF16, AMX) and it would be faster: a CPU
    without it computes in float32, so the same command would give another
    table on another machine. Opting in (``--bf16``) pays only on CPUs with AVX512-BF16 or AMX.
    """
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def resolve_bf16(choice: bool | None, device: torch.device | str | None = None) -> bool:
    """An explicit choice, or None for `bf16_autocast_supported`."""
    return bf16_autocast_supported(device) if choice is None else bool(choice)


def bf16_autocast(enabled: bool, device: torch.device | str):
    """bfloat16 autocast on `device`'s type, or nothing when disabled (or already on a 16-bit model)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
