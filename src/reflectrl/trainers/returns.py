"""Returns and advantages for episodic text environments.

Conventions shared by every function here:

* One episode is a 1-D tensor of per-step rewards, in time order.
* An episode that ends by the horizon (truncation) is treated like a terminal
  one: the horizon is part of the task, and the prompt does not show the
  steps left, so bootstrapping from V(s_T) would estimate a value the policy
  cannot condition on. Every return is therefore zero after the last step.
* Group functions take a flat tensor and an integer group id per entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor


def reward_to_go(rewards: Tensor, gamma: float = 1.0) -> Tensor:
    """G_t = sum_{k >= t} gamma^(k - t) r_k for one episode."""
    returns = torch.zeros(len(rewards), dtype=torch.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        returns[t] = running
    return returns.float()


def gae(rewards: Tensor, values: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation for one episode; returns (advantages, value targets).

    delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with V after the last step = 0;
    A_t = sum_k (gamma lam)^k delta_{t+k}; the value target is A_t + V(s_t).
    lam = 1 gives the Monte Carlo advantage G_t - V(s_t), lam = 0 the one-step TD error.
    """
    if rewards.shape != values.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} differ in shape")
    rewards = rewards.double()
    values = values.double()
    advantages = torch.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        next_value = float(values[t + 1]) if t + 1 < len(values) else 0.0
        delta = float(rewards[t]) + gamma * next_value - float(values[t])
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages.float(), (advantages + values).float()


def group_advantages(returns: Tensor, groups: Tensor, normalize_std: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO's episode-level advantage: A_i = (R_i - mean_g R) / (std_g R + eps), g the group of i.

    `std` is the population standard deviation of the group (defined for any
    group size); a group whose returns are all equal gets advantage 0, as does
    a group of one episode, since neither says which behaviour was better.
    """
    returns = returns.float()
    advantages = torch.zeros_like(returns)
    for group in torch.unique(groups):
        members = groups == group
        advantages[members] = _relative_to_group(returns[members], normalize_std, eps)
    return advantages


def step_group_advantages(
    step_returns: Tensor,
    groups: Tensor,
    state_keys: Sequence[Hashable],
    normalize_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """GiGPO-style step-level advantage over identical states.

    Steps of the same episode group (same start state) whose state is
    identical (same `state_keys` entry) form an anchor group; each step's
    advantage is its discounted return-to-go minus the anchor group's mean
    (divided by its std when `normalize_std`). A state visited once gets 0.
    """
    if len(state_keys) != len(step_returns):
        raise ValueError("one state key per step is needed")
    anchors: dict[tuple[int, Hashable], list[int]] = defaultdict(list)
    for i, key in enumerate(state_keys):
        anchors[(int(groups[i]), key)].append(i)
    step_returns = step_returns.float()
    advantages = torch.zeros_like(step_returns)
    for members in anchors.values():
        if len(members) < 2:
            continue
        index = torch.tensor(members)
        advantages[index] = _relative_to_group(step_returns[index], normalize_std, eps)
    return advantages


def _relative_to_group(values: Tensor, normalize_std: bool, eps: float) -> Tensor:
    """Each value minus its group's mean, divided by the group's (population) std when `normalize_std`."""
    centred = values - values.mean()
    if normalize_std:
        centred = centred / (values.std(unbiased=False) + eps)
    return centred


def scale_by_std(advantages: Tensor, eps: float = 1e-6) -> Tensor:
    """Divide advantages by their batch standard deviation (keeps their sign and any baseline choice)."""
    if advantages.numel() < 2:
        return advantages
    return advantages / (advantages.std(unbiased=False) + eps)


def whiten(advantages: Tensor, eps: float = 1e-6) -> Tensor:
    """(A - mean A) / std A over the batch: PPO's usual advantage normalisation."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    centred = advantages - advantages.mean()
    return centred / (centred.std(unbiased=False) + eps)
