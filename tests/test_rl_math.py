"""Returns, advantages and losses of the RL trainer, checked against hand-computed values."""

import math

import pytest
import torch

from reflectrl.trainers.losses import (
    approx_kl,
    clip_fraction,
    grpo_loss,
    label_kl,
    policy_gradient_loss,
    ppo_clip_loss,
    replay_loss,
    value_loss,
)
from reflectrl.trainers.returns import (
    gae,
    group_advantages,
    reward_to_go,
    scale_by_std,
    step_group_advantages,
    whiten,
)


def test_reward_to_go_discounts_from_each_step():
    rewards = torch.tensor([1.0, 0.0, 2.0])
    assert torch.allclose(reward_to_go(rewards, 1.0), torch.tensor([3.0, 2.0, 2.0]))
    assert torch.allclose(reward_to_go(rewards, 0.5), torch.tensor([1.5, 1.0, 2.0]))
    assert reward_to_go(torch.tensor([]), 0.9).numel() == 0


def test_gae_with_lambda_one_is_monte_carlo_and_zero_is_td():
    rewards = torch.tensor([0.0, -1.0, 5.0])
    values = torch.tensor([1.0, 2.0, 3.0])
    adv, targets = gae(rewards, values, gamma=0.9, lam=1.0)
    assert torch.allclose(adv, reward_to_go(rewards, 0.9) - values, atol=1e-6)
    assert torch.allclose(targets, reward_to_go(rewards, 0.9), atol=1e-6)
    adv0, _ = gae(rewards, values, gamma=0.9, lam=0.0)
    expected = torch.tensor([0.0 + 0.9 * 2.0 - 1.0, -1.0 + 0.9 * 3.0 - 2.0, 5.0 - 3.0])
    assert torch.allclose(adv0, expected, atol=1e-6)
    with pytest.raises(ValueError):
        gae(rewards, values[:2])


def test_group_advantages_centre_and_scale_within_each_group():
    returns = torch.tensor([1.0, 0.0, 5.0, 5.0, 2.0])
    groups = torch.tensor([0, 0, 1, 1, 2])
    adv = group_advantages(returns, groups, normalize_std=False)
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, 0.0, 0.0, 0.0]))
    adv = group_advantages(returns, groups, normalize_std=True)
    assert torch.allclose(adv[:2], torch.tensor([1.0, -1.0]), atol=1e-4)
    assert torch.all(adv[2:] == 0)


def test_step_groups_compare_only_identical_states_of_one_group():
    step_returns = torch.tensor([3.0, 1.0, 2.0, 7.0, 9.0])
    groups = torch.tensor([0, 0, 0, 1, 1])
    keys = ["a", "a", "b", "a", "c"]
    adv = step_group_advantages(step_returns, groups, keys, normalize_std=False)
    # only steps 0 and 1 share (group 0, state a); state a in group 1 is another anchor
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError):
        step_group_advantages(step_returns, groups, keys[:2])


def test_scale_by_std_keeps_signs_and_whiten_centres():
    adv = torch.tensor([2.0, -2.0, 2.0, -2.0])
    assert torch.allclose(scale_by_std(adv), torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-5)
    assert torch.allclose(scale_by_std(adv + 4), (adv + 4) / 2, atol=1e-5)
    assert torch.allclose(whiten(adv + 4), torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-5)


def test_policy_gradient_gradient_is_minus_advantage():
    log_probs = torch.tensor([-1.0, -2.0], requires_grad=True)
    loss = policy_gradient_loss(log_probs, torch.tensor([2.0, -1.0]))
    loss.backward()
    assert loss.item() == pytest.approx(-(2 * -1.0 + -1 * -2.0) / 2)
    assert torch.allclose(log_probs.grad, torch.tensor([-1.0, 0.5]))


def test_ppo_clip_stops_the_gradient_outside_the_trust_region():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5]))
    # ratios 1.5 (positive advantage: clipped), 0.5 (negative advantage: clipped), 1.05 (inside)
    new = torch.log(torch.tensor([0.75, 0.25, 0.525])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0])
    loss = ppo_clip_loss(new, old, adv, clip=0.1)
    loss.backward()
    assert loss.item() == pytest.approx(-(1.1 * 1 + 0.9 * -1 + 1.05 * 1) / 3, rel=1e-5)
    assert new.grad[0] == 0 and new.grad[1] == 0 and new.grad[2] != 0
    assert clip_fraction(new, old, 0.1).item() == pytest.approx(2 / 3)
    assert approx_kl(old, old).item() == 0


def test_grpo_adds_the_kl_penalty_to_the_clipped_surrogate():
    lp = torch.tensor([-0.5, -1.0])
    adv = torch.tensor([1.0, -1.0])
    kl = torch.tensor([0.2, 0.4])
    base = ppo_clip_loss(lp, lp, adv, 0.1)
    assert grpo_loss(lp, lp, adv, 0.1, kl, 0.5).item() == pytest.approx(base.item() + 0.5 * 0.3)
    assert grpo_loss(lp, lp, adv, 0.1).item() == pytest.approx(base.item())


def test_value_loss_plain_and_clipped():
    values = torch.tensor([1.0, 3.0])
    targets = torch.tensor([2.0, 2.0])
    assert value_loss(values, targets).item() == pytest.approx(0.5)
    # old values 0: the clipped prediction 0.5 is further from 2 than 1 and 3 are
    clipped = value_loss(values, targets, old_values=torch.zeros(2), clip=0.5)
    assert clipped.item() == pytest.approx(0.5 * (1.5**2 + 1.5**2) / 2)


def test_label_kl_is_exact_and_ignores_padding():
    p = torch.tensor([[0.5, 0.5, 0.0]])
    q = torch.tensor([[0.25, 0.75, 0.0]])
    mask = torch.tensor([[True, True, False]])
    log_p = torch.where(mask, p.clamp_min(1e-30).log(), torch.full_like(p, -1e9))
    log_q = torch.where(mask, q.clamp_min(1e-30).log(), torch.full_like(q, -1e9))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert label_kl(log_p, log_q, mask).item() == pytest.approx(expected, rel=1e-5)
    assert label_kl(log_p, log_p, mask).item() == pytest.approx(0.0, abs=1e-7)


def test_replay_weights_are_truncated_importance_ratios():
    behaviour = torch.log(torch.tensor([0.5, 0.5]))
    current = torch.log(torch.tensor([0.9, 0.25])).requires_grad_(True)
    loss = replay_loss(current, behaviour)
    loss.backward()
    # ratios 1.8 -> 1 and 0.5 -> 0.5, held constant
    assert torch.allclose(current.grad, torch.tensor([-0.5, -0.25]))
