"""Reproducible sampling inside `generate`, which draws from torch's global RNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch's global RNG for the block and restore the previous state afterwards.

    `seed=None` leaves the RNG alone (greedy decoding draws nothing).
    """
    if seed is None:
        yield
        return
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def seed_from(generator: torch.Generator | None) -> int | None:
    """A seed drawn from `generator` (None without one, so the global RNG is used as is)."""
    if generator is None:
        return None
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
