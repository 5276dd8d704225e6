"""Training the reflector from returns: policy gradient on the tokens of its own sampled reflections.

The paper freezes the reflector after SFT. When the SFT policy has learned to do what its reflection says
(on DangerousTaxi it follows it in 99-100% of steps, right whenever the reflection is right and wrong
whenever it is wrong), the reflector decides and the policy's RL has nothing left to move: Reflect-RL is
then its reflector (experiments/taxi_dagger). `RLConfig.train_reflector` trains it too, with the run's own
advantages:

    L = -1/N sum_i [ A_i * 1/|y_i| sum_t log pi_R(y_i,t | x_i, y_i,<t) ]
        + beta * 1/N sum_i 1/|y_i| sum_t k3(pi_ref, pi_R)_i,t

where x_i is the reflector's prompt of on-policy step i, y_i the reflection the policy read (as the
reflector's SFT trains it: its text, then the end-of-sequence token), A_i the step's advantage from the
run's algorithm (the same numbers the policy's update uses), pi_R the reflector at the sampling
temperature, and k3 = exp(r) - r - 1 with r = log pi_ref - log pi_R (GRPO's KL estimator) to the reflector
the run started from (`RLConfig.reflector_kl_coef`; 0 loads no reference). One pass over the steps (the
gradient of an on-policy sample needs no ratio), in minibatches of `RLConfig.minibatch_size` rows,
`RLConfig.micro_batch_size` rows per forward pass, Adam at `RLConfig.reflector_lr`, the gradient norm clipped at
`RLConfig.grad_clip`.

Steps that share a prompt and a reflection (a GRPO group's first steps, from one start state, usually do:
a sharp reflector samples the same text) run once, as one row whose advantage is the sum of theirs and whose
KL term counts as many times as they do: the same loss, fewer forward passes. A row whose advantages sum
to 0 carries only the KL term's gradient, which a penalty alone does not need: it is left out.

The reflector and the policy are two adapters of one base model (`players.two_players.TwoPlayerModel`):
this update activates the reflector's adapter and optimises its LoRA weights only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reflectrl.models.adapters import adapter_scope, lora_parameters
from reflectrl.models.precision import bf16_autocast
from reflectrl.models.tokens import encode_prompts
from reflectrl.rollout.episode import Episode
from reflectrl.trainers.algorithms import Algorithm
from reflectrl.trainers.metrics_log import WeightedMeans
from reflectrl.trainers.rl_config import RLConfig, derive_seed
from reflectrl.trainers.sft import completion_logits, pad_batch


@dataclass
class ReflectionRow:
    """The on-policy steps with one prompt and one reflection, as the reflector's update needs them."""

    prompt_ids: list[int]
    completion_ids: list[int]
    advantage: float
    """The sum of the steps' advantages."""
    steps: int = 1
    """How many steps the row stands for."""


def reflection_rows(tokenizer, episodes: Sequence[Episode], advantages: Sequence[float]) -> tuple[list[ReflectionRow], int]:
    """The distinct (prompt, reflection) rows whose advantages do not sum to 0, tokenized as the reflector's SFT rows
    are, in order of first appearance; and the number of steps with a reflection (the loss's denominator)."""
    steps = [s for e in episodes for s in e.steps]
    if len(steps) != len(advantages):
        raise ValueError(f"{len(advantages)} advantages for {len(steps)} steps")
    merged: dict[tuple[str, str], list[float]] = {}
    for step, advantage in zip(steps, advantages):
        if step.reflection is not None and step.reflector_prompt is not None and math.isfinite(advantage):
            merged.setdefault((step.reflector_prompt, step.reflection), []).append(float(advantage))
    kept = [(key, sum(values), len(values)) for key, values in merged.items() if sum(values) != 0.0]
    counted = sum(len(values) for values in merged.values())
    if not kept:
        return [], counted
    prompts = encode_prompts(tokenizer, [prompt for (prompt, _), _, _ in kept])
    completions = tokenizer([text for (_, text), _, _ in kept], add_special_tokens=False)["input_ids"]
    eos = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    return [ReflectionRow(list(p), list(c) + eos, a, n) for p, c, (_, a, n) in zip(prompts, completions, kept)], counted


