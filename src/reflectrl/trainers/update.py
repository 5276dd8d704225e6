"""One policy update of online RL: on-policy steps (plus replayed ones) -> micro-batches -> optimizer steps.

The steps are split once into micro-batches (one forward pass each) that stay
together for the whole update; a minibatch is a run of whole micro-batches
whose gradients are accumulated. Algorithms that use a ratio first recompute
its denominators with these same micro-batches (`_refresh_old_log_probs`),
except where the update's own first forward pass of a micro-batch gives them.
What is optimised is the run's algorithm (`reflectrl.trainers.algorithms`) on
the on-policy steps plus the self-imitation loss on replayed ones
(`reflectrl.trainers.replay`); the order of random draws and float operations
is fixed, so a run is reproducible bit for bit. Under `accelerate launch`
each optimizer step's micro-batches are shared by the processes
(`reflectrl.trainers.data_parallel`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from reflectrl.rollout.episode import Batch, Episode
from reflectrl.trainers import losses
from reflectrl.trainers.algorithms import OnPolicySteps, algorithm_for
from reflectrl.trainers.data_parallel import UpdateProcesses
from reflectrl.trainers.metrics_log import WeightedMeans
from reflectrl.trainers.rl_config import RLConfig, derive_seed

if TYPE_CHECKING:
    from reflectrl.players.policy import LabelPolicy


@dataclass
class _Item:
    """One step prepared for the update."""

    prompt_ids: list[int]
    label_ids: list[int]
    action: int
    old_log_prob: float
    old_value: float
    advantage: float
    target: float
    replay: bool
    old_from_forward: bool = False
    """`old_log_prob` is still to be taken from this step's first forward pass with gradients (see `_refresh_old_log_probs`)."""


