"""Data parallelism of the policy update over the processes of `accelerate launch`.

Every process holds the whole policy and the whole batch of one update (the
main process plays it and hands it to the others, see `OnlineTrainer`); each optimizer step's
micro-batches are dealt out round-robin, process r taking micro-batches r,
r + n, ... The policy's label forward pass runs inside a module that
accelerate wraps in PyTorch's DistributedDataParallel, so the gradients of
the trainable parameters (LoRA weights and value head) are averaged over the
processes during the last backward pass of the step (the earlier ones run
under `no_sync`). Each micro-batch's loss keeps its share of the whole step,
scaled by the number of processes to undo the average: the summed gradient,
and so the step, is the one a single process computes on the same global
batch, up to the order of float additions. A process left without a
micro-batch (fewer than n in a step) runs one with weight 0, because every
process must take part in the gradient exchange.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from reflectrl.trainers.metrics_log import WeightedMeans

if TYPE_CHECKING:
    from reflectrl.players.policy import LabelPolicy, PolicyOutput  # noqa: F401


def launched_processes() -> int:
    """How many processes `accelerate launch` (or torchrun) started for this run; 1 without a launcher."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def make_accelerator():
    """An `Accelerator` for the update: one GPU per process, or CPU processes (gloo) on a machine without CUDA.

    A micro-batch of replayed steps alone does not reach the value head, so DDP
    must look for parameters without a gradient in each backward pass.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # accelerate only treats launched processes as multi-CPU when told to use the CPU.
    return Accelerator(
        cpu=not torch.cuda.is_available(), kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


class LabelForward(nn.Module):
    """`LabelPolicy.forward_ids` as a module's forward, so that DDP sees the pass whose gradients it averages.

    DDP averages the gradients of its module's parameters only, and the
    language model is not a sub-module of the policy (it is shared with the
    reflector): the trainable parameters are registered here once more (the
    same tensors, not copies). The output's fields come back as a tuple: DDP
    finds the tensors of an output (to see which parameters the backward pass
    reaches) in tuples, lists and dicts, not in a dataclass.
    """

    def __init__(self, policy: LabelPolicy, trainable: Sequence[nn.Parameter]):
        super().__init__()
        self.policy = policy
        self.trainable = nn.ParameterList(trainable)

    def forward(self, prompt_ids: Sequence[Sequence[int]], label_ids: Sequence[Sequence[int]]) -> tuple:
        out = self.policy.forward_ids(prompt_ids, label_ids)
        return tuple(getattr(out, f.name) for f in dataclasses.fields(out))


class UpdateProcesses:
    """The processes one update is shared by: this one alone, or those of an `Accelerator` (see the module docstring)."""

    def __init__(self, policy: LabelPolicy, trainable: Sequence[nn.Parameter], accelerator: Any = None):
        self.policy = policy
        self.accelerator = accelerator
        self.count = accelerator.num_processes if accelerator is not None else 1
        self.index = accelerator.process_index if accelerator is not None else 0
        self._ddp = accelerator.prepare_model(LabelForward(policy, trainable)) if self.count > 1 else None

    def forward(self, prompt_ids: Sequence[Sequence[int]], label_ids: Sequence[Sequence[int]]) -> PolicyOutput:
        """The label forward pass with gradients (through DDP when several processes share the update)."""
        if self._ddp is None:
            return self.policy.forward_ids(prompt_ids, label_ids)
        from reflectrl.players.policy import PolicyOutput

        return PolicyOutput(*self._ddp(prompt_ids, label_ids))

    def deal(self, micro_batches: Sequence[list]) -> list[tuple[list, float]]:
        """This process's micro-batches of one optimizer step, each with the factor its loss is scaled by."""
        if self.count == 1:
            return [(micro, 1.0) for micro in micro_batches]
        mine = list(micro_batches[self.index :: self.count])
        if not mine:
            return [(micro_batches[0], 0.0)]
        return [(micro, float(self.count)) for micro in mine]

    @contextlib.contextmanager
    def backward_context(self, last: bool) -> Iterator[None]:
        """Gradients are exchanged once per optimizer step: after the last backward pass, not before."""
        if self._ddp is None or last:
            yield
        else:
            with self.accelerator.no_sync(self._ddp):
                yield

    def merge(self, sums: WeightedMeans) -> WeightedMeans:
        """Every process's statistics combined (each process computed those of its own micro-batches)."""
        if self.count == 1:
            return sums
        from accelerate.utils import gather_object

        merged = WeightedMeans()
        for part in gather_object([sums]):
            for name, total in part.totals.items():
                merged.totals[name] = merged.totals.get(name, 0.0) + total
                merged.counts[name] = merged.counts.get(name, 0.0) + part.counts[name]
        return merged
