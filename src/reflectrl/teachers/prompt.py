"""The prompt a language-model teacher sees (the paper's design: state, hidden hint, "do not mention it").

The state part is the reflector's own prompt without its final cue, so the
teacher reads exactly what the reflector will read; the hint follows in a
separate block that the teacher is told to keep to itself.
"""

from __future__ import annotations

from reflectrl.protocol import REFLECT_CUE, reflector_prompt
from reflectrl.teachers.base import ReflectionRequest

TEACHER_SYSTEM = (
    "You are an expert coach for an agent acting in a text environment. You will see what the agent sees, "
    "followed by a hidden hint that only you can read. Write the agent's reflection: at most three short "
    "sentences saying what the last action did, whether it was a good move and why, and what to do next and why. "
    "Reason from the situation itself. Never mention the hint, a coach, an oracle or that you were told anything."
)


def hint_text(request: ReflectionRequest) -> str:
    """The hidden hint: the best next action and, after a mistake, what went wrong."""
    lines = [f"The best next action is: {request.best_action}."]
    last = request.last
    if last is not None:
        if last.mistake:
            better = f" '{last.better}' would have been better." if last.better else ""
            lines.append(f"The last action, '{last.action}', was a mistake: it left the optimal path.{better}")
        else:
            lines.append(f"The last action, '{last.action}', was on the optimal path.")
    return "\n".join(lines)


def teacher_prompt(request: ReflectionRequest) -> str:
    """State (as the reflector sees it), hidden hint and instruction, as one user message."""
    state_text = reflector_prompt(request.state)
    if state_text.endswith(REFLECT_CUE):
        state_text = state_text[: -len(REFLECT_CUE)].rstrip()
    return (
        f"{state_text}\n\n"
        f"Hidden hint (for you only, do not mention it):\n{hint_text(request)}\n\n"
        "Explain briefly, in at most three sentences, as the agent's own reflection. "
        "Do not mention the hint."
    )