def completion_log_probs(model, rows: Sequence[ReflectionRow], temperature: float, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(token) of every completion token of `rows` at `temperature`, and each token's row index, computed
    as the reflector's SFT loss computes its logits (`trainers.sft.completion_logits`)."""
    device = model.get_output_embeddings().weight.device
    features = [
        {"input_ids": r.prompt_ids + r.completion_ids, "completion_mask": [0] * len(r.prompt_ids) + [1] * len(r.completion_ids)}
        for r in rows
    ]
    inputs = {key: value.to(device) for key, value in pad_batch(features, pad_id).items()}
    logits, targets, row_of = completion_logits(model, inputs)
    log_probs = torch.log_softmax(logits / temperature, dim=-1).gather(1, targets[:, None])[:, 0]
    return log_probs, row_of


def per_row_mean(values: torch.Tensor, row_of: torch.Tensor, rows: int) -> torch.Tensor:
    """The mean of `values` over the tokens of each row."""
    totals = torch.zeros(rows, dtype=values.dtype, device=values.device).index_add(0, row_of, values)
    counts = torch.bincount(row_of, minlength=rows).clamp(min=1).to(values.dtype)
    return totals / counts


class ReflectorUpdate:
    """Optimises the reflector's LoRA adapter with the loss of the module docstring."""

    def __init__(
        self, config: RLConfig, algorithm: Algorithm, model, tokenizer, *, adapter: str, reference: str | None, bf16: bool = False,
    ):
        if config.reflection_temperature <= 0:
            raise ValueError("training the reflector needs sampled reflections (reflection_temperature > 0)")
        if config.reflector_kl_coef > 0 and reference is None:
            raise ValueError("reflector_kl_coef > 0 needs the starting reflector as a reference adapter")
        self.config = config
        self.algorithm = algorithm
        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.reference = reference
        self.bf16 = bool(bf16)
        self.params = lora_parameters(model, adapter)
        if not self.params:
            raise ValueError(f"no LoRA weights of adapter {adapter!r} to train: the reflector must be an adapter folder")
        for param in self.params:
            param.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.params, lr=config.reflector_lr)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad or 0)

    def update(self, episodes: Sequence[Episode], iteration: int) -> dict[str, float]:
        """One pass over the batch's reflections; returns the update's statistics under ``reflector/``."""
        cfg = self.config
        advantages, _ = self.algorithm.advantages(episodes)
        rows, steps = reflection_rows(self.tokenizer, episodes, advantages)
        stats = {"reflector/rows": float(len(rows)), "reflector/steps": float(steps)}
        if not rows:
            return stats
        order = np.random.default_rng(derive_seed(cfg.seed, iteration, "reflector")).permutation(len(rows))
        rows = [rows[int(i)] for i in order]
        per_step = cfg.minibatch_size or len(rows)
        sums = WeightedMeans()
        for start in range(0, len(rows), per_step):
            self._optimise(rows[start : start + per_step], sums)
        stats.update({f"reflector/{k}": v for k, v in sums.means().items()})
        stats["reflector/tokens"] = float(sum(len(r.completion_ids) for r in rows))
        return stats

    def _optimise(self, rows: list[ReflectionRow], sums: WeightedMeans) -> None:
        """One optimizer step: the loss of the module docstring, its means over the steps the rows stand for."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        device = self.model.get_output_embeddings().weight.device
        steps = sum(r.steps for r in rows)
        for start in range(0, len(rows), cfg.micro_batch_size):
            micro = rows[start : start + cfg.micro_batch_size]
            with bf16_autocast(self.bf16, device):
                if self.reference is not None:
                    with torch.no_grad(), adapter_scope(self.model, self.reference):
                        reference, _ = completion_log_probs(self.model, micro, cfg.reflection_temperature, self.pad_id)
                with adapter_scope(self.model, self.adapter):
                    log_probs, row_of = completion_log_probs(self.model, micro, cfg.reflection_temperature, self.pad_id)
            advantages = torch.tensor([r.advantage for r in micro], device=log_probs.device)
            counts = torch.tensor([float(r.steps) for r in micro], device=log_probs.device)
            mean_log_probs = per_row_mean(log_probs, row_of, len(micro))
            policy = -(advantages * mean_log_probs).sum() / steps
            loss = policy
            if self.reference is not None:
                ratio = reference - log_probs
                kl = (counts * per_row_mean(torch.exp(ratio) - ratio - 1, row_of, len(micro))).sum() / steps
                loss = loss + cfg.reflector_kl_coef * kl
                sums.add("kl_to_reference", kl.item() * steps / counts.sum().item(), counts.sum().item())
            loss.backward()
            sums.add("policy", policy.item() * steps / counts.sum().item(), counts.sum().item())
            sums.add("log_prob", (counts * mean_log_probs.detach()).sum().item() / counts.sum().item(), counts.sum().item())
        sums.add("grad_norm", float(torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
