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

The Hugging Face plumbing underneath (loading, adapters, prompt prefixes,
tokens, precision, the OpenAI client) is `reflectrl.models`.
"""

from reflectrl.players.agents import Agent, PlainAgent, ReflectiveAgent, SeededAgent, StepRecord
from reflectrl.players.load import RLPlayers, load_rl_players, reflector_from_spec
from reflectrl.players.local_reflector import LocalReflector
from reflectrl.players.openai_reflector import OpenAIReflector
from reflectrl.players.policy import LabelPolicy, PolicyOutput, ValueHead
from reflectrl.players.reflection_cache import CachedReflector
from reflectrl.players.reflector import Reflector
from reflectrl.players.served_reflector import ServedReflector
from reflectrl.players.timed_reflector import TimedReflector
from reflectrl.players.two_players import POLICY, REFLECTOR, TwoPlayerModel

__all__ = [
    "POLICY",
    "REFLECTOR",
    "Agent",
    "CachedReflector",
    "LabelPolicy",
    "LocalReflector",
    "OpenAIReflector",
    "PlainAgent",
    "PolicyOutput",
    "RLPlayers",
    "ReflectiveAgent",
    "Reflector",
    "SeededAgent",
    "ServedReflector",
    "StepRecord",
    "TimedReflector",
    "TwoPlayerModel",
    "ValueHead",
    "load_rl_players",
    "reflector_from_spec",
]
