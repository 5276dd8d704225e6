"""Reflection requests along oracle episodes, with the real explainer's facts and verdicts (shared by teacher tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from reflectrl.envs.base import TextEnv
from reflectrl.protocol import State
from reflectrl.teachers import ReflectionRequest, explainer_for


def requests_along_episodes(
    env_name: str,
    env: TextEnv,
    resets: Iterable[dict[str, Any]],
    detour_prob: float = 0.0,
    may_detour: Callable[[str], bool] = lambda action: True,
    seed: int = 0,
) -> list[ReflectionRequest]:
    """One request per state of each episode (`env.reset(**kwargs)` per item of `resets`); the oracle's menu
    entry is taken, except with `detour_prob` a random menu entry that `may_detour` allows."""
    explainer = explainer_for(env_name)
    rng = np.random.default_rng(seed)
    requests = []
    for kwargs in resets:
        _, info = env.reset(**kwargs)
        last = None
        while True:
            best = info["actions"][env.oracle_index()]
            requests.append(ReflectionRequest(env_name, State.from_info(info), best, last, explainer.facts(env)))
            allowed = [a for a in info["actions"] if may_detour(a)]
            action = allowed[int(rng.integers(len(allowed)))] if allowed and rng.random() < detour_prob else best
            last = explainer.assess(env, action)
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
    return requests