class PolicyUpdate:
    """Optimises a `LabelPolicy` (LoRA weights and value head) with the algorithm of an `RLConfig`.

    With `RLConfig.max_kl` each optimizer step is a trust-region step: kept only if the policy's exact KL
    from before the step, on the step's own rows, stays within it. Why: Adam scales each step to the
    gradient's own size, so on a near-deterministic policy (a label-after reflective policy leaves SFT
    with an entropy of about 1e-4 nats) a gradient of norm 1e-4 still moves it as far as a large one would,
    which collapsed a taxi Reflect-RL run (experiments/taxi_dagger/README.md).
    """

    reuse_first_forward = True
    """Take the ratio denominators of the first optimizer step's micro-batches from their own forward pass instead
    of a no-grad pass of their own (the same numbers, see `_refresh_old_log_probs`); False runs the extra pass."""

    def __init__(self, config: RLConfig, policy: LabelPolicy, reference: LabelPolicy | None = None, accelerator=None):
        """`accelerator`: an accelerate `Accelerator` whose processes share each update (None: this process alone)."""
        if config.uses_critic and policy.value_head is None:
            raise ValueError(f"algo {config.algo!r} with this baseline needs a policy with a value head")
        if config.kl_coef > 0 and reference is None:
            raise ValueError("kl_coef > 0 needs a reference policy")
        self.config = config
        self.algorithm = algorithm_for(config)
        self.policy = policy
        self.reference = reference
        self.params = policy.trainable_parameters()
        if not self.params:
            raise ValueError("the policy has no trainable parameters (add a LoRA adapter)")
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr)
        self.processes = UpdateProcesses(policy, self.params, accelerator)
        if config.max_kl is not None and self.processes.count > 1:
            raise ValueError("max_kl checks each step in one process; under data parallelism leave it unset")

    def update(self, batch: Batch, replayed: Sequence[Episode], iteration: int) -> dict[str, float]:
        """Optimise the policy on one batch (plus replayed episodes); returns loss statistics."""
        cfg = self.config
        advantages, targets = self.algorithm.advantages(batch.episodes)
        items = [
            _Item(s.prompt_ids, s.label_ids, s.action, s.log_prob, s.value or 0.0, a, t, False)
            for s, a, t in zip((s for e in batch.episodes for s in e.steps), advantages, targets)
        ]
        if cfg.replay_weight > 0:
            items += [_Item(s.prompt_ids, s.label_ids, s.action, s.log_prob, 0.0, 0.0, 0.0, True) for e in replayed for s in e.steps]
        # A step without a label choice (an agent that answered nothing valid) has no log-prob to train;
        # its reward still counted in the returns above.
        items = [i for i in items if i.action >= 0 and i.prompt_ids and math.isfinite(i.old_log_prob)]
        skipped = 0
        if cfg.skip_zero_advantage:
            # DAPO's filter without its resampling: when every episode of a group earned the same
            # return, its steps carry no policy-gradient signal, only the entropy bonus (and KL),
            # yet each costs a forward and backward pass. On a task the policy never solves yet
            # (ALFWorld after a short SFT) that is the whole update.
            kept = [i for i in items if i.replay or i.advantage != 0.0]
            skipped, items = len(items) - len(kept), kept
        counts = {"update/skipped_steps": float(skipped)} if cfg.skip_zero_advantage else {}
        if not items:
            return {"update/steps": 0.0, "update/replay_steps": 0.0, **counts}
        epochs = self.algorithm.epochs
        rng = np.random.default_rng(derive_seed(cfg.seed, iteration, "minibatches"))
        # Micro-batches keep their rows for the whole update: under bfloat16 a row's log-prob
        # depends on the rows it is batched with (up to 0.4 nats for SmolLM2 on DangerousTaxi),
        # so ratios are only exact between passes over the same micro-batch.
        order = rng.permutation(len(items)) if epochs > 1 or 0 < cfg.minibatch_size < len(items) else np.arange(len(items))
        micro = [[items[int(i)] for i in order[s : s + cfg.micro_batch_size]] for s in range(0, len(items), cfg.micro_batch_size)]
        per_step = max(1, cfg.minibatch_size // cfg.micro_batch_size) if cfg.minibatch_size else len(micro)
        if self.algorithm.refreshes_old_log_probs:
            # Under data parallelism a later epoch may deal a micro-batch to a process that did not run its first pass.
            reuse = self.reuse_first_forward and (epochs == 1 or self.processes.count == 1)
            self._refresh_old_log_probs(micro, per_step if reuse else 0)
        sums = WeightedMeans()
        rejected = 0
        for epoch in range(epochs):
            sequence = rng.permutation(len(micro)) if epoch > 0 else np.arange(len(micro))
            for start in range(0, len(micro), per_step):
                if not self._optimise([micro[int(i)] for i in sequence[start : start + per_step]], sums):
                    rejected = 1
                    break
            if rejected:
                break
        stats = {f"loss/{k}": v for k, v in self.processes.merge(sums).means().items()}
        stats["update/steps"] = float(sum(not i.replay for i in items))
        stats["update/replay_steps"] = float(sum(i.replay for i in items))
        if cfg.max_kl is not None:
            stats["update/rejected_steps"] = float(rejected)
        return {**stats, **counts}

    def _refresh_old_log_probs(self, micro_batches: list[list[_Item]], first_step: int = 0) -> None:
        """Ratio denominators from the update's own forward pass, before any step.

        The rollout sampled with the same weights, but in other batches (and
        possibly with other kernels), so its log-probs can differ from the
        update's by rounding; the ratio must start at exactly 1. Replayed steps
        keep the log-probs of the policy that played them (see `replay_loss`).

        The first `first_step` micro-batches make up the first optimizer step:
        their forward pass with gradients runs before any weight changes, on the
        same rows in the same order, so it computes these very numbers (recording
        gradients runs the same kernels; tests/test_rl_training.py compares both
        paths byte for byte). They are taken from it there (`_accumulate`)
        instead of from a no-grad pass of their own.
        """
        for micro in micro_batches[:first_step]:
            for item in micro:
                item.old_from_forward = not item.replay
        with torch.no_grad():
            for micro in micro_batches[first_step:]:
                out = self.policy.forward_ids([i.prompt_ids for i in micro], [i.label_ids for i in micro])
                picked = out.log_probs.gather(1, torch.tensor([[i.action] for i in micro], device=out.log_probs.device))
                for item, value in zip(micro, picked.squeeze(1).tolist()):
                    if not item.replay:
                        item.old_log_prob = value

    def _optimise(self, micro_batches: list[list[_Item]], sums: WeightedMeans) -> bool:
        """One optimizer step over `micro_batches`; False when `max_kl` undid it (the update stops there)."""
        cfg = self.config
        n_on = sum(not i.replay for micro in micro_batches for i in micro)
        n_replay = sum(len(micro) for micro in micro_batches) - n_on
        self.optimizer.zero_grad(set_to_none=True)
        mine = self.processes.deal(micro_batches)
        before: list[tuple[list[_Item], torch.Tensor]] = []  # each micro-batch's label log-probs before the step
        for k, (micro, factor) in enumerate(mine):
            with self.processes.backward_context(last=k == len(mine) - 1):
                log_probs = self._accumulate(micro, factor, n_on, n_replay, sums)
            if factor > 0:
                before.append((micro, log_probs))
        norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        sums.add("grad_norm", float(norm), 1.0 / self.processes.count)
        if cfg.max_kl is not None:
            weights = [p.detach().clone() for p in self.params]
            optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.max_kl is None:
            return True
        kl = self._step_kl(before)
        sums.add("step_kl", kl, 1.0)
        if kl <= cfg.max_kl:
            return True
        with torch.no_grad():
            for param, saved in zip(self.params, weights):
                param.copy_(saved)
        self.optimizer.load_state_dict(optimizer_state)
        return False

    def _step_kl(self, before: list[tuple[list[_Item], torch.Tensor]]) -> float:
        """Mean exact KL(before || after) over the last step's rows, every menu label counted."""
        total, rows = 0.0, 0
        with torch.no_grad():
            for micro, log_probs in before:
                after = self.policy.forward_ids([i.prompt_ids for i in micro], [i.label_ids for i in micro])
                total += float(losses.label_kl(log_probs, after.log_probs, after.mask).sum())
                rows += len(micro)
        return total / max(rows, 1)

    def _accumulate(self, micro: list[_Item], factor: float, n_on: int, n_replay: int, sums: WeightedMeans) -> torch.Tensor:
        """Forward and backward of one micro-batch, its loss weighted by its share of the step times `factor`;
        returns the micro-batch's label log-probs as they were before the step (detached).

        `factor` is 1 alone, the number of processes under data parallelism (DDP averages the
        gradients), 0 for a stand-in micro-batch (whose statistics are not counted).
        """
        cfg = self.config
        counted = factor > 0
        out = self.processes.forward([i.prompt_ids for i in micro], [i.label_ids for i in micro])
        actions = torch.tensor([i.action for i in micro], device=out.log_probs.device)
        chosen = out.log_probs.gather(1, actions[:, None]).squeeze(1)
        if any(i.old_from_forward for i in micro):
            for item, value in zip(micro, chosen.tolist()):
                if item.old_from_forward:
                    item.old_log_prob, item.old_from_forward = value, False
        old = torch.tensor([i.old_log_prob for i in micro], device=chosen.device)
        on = torch.tensor([not i.replay for i in micro], device=chosen.device)
        total = chosen.new_zeros(())
        if on.any():
            share = int(on.sum()) / n_on
            loss, parts = self._policy_loss(micro, out, chosen, old, on)
            total = total + share * loss
            for name, value in parts.items():
                sums.add(name, value, int(on.sum()) * counted)
        if (~on).any():
            share = int((~on).sum()) / n_replay
            replay = losses.replay_loss(chosen[~on], old[~on])
            total = total + share * cfg.replay_weight * replay
            sums.add("replay", replay.item(), int((~on).sum()) * counted)
        (total * factor if factor != 1.0 else total).backward()
        return out.log_probs.detach()

    def _policy_loss(self, micro, out, chosen, old, on) -> tuple[torch.Tensor, dict[str, float]]:
        """The algorithm's loss on the on-policy steps selected by `on`."""
        device = chosen.device
        kl = None
        if self.config.kl_coef > 0:
            with torch.no_grad():
                ref = self.reference.forward_ids([i.prompt_ids for i in micro], [i.label_ids for i in micro])
            kl = losses.label_kl(out.log_probs[on], ref.log_probs[on], out.mask[on])
        steps = OnPolicySteps(
            log_probs=chosen[on],
            old_log_probs=old[on],
            advantages=torch.tensor([i.advantage for i in micro], device=device)[on],
            entropy=out.entropy[on],
            values=out.values[on] if out.values is not None else None,
            targets=torch.tensor([i.target for i in micro], device=device)[on],
            old_values=torch.tensor([i.old_value for i in micro], device=device)[on],
            kl=kl,
        )
        return self.algorithm.loss(steps)
