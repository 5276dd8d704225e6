"""Players from their specs: the one place that turns a reflector or policy spec into a player.

`reflector_from_spec` makes the reflector a spec names:

* an adapter folder (the SFT reflector) or a base model's spec (the base
  weights reflect, zero-shot): a `LocalReflector` on the reflector adapter of
  a `TwoPlayerModel`, the one given or one loaded for the spec;
* ``openai:MODEL``: a chat model behind an OpenAI-compatible server
  (`OpenAIReflector`, at `url` or ``$OPENAI_BASE_URL``);
* ``served:URL[#MODEL]``: a reflector behind an inference server, asked with
  raw completions (`ServedReflector`, see `players.served_reflector`);

with a `CachedReflector` in front when asked. RL, evaluation (which plays
the same agents) and ``reflectrl reflect-data`` all build reflectors here.

`load_rl_players` loads the two players for an RL run: trainable policy,
frozen reflector, optional KL reference. Both players live on one base model
(`TwoPlayerModel`):

* `policy` is either a PEFT adapter folder (an SFT checkpoint, trained on
  from there) or a model spec (``tiny-random``, ``smollm2-135m``, a folder),
  which gets a fresh LoRA adapter (the identity at the start).
* `reflector` is any reflector spec above, a local one on the policy's base
  (an adapter folder trained on it, or the base spec itself; an ``openai:``
  server is at `reflector_url`), or None for the no-reflection baseline.
* With a KL penalty, the starting policy is kept frozen as the reference: the
  SFT adapter loaded a second time, or the base weights for a fresh adapter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from reflectrl.models.adapters import load_adapter
from reflectrl.models.loading import adapter_base_spec, is_adapter_folder
from reflectrl.models.openai_backend import OpenAIChatClient
from reflectrl.models.precision import resolve_bf16
from reflectrl.models.served_spec import is_served_spec
from reflectrl.players.agents import PlainAgent, ReflectiveAgent
from reflectrl.players.openai_reflector import OpenAIReflector
from reflectrl.players.players_config import PlayersConfig
from reflectrl.players.policy import VALUE_HEAD_FILE, LabelPolicy
from reflectrl.players.reflection_cache import CachedReflector, reflector_identity
from reflectrl.players.served_reflector import ServedReflector
from reflectrl.players.timed_reflector import TimedReflector
from reflectrl.players.two_players import POLICY, REFERENCE, REFLECTOR, REFLECTOR_REFERENCE, TwoPlayerModel
from reflectrl.protocol import LabelSet, load_label_order

OPENAI_PREFIX = "openai:"
"""Reflector specs starting with this name a model on an OpenAI-compatible server."""


def is_remote_spec(spec) -> bool:
    """Whether a reflector spec names a server (``openai:MODEL``, ``served:URL``) rather than weights to load here."""
    return spec is not None and (str(spec).startswith(OPENAI_PREFIX) or is_served_spec(spec))


def reflector_from_spec(
    spec: str | os.PathLike,
    *,
    players: TwoPlayerModel | None = None,
    reflection_tokens: int = PlayersConfig.reflection_tokens,
    url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int | None = None,
    bf16: bool | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    cache: bool = False,
    cache_file: str | os.PathLike | None = None,
):
    """The reflector `spec` names (see the module docstring).

    Args:
        spec: an adapter folder, a base model spec, ``openai:MODEL`` or ``served:URL[#MODEL]``.
        players: for a local spec, the model carrying the reflector adapter; None loads one for `spec`.
        reflection_tokens: longest reflection in tokens.
        url: an ``openai:`` server's root up to /v1 (None: ``$OPENAI_BASE_URL``).
        api_key_env: environment variable holding a server's API key.
        concurrency: most requests to a server in flight at once (None: its client's default).
        bf16: a local reflector under bfloat16 autocast; None: the device's default (`models.precision`).
        temperature: above 0 a local reflector samples (seeded by `seed`); a server's reflector is greedy.
        seed: base seed of a sampling local reflector.
        cache: put an in-memory `CachedReflector` in front (the reflector must decode greedily).
        cache_file: the same, kept in this JSON-lines file across processes.
    """
    if is_remote_spec(spec):
        reflector = _remote_reflector(str(spec), reflection_tokens, url, api_key_env, concurrency, temperature)
    else:
        reflector = _local_reflector(spec, players, reflection_tokens, bf16, temperature, seed)
    if not (cache or cache_file):
        return reflector
    return CachedReflector(reflector, cache_file or None, identity=reflector_identity(str(spec), reflection_tokens))


def _remote_reflector(spec: str, reflection_tokens: int, url: str | None, api_key_env: str, concurrency: int | None, temperature: float):
    if temperature > 0:
        raise ValueError("sampled reflections need a local reflector (an adapter folder or the base spec)")
    requests = {} if concurrency is None else {"concurrency": concurrency}
    if is_served_spec(spec):
        return ServedReflector(spec, reflection_tokens=reflection_tokens, api_key_env=api_key_env, **requests)
    model = spec[len(OPENAI_PREFIX):]
    url = url or os.environ.get("OPENAI_BASE_URL")
    if not model:
        raise ValueError(f"name the server's model after {OPENAI_PREFIX!r}, e.g. {OPENAI_PREFIX}my-reflector")
    if not url:
        raise ValueError("an openai: reflector needs the server URL up to /v1 (--reflector-url for train, --base-url for eval, "
                         "or $OPENAI_BASE_URL)")
    return OpenAIReflector(OpenAIChatClient(url, model, api_key_env=api_key_env, **requests), reflection_tokens=reflection_tokens)


def _local_reflector(spec, players: TwoPlayerModel | None, reflection_tokens: int, bf16: bool | None, temperature: float, seed: int):
    if players is None:
        from_adapter = is_adapter_folder(spec)
        players = TwoPlayerModel.load(adapter_base_spec(spec) if from_adapter else str(spec), reflector=spec if from_adapter else None)
    device = players.model.get_output_embeddings().weight.device
    return players.local_reflector(reflection_tokens=reflection_tokens, bf16=resolve_bf16(bf16, device), temperature=temperature, seed=seed)


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
    """The cache in front of the reflector, when `cache_reflections` or `reflection_cache_file` asked for one."""
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
    lora_r: int = PlayersConfig.lora_r,
    lora_alpha: int = PlayersConfig.lora_alpha,
    reflection_tokens: int = PlayersConfig.reflection_tokens,
    shuffle_labels: bool | None = PlayersConfig.shuffle_labels,
    label_after: bool | None = PlayersConfig.label_after,
    init_seed: int = 0,
    device: str | None = None,
    dtype: str | None = None,
    reflector_url: str | None = None,
    reflector_api_key_env: str = "OPENAI_API_KEY",
    bf16: bool | None = None,
    cache_reflections: bool = False,
    reflection_cache_file: str | os.PathLike | None = None,
    reflector_temperature: float = 0.0,
    reflector_reference: bool = False,
) -> RLPlayers:
    """Load the base model once, put the players' adapters on it and build the agent (see the module docstring).

    `lora_r` to `label_after` are the fields of `PlayersConfig` (``**asdict(players)`` passes one).

    `init_seed` seeds the fresh LoRA adapter and value head, so two runs with
    the same seed start from identical weights. `shuffle_labels` and `label_after` None take
    the menu layout the policy folder records (`protocol.LABEL_ORDER_FILE`), else shuffled
    labels written first.
    `bf16` runs both players under bfloat16 autocast; None: the device's
    default (`models.precision`). `cache_reflections` puts an in-memory
    `CachedReflector` in front of the reflector (it must decode greedily); `reflection_cache_file` one kept in
    that JSON-lines file (evaluation's). `reflector_temperature` above 0
    samples a local reflector's reflections (seeded by `init_seed`; a trainer reseeds it per iteration).
    `reflector_reference` loads the reflector adapter a second time, frozen, as the KL reference of a run that
    trains the reflector (`RLConfig.train_reflector`).
    """
    if (cache_reflections or reflection_cache_file) and reflector_temperature > 0:
        raise ValueError("a reflection cache needs greedy reflections (reflector_temperature 0)")
    from_adapter = is_adapter_folder(policy)
    shuffle_labels, label_after = _menu_layout(policy if from_adapter else None, shuffle_labels, label_after)
    base = adapter_base_spec(policy) if from_adapter else str(policy)
    make_reflector = partial(
        reflector_from_spec, reflector, reflection_tokens=reflection_tokens, url=reflector_url,
        api_key_env=reflector_api_key_env, temperature=reflector_temperature, seed=init_seed,
        cache=cache_reflections, cache_file=reflection_cache_file,
    )
    # A server's reflector before the model loads: a server that is not there fails the run at once.
    remote = make_reflector() if is_remote_spec(reflector) else None
    reflector_adapter = _shared_base_adapter(reflector, base) if reflector is not None and remote is None else None
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
    reference = _kl_reference(players, policy if from_adapter else None, label_set, bf16) if kl_reference else None
    timed = cache = None
    if reflector is not None:
        inner = remote if remote is not None else make_reflector(players=players, bf16=bf16)
        cache = inner if isinstance(inner, CachedReflector) else None
        # The timer outside the cache, so that time spent on cache misses still counts as 'reflect'.
        timed = TimedReflector(inner)
        agent = ReflectiveAgent(timed, label_policy, shuffle_labels=shuffle_labels, label_after=label_after, seed=init_seed)
    else:
        agent = PlainAgent(label_policy, shuffle_labels=shuffle_labels, label_after=label_after, seed=init_seed)
    return RLPlayers(
        players, label_policy, agent, timed, reference, base, cache,
        reflector_adapter=REFLECTOR if reflector_adapter is not None else None,
        reflector_reference=REFLECTOR_REFERENCE if reflector_reference else None,
    )


def _menu_layout(policy_folder: str | None, shuffle_labels: bool | None, label_after: bool | None) -> tuple[bool, bool]:
    """The menu layout asked for, else the one the policy folder records, else shuffled labels written first."""
    recorded = load_label_order(policy_folder) if policy_folder is not None else None
    if shuffle_labels is None:
        shuffle_labels = True if recorded is None else recorded.shuffle_labels
    if label_after is None:
        label_after = False if recorded is None else recorded.label_after
    return shuffle_labels, label_after


def _shared_base_adapter(reflector: str, base: str) -> str | None:
    """The reflector's adapter folder (None for the base spec itself); refuses a reflector on another base."""
    if is_adapter_folder(reflector):
        reflector_base = adapter_base_spec(reflector)
        if reflector_base != base:
            raise ValueError(
                f"the reflector adapter was trained on {reflector_base!r} but the policy's base is {base!r}; "
                "both players must share one base model"
            )
        return reflector
    if str(reflector) != base:
        raise ValueError(
            f"--reflector must be an adapter folder on the policy's base ({base!r}) or that base itself, got {reflector!r}"
        )
    return None


def _kl_reference(players: TwoPlayerModel, policy_folder: str | None, label_set: LabelSet, bf16: bool) -> LabelPolicy:
    """The frozen starting policy: the SFT adapter loaded a second time, or the base weights for a fresh adapter."""
    if policy_folder is not None:
        # The model is already a PeftModel here, so this adds an adapter to the same object.
        players.model = load_adapter(players.model, policy_folder, REFERENCE, trainable=False)
    # Without an SFT adapter the reference name is not loaded, so it reads the base weights.
    return LabelPolicy(players.model, players.tokenizer, label_set, adapter=REFERENCE, bf16=bf16)
