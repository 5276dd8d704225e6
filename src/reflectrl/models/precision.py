"""Compute precision: bfloat16 autocast where the hardware runs it natively."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch


def bf16_autocast_supported(device: torch.device | str | None = None) -> bool:
    """Whether bfloat16 autocast is the default on `device` (default: CUDA when available, else the CPU).

    On CUDA: when the GPU has bf16. On the CPU: never by default, even where
    the CPU has native bf16 (AVX512-BF16, AMX) and it would be faster: a CPU
    without it computes in float32, so the same command would give another
    table on another machine. `cpu_has_native_bf16` tells whether opting in pays.
    """
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (without them, bf16 autocast is slower than float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_bf16(choice: bool | None, device: torch.device | str | None = None) -> bool:
    """An explicit choice, or None for `bf16_autocast_supported`."""
    return bf16_autocast_supported(device) if choice is None else bool(choice)


def bf16_autocast(enabled: bool, device: torch.device | str):
    """bfloat16 autocast on `device`'s type, or nothing when disabled (or already on a 16-bit model)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
