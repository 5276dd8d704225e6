"""Loading the two players for an RL run: trainable policy, frozen reflector, optional KL reference.

Both players live on one base model (`TwoPlayerModel`):

* `policy` is either a PEFT adapter folder (an SFT checkpoint, trained on
  from there) or a model spec (``tiny-random``, ``smollm2-135m``, a folder),
  which gets a fresh LoRA adapter (the identity at the start).
* `reflector` is an adapter folder on the same base (the SFT reflector), the
  base model's own spec (the base weights reflect, zero-shot),
  ``openai:MODEL`` (a chat model behind an OpenAI-compatible server at
  `reflector_url`), ``served:URL[#MODEL]`` (a reflector behind an inference
  server, asked with raw completions; see `models.served_reflector`), or None
  for the no-reflection baseline.
* With a KL penalty, the starting policy is kept frozen as the reference: the
  SFT adapter loaded a second time, or the base weights for a fresh adapter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reflectrl.agents import PlainAgent, ReflectiveAgent
from reflectrl.models import POLICY, REFLECTOR, LabelPolicy, TwoPlayerModel, load_adapter
from reflectrl.models.loading import adapter_base_spec, is_adapter_folder
from reflectrl.models.policy import VALUE_HEAD_FILE
from reflectrl.models.precision import resolve_bf16
from reflectrl.models.reflection_cache import CachedReflector, reflector_identity
from reflectrl.models.served_spec import is_served_spec
from reflectrl.protocol import LabelSet, load_label_order
from reflectrl.rollout.timing import TimedReflector
from reflectrl.trainers.reflector_update import REFLECTOR_REFERENCE

OPENAI_PREFIX = "openai:"
"""Reflector specs starting with this name a model on an OpenAI-compatible server."""
REFERENCE = "reference"
"""Adapter name of the frozen starting policy used by the KL penalty."""


@dataclass
class RLPlayers:
    """Everything an RL run acts and learns with."""

    players: TwoPlayerModel
    policy: LabelPolicy
    agent: Any
    """A `ReflectiveAgent` or `PlainAgent` built on `policy`."""
    reflector: TimedReflector | None
    reference: LabelPolicy | None
    base: str
    """Spec of the shared base model."""
    reflection_cache: CachedReflector | None = None
    """The cache in front of the reflector, when `cache_reflections` asked for one."""
    reflector_adapter: str | None = None
    """Name of the reflector's adapter on `players.model` when it is a local adapter (what `train_reflector` trains)."""
    reflector_reference: str | None = None
    """Name of the frozen copy of the starting reflector, when `reflector_reference` asked for one."""

    @property
    def label_set(self) -> LabelSet:
        return self.policy.label_set


