"""The two players of Reflect-RL: a reflector that writes a reflection, a policy that picks a label from a menu.

* `ReflectiveAgent`, `PlainAgent` (`players.agents`): turn a batch of states into
  actions with the two players (or the policy alone), keeping a `StepRecord` per step.
* `LabelPolicy` (`players.policy`): the categorical policy over labelled actions (one forward pass).
* Reflectors (`players.reflector`, the `Reflector` contract): `LocalReflector` (a model in
  this process), `OpenAIReflector` (a chat model on an OpenAI-compatible server),
  `ServedReflector` (a reflector on an inference server), and the wrappers
  `CachedReflector` and `TimedReflector`.
* `TwoPlayerModel` (`players.two_players`): both players as two LoRA adapters of one base model.
* `reflector_from_spec`, `load_rl_players` (`players.load`): the players from their specs
  (adapter folder, base spec, ``openai:MODEL``, ``served:URL``).
* `PlayersConfig`, `LoraShape` (`players.players_config`): the settings that shape the players.

The Hugging Face plumbing underneath (loading, adapters, prompt prefixes,
tokens, precision, the OpenAI client) is `reflectrl.models`.

The names below load on first use (PEP 562), so that the CLI and the settings classes read `PlayersConfig` and
`LoraShape` (`players.players_config`) without importing torch.
"""

from reflectrl.lazy_exports import lazy_getattr

_HOMES = {
    **dict.fromkeys(("Agent", "PlainAgent", "ReflectiveAgent", "SeededAgent", "StepRecord"), "reflectrl.players.agents"),
    **dict.fromkeys(("RLPlayers", "load_rl_players", "reflector_from_spec"), "reflectrl.players.load"),
    "LocalReflector": "reflectrl.players.local_reflector",
    "OpenAIReflector": "reflectrl.players.openai_reflector",
    **dict.fromkeys(("LabelPolicy", "PolicyOutput", "ValueHead"), "reflectrl.players.policy"),
    "CachedReflector": "reflectrl.players.reflection_cache",
    "Reflector": "reflectrl.players.reflector",
    "ServedReflector": "reflectrl.players.served_reflector",
    "TimedReflector": "reflectrl.players.timed_reflector",
    **dict.fromkeys(("POLICY", "REFLECTOR", "TwoPlayerModel"), "reflectrl.players.two_players"),
    **dict.fromkeys(("LoraShape", "PlayersConfig"), "reflectrl.players.players_config"),
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, _HOMES)
