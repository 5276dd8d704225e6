"""Build any agent the evaluation harness can play, from a short description (`AgentSpec`).

Kinds:

* ``oracle`` / ``random``: the scripted reference players (no model);
* ``prompted``: a causal LM reading the enumerated prompt and answering in
  text, either local (`model` is a spec for `load_model`) or behind an
  OpenAI-compatible server (`base_url` plus the server's `model` name);
* ``plain``: a label-head policy without reflection (`policy` is an SFT/RL
  adapter folder, or a base model spec, which then decides zero-shot);
* ``reflect``: Reflect-RL, the policy plus its frozen `reflector` (an adapter
  folder on the policy's base, the base spec itself, ``openai:MODEL`` with
  `base_url`, ``served:URL[#MODEL]``, a reflector on an inference server, or
  ``teacher:SPEC``, the teacher itself reading the live environment: the
  policy's ceiling, see `reflectrl.teachers.live`).

Label-head agents shuffle labels as in training; the harness reseeds the
shuffle per evaluation, so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reflectrl.players.players_config import PlayersConfig

AGENT_KINDS = ("oracle", "random", "prompted", "plain", "reflect")


@dataclass(frozen=True)
class AgentSpec:
    """What to evaluate."""

    kind: str
    """One of `AGENT_KINDS`."""
    model: str | None = None
    """prompted: local model spec, or the model name on the server at `base_url`."""
    base_url: str | None = None
    """OpenAI-compatible server (up to /v1) for a prompted model or an ``openai:`` reflector
    (an ``openai:`` reflector falls back to ``$OPENAI_BASE_URL``)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the server's API key (unset: no key sent)."""
    policy: str | None = None
    """plain/reflect: policy adapter folder (SFT or RL output) or a base model spec."""
    reflector: str | None = None
    """reflect: reflector adapter folder, the base spec, ``openai:MODEL`` or ``served:URL[#MODEL]``."""
    reflection_tokens: int = PlayersConfig.reflection_tokens
    """reflect: maximum reflection length in tokens."""
    answer_tokens: int = 4
    """prompted: maximum answer length in tokens."""
    seed: int = 0
    """Seed of label shuffling and of the random player."""
    device: str | None = None
    """cpu or cuda (default: cuda when available)."""
    bf16: bool | None = None
    """plain/reflect: bfloat16 autocast; None: where the hardware has native bfloat16. prompted (a local model): only
    when True (None keeps it in the dtype it loads in: bfloat16 on CUDA, float32 on a CPU)."""
    reflection_cache: str | None = None
    """reflect: JSON-lines file caching the reflector's answers across evaluations
    (see `reflectrl.players.reflection_cache`); None: no cache."""
    env: str | None = None
    """Environment short name; a ``teacher:SPEC`` reflector needs it (its explainer)."""
    teacher_seed: int = 0
    """reflect with ``teacher:SPEC``: the teacher's seed (the data's), so its wording matches the training rows."""

    def check(self) -> None:
        """Raise ValueError for a spec that cannot be loaded, saying what is missing."""
        if self.kind not in AGENT_KINDS:
            raise ValueError(f"unknown agent {self.kind!r}; choose from {', '.join(AGENT_KINDS)}")
        if self.kind == "prompted" and not self.model:
            raise ValueError("--agent prompted needs --model (a local model spec, or the server's model name with --base-url)")
        if self.kind in ("plain", "reflect") and not self.policy:
            raise ValueError(f"--agent {self.kind} needs --policy (an adapter folder or a base model spec)")
        if self.kind == "reflect" and not self.reflector:
            raise ValueError("--agent reflect needs --reflector (an adapter folder, the base spec, openai:MODEL or served:URL#MODEL)")
        if self.kind == "plain" and self.reflector:
            raise ValueError("--agent plain plays without a reflector; use --agent reflect to add one")
        if self.reflection_tokens < 1 or self.answer_tokens < 1:
            raise ValueError("reflection_tokens and answer_tokens must be >= 1")

    def describe(self) -> str:
        """A one-line description for reports."""
        if self.kind in ("oracle", "random"):
            return self.kind
        if self.kind == "prompted":
            where = f" at {self.base_url}" if self.base_url else ""
            return f"prompted {self.model}{where}"
        if self.kind == "plain":
            return f"plain policy {self.policy}"
        return f"Reflect-RL policy {self.policy} with reflector {self.reflector}"


