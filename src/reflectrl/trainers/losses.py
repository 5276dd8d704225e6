"""RL losses as pure tensor functions, one per formula.

Every policy here is a categorical distribution over the labels of one step's
menu (one label token per step), so "log pi(a|s)" is one number per step and a
batch is a flat tensor of steps. Each loss is a plain mean over the steps it
gets; the update (`update.py`) weights each micro-batch's mean by its share of
the minibatch's steps, and mixes in replayed steps the same way.

Signs: every function returns a quantity to *minimise*.
"""

from __future__ import annotations

import torch
from torch import Tensor


def policy_gradient_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    """REINFORCE: L = -E_t[ A_t * log pi(a_t|s_t) ].

    `advantages` are constants (reward-to-go, minus a baseline if any).
    """
    return -(advantages.detach() * log_probs).mean()


def ppo_clip_loss(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip: float = 0.1) -> Tensor:
    """PPO's clipped surrogate: L = -E_t[ min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) ].

    rho_t = pi(a_t|s_t) / pi_old(a_t|s_t), with pi_old the policy that sampled the step.
    """
    ratio = torch.exp(log_probs - old_log_probs.detach())
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    return -torch.minimum(unclipped, clipped).mean()


def grpo_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    group_advantages: Tensor,
    clip: float = 0.1,
    kl_to_reference: Tensor | None = None,
    kl_coef: float = 0.0,
) -> Tensor:
    """GRPO: the clipped surrogate with group-relative advantages, plus beta * KL(pi || pi_ref).

    L = -E_t[ min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) ] + beta * E_t[ KL_t ],
    where A_t is the advantage of the episode (and, GiGPO-style, of the state)
    relative to its group, so no critic is needed.
    """
    loss = ppo_clip_loss(log_probs, old_log_probs, group_advantages, clip)
    if kl_to_reference is not None and kl_coef:
        loss = loss + kl_coef * kl_to_reference.mean()
    return loss


def value_loss(values: Tensor, targets: Tensor, old_values: Tensor | None = None, clip: float | None = None) -> Tensor:
    """Critic regression: L = 1/2 E_t[ (V(s_t) - G_t)^2 ].

    With `old_values` and `clip`, PPO's clipped form: the larger of the plain
    error and the error of V_old + clip(V - V_old, -clip, clip), which keeps
    the critic from jumping far from the values the advantages were built on.
    """
    targets = targets.detach()
    error = (values - targets) ** 2
    if old_values is not None and clip is not None:
        old_values = old_values.detach()
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        error = torch.maximum(error, (clipped - targets) ** 2)
    return 0.5 * error.mean()


def entropy_bonus(entropy: Tensor) -> Tensor:
    """H = E_t[ -sum_a pi(a|s_t) log pi(a|s_t) ]; the trainer subtracts coef * H from its loss."""
    return entropy.mean()


def label_kl(log_probs: Tensor, reference_log_probs: Tensor, mask: Tensor) -> Tensor:
    """Exact per-step KL(pi || pi_ref) = sum_a pi(a) (log pi(a) - log pi_ref(a)) over the menu's labels.

    Both inputs are [steps, labels] log-probabilities; `mask` marks the labels
    that are on each step's menu (the others are padding and contribute 0).
    """
    mask = mask.bool()
    probs = torch.where(mask, log_probs.exp(), torch.zeros_like(log_probs))
    gap = torch.where(mask, log_probs - reference_log_probs.detach(), torch.zeros_like(log_probs))
    return (probs * gap).sum(dim=-1)


def replay_loss(log_probs: Tensor, behaviour_log_probs: Tensor) -> Tensor:
    """Self-imitation on replayed successful steps: L = -E_t[ min(1, pi/mu)_t * log pi(a_t|s_t) ].

    The steps come from earlier policies mu, so they are off-policy. Each is
    weighted by its truncated importance ratio min(1, pi/mu), held constant:
    a step the current policy still likes counts fully, one it has moved away
    from counts less, and no step ever counts more than once (truncation bounds
    the variance that plain importance sampling would add).
    """
    ratio = torch.exp(log_probs.detach() - behaviour_log_probs.detach()).clamp(max=1.0)
    return -(ratio * log_probs).mean()


def clip_fraction(log_probs: Tensor, old_log_probs: Tensor, clip: float) -> Tensor:
    """Share of steps whose ratio lies outside [1 - clip, 1 + clip] (a PPO health metric)."""
    ratio = torch.exp(log_probs.detach() - old_log_probs.detach())
    return ((ratio - 1.0).abs() > clip).float().mean()


def approx_kl(log_probs: Tensor, old_log_probs: Tensor) -> Tensor:
    """Estimate of KL(pi_old || pi) from sampled steps: E[(rho - 1) - log rho] (always >= 0)."""
    log_ratio = log_probs.detach() - old_log_probs.detach()
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()
