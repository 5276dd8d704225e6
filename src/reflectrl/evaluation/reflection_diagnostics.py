"""Where a reflective agent loses: the reflector's advice, the policy's obedience, and what each costs.

During an evaluation a `StepJudge` looks at every decision before the environment
steps (it reads the live environment, as the oracle does; nothing it computes reaches
the agent) and records:

* ``oracle``: the oracle's menu entry in that state;
* ``recommended``: the menu entry the reflection recommends (`recommended_action`),
  None when it names none;
* ``recommended_ok`` / ``chosen_ok``: whether the recommended and the chosen entries
  are optimal there, judged by the environment's explainer (`Explainer.assess`), so a
  move that ties with the oracle's counts as right (Taxi often has two shortest routes).

`reflection_diagnostics(episodes)` turns those records into the numbers a report shows:
the reflector's accuracy (its recommendation optimal), how often it names a menu entry at
all, the policy's follow rate (it plays the recommended entry), step accuracy when the
reflection is right and when it is wrong, and success of the episodes whose reflections
were all right against those with at least one wrong. The ceiling of a trained policy is
the same policy reading the teacher's own reflections (`reflectrl.teachers.live`): with
a perfect reflector, how far would it get?
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from reflectrl.teachers.base import NEXT_CUE
from reflectrl.teachers.explainers import explainer_for, oracle_menu_choice


def recommended_action(reflection: str | None, actions: Sequence[str]) -> str | None:
    """The menu entry a reflection recommends, or None.

    The teacher styles end their advice with ``Next: <action>.`` (`NEXT_CUE`): the entry that
    opens the text after the last cue is the recommendation. A reflection without the cue
    (the ``full`` style, a model's own words) recommends the entry it mentions last. The
    longest entry wins where one entry is the start of another ("go to shelf 1" in
    "go to shelf 10").
    """
    if not reflection:
        return None
    by_length = sorted(set(actions), key=len, reverse=True)
    cue = reflection.rfind(NEXT_CUE)
    if cue >= 0:
        advice = reflection[cue + len(NEXT_CUE):].lstrip()
        for action in by_length:
            if advice.startswith(action):
                return action
        return None
    found = [(reflection.rfind(action), len(action), action) for action in by_length if action in reflection]
    return max(found)[2] if found else None


class StepJudge:
    """Judges each decision of an evaluation against the oracle (see the module docstring)."""

    def __init__(self, env_name: str):
        self.explainer = explainer_for(env_name)

    def __call__(self, env, reflection: str | None, played: str | None) -> dict[str, Any]:
        try:
            oracle = oracle_menu_choice(env)
        except RuntimeError:  # an oracle that cannot plan from here (ALFWorld's planner) judges nothing
            return {"oracle": None}
        menu = env.actions
        recommended = recommended_action(reflection, menu) if reflection is not None else None
        record: dict[str, Any] = {"oracle": oracle, "chosen_ok": self._optimal(env, played, oracle)}
        if reflection is not None:
            record["recommended"] = recommended
            record["recommended_ok"] = self._optimal(env, recommended, oracle)
        return record

    def _optimal(self, env, action: str | None, oracle: str) -> bool:
        if action is None:
            return False
        if action == oracle:
            return True
        return not self.explainer.assess(env, action).mistake


def reflection_diagnostics(episodes: Iterable[Any]) -> dict[str, Any] | None:
    """The reflector's accuracy, the follow rate and their effect over judged steps (None: nothing judged).

    `episodes` are `Episode` objects or their `episode_record` dicts.
    """
    steps = right = named = followed = 0
    ok_when_right = n_right = ok_when_wrong = n_wrong = 0
    episodes_all_right = won_all_right = episodes_some_wrong = won_some_wrong = 0
    for episode in episodes:
        judged = [_judged(step) for step in _steps(episode)]
        judged = [j for j in judged if j is not None and "recommended" in j and j.get("oracle") is not None]
        if not judged:
            continue
        for step in judged:
            steps += 1
            named += step["recommended"] is not None
            right += bool(step["recommended_ok"])
            followed += step["recommended"] is not None and step.get("played") == step["recommended"]
            if step["recommended_ok"]:
                n_right += 1
                ok_when_right += bool(step["chosen_ok"])
            else:
                n_wrong += 1
                ok_when_wrong += bool(step["chosen_ok"])
        success = bool(_get(episode, "success"))
        if all(step["recommended_ok"] for step in judged):
            episodes_all_right += 1
            won_all_right += success
        else:
            episodes_some_wrong += 1
            won_some_wrong += success
    if not steps:
        return None
    return {
        "steps": steps,
        "reflector_accuracy": right / steps,
        "names_an_action": named / steps,
        "follow_rate": followed / named if named else None,
        "step_accuracy_when_right": ok_when_right / n_right if n_right else None,
        "step_accuracy_when_wrong": ok_when_wrong / n_wrong if n_wrong else None,
        "steps_right": n_right,
        "steps_wrong": n_wrong,
        "episodes_all_right": episodes_all_right,
        "success_all_right": won_all_right / episodes_all_right if episodes_all_right else None,
        "episodes_some_wrong": episodes_some_wrong,
        "success_some_wrong": won_some_wrong / episodes_some_wrong if episodes_some_wrong else None,
    }


def _get(episode: Any, key: str) -> Any:
    return episode[key] if isinstance(episode, dict) else getattr(episode, key)


def _steps(episode: Any) -> list[Any]:
    return episode["trajectory"] if isinstance(episode, dict) else episode.steps


def _judged(step: Any) -> dict[str, Any] | None:
    if isinstance(step, dict):
        judged, played = step.get("judged"), step.get("action")
    else:
        judged, played = step.judged, step.action_text
    return None if judged is None else {**judged, "played": played}


DIAGNOSTIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reflector_accuracy", "reflection right"),
    ("follow_rate", "policy follows it"),
    ("step_accuracy_when_right", "step right when reflection right"),
    ("step_accuracy_when_wrong", "step right when reflection wrong"),
    ("success_all_right", "success, every reflection right"),
    ("success_some_wrong", "success, some reflection wrong"),
)
"""The diagnostics a report shows, as (key, column title)."""


def diagnostics_table(rows: Sequence[tuple[str, dict[str, Any] | None]]) -> str:
    """A markdown table of `reflection_diagnostics` results, one row per setting (rows without any are left out)."""
    shown = [(name, d) for name, d in rows if d]
    if not shown:
        return ""
    header = "| setting | judged steps | " + " | ".join(title for _, title in DIAGNOSTIC_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(DIAGNOSTIC_COLUMNS) + 2)]
    for name, d in shown:
        cells = [_pct(d.get(key)) for key, _ in DIAGNOSTIC_COLUMNS]
        cells[0] += f" ({d['steps_right']}/{d['steps']})"
        cells[4] += f" ({d['episodes_all_right']} ep.)"
        cells[5] += f" ({d['episodes_some_wrong']} ep.)"
        lines.append(f"| {name} | {d['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