def load_rl_players(
    policy: str,
    reflector: str | None,
    *,
    value_head: bool = False,
    kl_reference: bool = False,
    lora_r: int = 16,
    lora_alpha: int = 32,
    reflector_max_new_tokens: int = 64,
    shuffle_labels: bool | None = None,
    label_after: bool | None = None,
    init_seed: int = 0,
    device: str | None = None,
    dtype: str | None = None,
    reflector_url: str | None = None,
    reflector_api_key_env: str = "OPENAI_API_KEY",
    bf16: bool | None = None,
    cache_reflections: bool = False,
    reflector_temperature: float = 0.0,
    reflector_reference: bool = False,
) -> RLPlayers:
    """Load the base model once, put the players' adapters on it and build the agent (see the module docstring).

    `init_seed` seeds the fresh LoRA adapter and value head, so two runs with
    the same seed start from identical weights. `shuffle_labels` and `label_after` None take
    the menu layout the policy folder records (`protocol.LABEL_ORDER_FILE`), else shuffled
    labels written first.
    `bf16` runs both players under bfloat16 autocast; None: the device's
    default (`models.precision`). `cache_reflections` puts an in-memory
    `CachedReflector` in front of the reflector (it must decode greedily). `reflector_temperature` above 0
    samples a local reflector's reflections (seeded by `init_seed`; a trainer reseeds it per iteration).
    `reflector_reference` loads the reflector adapter a second time, frozen, as the KL reference of a run that
    trains the reflector (`RLConfig.train_reflector`).
    """
    if cache_reflections and reflector_temperature > 0:
        raise ValueError("a reflection cache needs greedy reflections (reflector_temperature 0)")
    from_adapter = is_adapter_folder(policy)
    recorded = load_label_order(policy) if from_adapter else None
    if shuffle_labels is None:
        shuffle_labels = True if recorded is None else recorded.shuffle_labels
    if label_after is None:
        label_after = False if recorded is None else recorded.label_after
    base = adapter_base_spec(policy) if from_adapter else str(policy)
    reflector_adapter = None
    remote = None
    if reflector is not None and str(reflector).startswith(OPENAI_PREFIX):
        remote = _remote_reflector(
            str(reflector)[len(OPENAI_PREFIX):], reflector_url, reflector_max_new_tokens, reflector_api_key_env
        )
    elif is_served_spec(reflector):
        from reflectrl.models.served_reflector import ServedReflector

        remote = ServedReflector(reflector, max_tokens=reflector_max_new_tokens, api_key_env=reflector_api_key_env)
    elif reflector is not None:
        if is_adapter_folder(reflector):
            reflector_base = adapter_base_spec(reflector)
            if reflector_base != base:
                raise ValueError(
                    f"the reflector adapter was trained on {reflector_base!r} but the policy's base is {base!r}; "
                    "both players must share one base model"
                )
            reflector_adapter = reflector
        elif str(reflector) != base:
            raise ValueError(
                f"--reflector must be an adapter folder on the policy's base ({base!r}) or that base itself, got {reflector!r}"
            )
    players = TwoPlayerModel.load(
        base, reflector=reflector_adapter, policy=policy if from_adapter else None, device=device, dtype=dtype
    )
    bf16 = resolve_bf16(bf16, players.model.get_output_embeddings().weight.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        if not from_adapter:
            players.add_adapter(POLICY, r=lora_r, alpha=lora_alpha)
        label_set = LabelSet.for_tokenizer(players.tokenizer)
        label_policy = players.label_policy(label_set, value_head=value_head, bf16=bf16)
    if value_head and from_adapter and (Path(policy) / VALUE_HEAD_FILE).is_file():
        label_policy.load_value_head(policy)
    if reflector_reference:
        if reflector_adapter is None:
            raise ValueError("a reference reflector (train_reflector) needs the reflector as an SFT adapter folder on the policy's base")
        players.model = load_adapter(players.model, reflector_adapter, REFLECTOR_REFERENCE, trainable=False)
    reference = None
    if kl_reference:
        if from_adapter:
            # The model is already a PeftModel here, so this adds an adapter to the same object.
            players.model = load_adapter(players.model, policy, REFERENCE, trainable=False)
        # Without an SFT adapter the reference name is not loaded, so it reads the base weights.
        reference = LabelPolicy(players.model, players.tokenizer, label_set, adapter=REFERENCE, bf16=bf16)
    timed = cache = None
    if reflector is not None:
        if remote is not None and reflector_temperature > 0:
            raise ValueError("sampled reflections need a local reflector (an adapter folder or the base spec)")
        inner = remote if remote is not None else players.local_reflector(
            max_new_tokens=reflector_max_new_tokens, bf16=bf16, temperature=reflector_temperature, seed=init_seed
        )
        if cache_reflections:
            inner = cache = CachedReflector(inner, identity=reflector_identity(str(reflector), reflector_max_new_tokens))
        timed = TimedReflector(inner)
        agent = ReflectiveAgent(timed, label_policy, shuffle_labels=shuffle_labels, label_after=label_after, seed=init_seed)
    else:
        agent = PlainAgent(label_policy, shuffle_labels=shuffle_labels, label_after=label_after, seed=init_seed)
    return RLPlayers(
        players, label_policy, agent, timed, reference, base, cache,
        reflector_adapter=REFLECTOR if reflector_adapter is not None else None,
        reflector_reference=REFLECTOR_REFERENCE if reflector_reference else None,
    )


def _remote_reflector(model: str, url: str | None, max_tokens: int, api_key_env: str):
    from reflectrl.models import OpenAIChatClient, OpenAIReflector

    url = url or os.environ.get("OPENAI_BASE_URL")
    if not model:
        raise ValueError(f"name the server's model after {OPENAI_PREFIX!r}, e.g. {OPENAI_PREFIX}my-reflector")
    if not url:
        raise ValueError("an openai: reflector needs the server URL up to /v1 (--reflector-url for train, --base-url for eval, "
                         "or $OPENAI_BASE_URL)")
    return OpenAIReflector(OpenAIChatClient(url, model, api_key_env=api_key_env), max_tokens=max_tokens)