@dataclass
class LoadedAgent:
    """An agent ready for `LocalRolloutEngine`, and what the environment must respect for it."""

    agent: Any
    max_actions: int | None
    """Largest menu the agent can label (environments page longer menus); None: no limit."""
    description: str
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release HTTP clients and the like."""
        for close in self.closers:
            close()
        self.closers.clear()


def load_agent(spec: AgentSpec) -> LoadedAgent:
    """Build the agent `spec` describes (see the module docstring)."""
    spec.check()
    if spec.kind in ("oracle", "random"):
        from reflectrl.evaluation.scripted_agents import OracleAgent, RandomAgent

        agent = OracleAgent(spec.seed) if spec.kind == "oracle" else RandomAgent(spec.seed)
        return LoadedAgent(agent, None, spec.describe())
    if spec.kind == "prompted":
        return _prompted(spec)
    from reflectrl.players.load import load_rl_players
    from reflectrl.teachers.live import is_teacher_spec

    reflector = spec.reflector if spec.kind == "reflect" else None
    if is_teacher_spec(reflector):
        return _with_live_teacher(spec)
    players = load_rl_players(
        spec.policy,
        reflector,
        reflection_tokens=spec.reflection_tokens,
        shuffle_labels=None,  # as the policy checkpoint was trained (label_after too, by default)
        init_seed=spec.seed,
        device=spec.device,
        reflector_url=spec.base_url,
        reflector_api_key_env=spec.api_key_env,
        bf16=spec.bf16,
        reflection_cache_file=spec.reflection_cache,
    )
    closers = []
    client = getattr(getattr(players.reflector, "inner", None), "client", None)
    if client is not None and hasattr(client, "close"):
        closers.append(client.close)
    return LoadedAgent(players.agent, len(players.label_set), spec.describe(), closers)


def _with_live_teacher(spec: AgentSpec) -> LoadedAgent:
    """The policy reading the teacher's reflections (the ceiling row; see `reflectrl.teachers.live`)."""
    from reflectrl.players.agents import ReflectiveAgent
    from reflectrl.players.load import load_rl_players
    from reflectrl.teachers.live import LiveTeacherReflector

    if not spec.env:
        raise ValueError("a teacher: reflector reads the environment: name it (AgentSpec.env)")
    players = load_rl_players(spec.policy, None, shuffle_labels=None, init_seed=spec.seed, device=spec.device, bf16=spec.bf16)
    teacher = LiveTeacherReflector(str(spec.reflector), spec.env, seed=spec.teacher_seed)
    plain = players.agent
    agent = ReflectiveAgent(teacher, players.policy, shuffle_labels=plain.shuffle_labels, label_after=plain.label_after, seed=spec.seed)
    return LoadedAgent(agent, len(players.label_set), spec.describe(), [teacher.close])


def _prompted(spec: AgentSpec) -> LoadedAgent:
    from reflectrl.evaluation.prompted_agent import PromptedAgent

    if spec.base_url:
        from reflectrl.models import OpenAIChatClient

        client = OpenAIChatClient(spec.base_url, spec.model, api_key_env=spec.api_key_env)
        agent = PromptedAgent(client, answer_tokens=spec.answer_tokens, seed=spec.seed)
        return LoadedAgent(agent, len(agent.label_set), spec.describe(), [client.close])
    from reflectrl.models import load_model

    model, tokenizer = load_model(spec.model, device=spec.device)
    agent = PromptedAgent(model, tokenizer, answer_tokens=spec.answer_tokens, seed=spec.seed, bf16=bool(spec.bf16))
    return LoadedAgent(agent, len(agent.label_set), spec.describe())
