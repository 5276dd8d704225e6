"""pg, ppo and grpo as small units: each holds its advantages and its loss, and reads like its paper.

The trainer (`reflectrl.trainers.online`) collects episodes, asks the run's
algorithm for per-step advantages and value targets, splits the steps into
micro-batches and calls `Algorithm.loss` on the on-policy steps of each; it
never branches on the algorithm's name. What differs between the algorithms
is declared here:

* `episodes_per_seed`: grpo plays a group of episodes from each start seed;
* `epochs` and `refreshes_old_log_probs`: pg makes one pass and needs no
  ratio; ppo and grpo make `config.epochs` passes over a batch, with ratio
  denominators recomputed by the update's own forward pass;
* `advantages`: reward-to-go minus a baseline (pg), GAE or Monte Carlo
  against the value head (ppo), returns relative to the group, plus
  GiGPO-style step groups (grpo);
* `policy_loss`: the surrogate of `reflectrl.trainers.losses`.

The shared rest of the loss (entropy bonus, KL to the reference policy,
critic regression, ratio diagnostics) is `Algorithm.loss`, in one order for
all three, so a run gives the same floats whichever unit computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from reflectrl.rollout.episode import Episode
from reflectrl.trainers import losses
from reflectrl.trainers.returns import gae, group_advantages, reward_to_go, scale_by_std, step_group_advantages, whiten
from reflectrl.trainers.rl_config import RLConfig


@dataclass
class OnPolicySteps:
    """The on-policy steps of one micro-batch, as the loss needs them (one entry per step)."""

    log_probs: Tensor
    """log pi(a_t|s_t) of the chosen labels under the current weights (with gradients)."""
    old_log_probs: Tensor
    """The same under the weights that sampled them (the ratio denominators)."""
    advantages: Tensor
    entropy: Tensor
    """Entropy of each step's label distribution (with gradients)."""
    values: Tensor | None
    """Value-head estimates (with gradients), when the policy has a head."""
    targets: Tensor
    """Value targets (returns) of the critic."""
    old_values: Tensor
    """Value estimates at sampling time (for value clipping)."""
    kl: Tensor | None
    """Per-step KL to the reference policy, when the run has a KL penalty."""


class Algorithm:
    """What the trainer asks of an RL algorithm; subclasses fill in the advantages and the surrogate."""

    episodes_per_seed = 1
    refreshes_old_log_probs = True
    kl_in_policy_loss = False
    """Whether `policy_loss` already holds the KL penalty (grpo's objective does)."""

    def __init__(self, config: RLConfig):
        self.config = config
        self.epochs = config.epochs

    def advantages(self, episodes: Sequence[Episode]) -> tuple[list[float], list[float]]:
        """Per-step (advantages, value targets) of on-policy episodes, flattened in episode order."""
        raise NotImplementedError

    def policy_loss(self, steps: OnPolicySteps) -> Tensor:
        raise NotImplementedError

    def loss(self, steps: OnPolicySteps) -> tuple[Tensor, dict[str, float]]:
        """L = policy loss - c_H * entropy (+ beta * KL) (+ c_V * critic loss); returns it and its parts."""
        cfg = self.config
        policy_loss = self.policy_loss(steps)
        entropy = losses.entropy_bonus(steps.entropy)
        loss = policy_loss - cfg.entropy_coef * entropy
        parts = {"policy": policy_loss.item(), "entropy": entropy.item()}
        if steps.kl is not None:
            if not self.kl_in_policy_loss:
                loss = loss + cfg.kl_coef * steps.kl.mean()
            parts["kl_to_reference"] = steps.kl.mean().item()
        if cfg.uses_critic:
            critic = losses.value_loss(steps.values, steps.targets, steps.old_values, cfg.value_clip)
            loss = loss + cfg.value_coef * critic
            parts["value"] = critic.item()
        if self.refreshes_old_log_probs:
            parts["clip_fraction"] = losses.clip_fraction(steps.log_probs, steps.old_log_probs, cfg.ppo_clip).item()
            parts["approx_kl"] = losses.approx_kl(steps.log_probs, steps.old_log_probs).item()
        parts["total"] = loss.item()
        return loss, parts


def _rewards(episodes: Sequence[Episode]) -> list[Tensor]:
    return [torch.tensor([s.reward for s in e.steps], dtype=torch.float32) for e in episodes]


def _values(episodes: Sequence[Episode]) -> list[Tensor]:
    return [torch.tensor([s.value or 0.0 for s in e.steps], dtype=torch.float32) for e in episodes]


class PolicyGradient(Algorithm):
    """REINFORCE with reward-to-go: L = -E_t[A_t log pi(a_t|s_t)], A_t = G_t - b(s_t)."""

    refreshes_old_log_probs = False

    def __init__(self, config: RLConfig):
        super().__init__(config)
        self.epochs = 1  # on-policy: a second pass would use stale samples without a ratio

    def advantages(self, episodes):
        cfg = self.config
        targets = torch.cat([reward_to_go(r, cfg.gamma) for r in _rewards(episodes)])
        if cfg.pg_baseline == "critic":
            adv = targets - torch.cat(_values(episodes))
        elif cfg.pg_baseline == "mean":
            adv = targets - targets.mean()
        else:
            adv = targets.clone()
        if cfg.normalize_advantages:
            adv = scale_by_std(adv)  # keeps the baseline's centre: only the step size changes
        return adv.tolist(), targets.tolist()

    def policy_loss(self, steps):
        return losses.policy_gradient_loss(steps.log_probs, steps.advantages)


class PPO(Algorithm):
    """PPO-clip with a value-head critic: L = -E_t[min(rho_t A_t, clip(rho_t, 1 +- eps) A_t)]."""

    def advantages(self, episodes):
        cfg = self.config
        rewards, values = _rewards(episodes), _values(episodes)
        if cfg.advantage_estimator == "gae":
            pairs = [gae(r, v, cfg.gamma, cfg.gae_lambda) for r, v in zip(rewards, values)]
            adv = torch.cat([a for a, _ in pairs])
            targets = torch.cat([t for _, t in pairs])
        else:
            targets = torch.cat([reward_to_go(r, cfg.gamma) for r in rewards])
            adv = targets - torch.cat(values)
        if cfg.normalize_advantages:
            adv = whiten(adv)
        return adv.tolist(), targets.tolist()

    def policy_loss(self, steps):
        return losses.ppo_clip_loss(steps.log_probs, steps.old_log_probs, steps.advantages, self.config.ppo_clip)


class GRPO(Algorithm):
    """GRPO: the clipped surrogate with advantages relative to a group of episodes from one start, + beta KL.

    With `step_groups`, GiGPO's step-level term is added: each step's return-to-go
    relative to the steps of its group that met the same state.
    """

    kl_in_policy_loss = True

    def __init__(self, config: RLConfig):
        super().__init__(config)
        self.episodes_per_seed = config.group_size

    def advantages(self, episodes):
        cfg = self.config
        rewards = _rewards(episodes)
        to_go = [reward_to_go(r, cfg.gamma) for r in rewards]
        groups = torch.tensor([e.group for e in episodes])
        totals = torch.stack([g[0] if len(g) else torch.tensor(0.0) for g in to_go])
        per_episode = group_advantages(totals, groups, cfg.grpo_std_norm)
        adv = torch.cat([per_episode[i].expand(len(r)) for i, r in enumerate(rewards)])
        if cfg.step_groups:
            step_groups = torch.cat([torch.full((len(r),), e.group) for e, r in zip(episodes, rewards)])
            keys = [s.state_key for e in episodes for s in e.steps]
            adv = adv + cfg.step_group_weight * step_group_advantages(torch.cat(to_go), step_groups, keys, cfg.grpo_std_norm)
        return adv.tolist(), torch.cat(to_go).tolist()

    def policy_loss(self, steps):
        cfg = self.config
        return losses.grpo_loss(steps.log_probs, steps.old_log_probs, steps.advantages, cfg.ppo_clip, steps.kl, cfg.kl_coef)


BY_NAME: dict[str, type[Algorithm]] = {"pg": PolicyGradient, "ppo": PPO, "grpo": GRPO}


def algorithm_for(config: RLConfig) -> Algorithm:
    """The unit of `config.algo` (RLConfig has checked the name)."""
    return BY_NAME[config.algo](config)
