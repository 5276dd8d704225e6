"""The oracle's explainer for AutoExplore: reflections from the task's target files and evidence.

Privileged facts are the task's target paths and the evidence text the
question was written from (never shown to the agent). The reflection judges
the last command, and argues for the next one from what the question asks
and what the folder holds, quoting the evidence only once the answer file
has been read. Mistakes are judged generically (the command differs from the
oracle's shortest-path command).

The concise style (teacher ``oracle:concise``) names the next command first,
then the one fact behind it (for ``id``: what the file just read says), then
the verdict on the last command (for a read of another file: that it does
not answer).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from reflectrl.envs.base import PAGE_ACTION_PREFIX, TextEnv
from reflectrl.teachers.base import ReflectionRequest
from reflectrl.teachers.explainers import Explainer, generic_assess, pick

KIND_WORDS = {"code": "source code", "text": "documentation", "data": "a data file"}


def autoexplore_facts(env: TextEnv) -> dict[str, Any]:
    task = env.task
    evidence = " ".join(task.evidence.split())
    return {
        "cwd": env._info_extra().get("cwd", "/"),  # the env reports its folder through this hook
        "targets": list(task.targets),
        "kind": task.kind,
        "evidence": evidence if len(evidence) <= 90 else evidence[:87] + "...",
        "quoted": next(iter(re.findall(r'"([^"]+)"', task.question)), ""),
    }


def _subject(facts: dict[str, Any]) -> str:
    return KIND_WORDS.get(facts["kind"], "a file")


def _last(request: ReflectionRequest, rng: np.random.Generator) -> str | None:
    last, facts = request.last, request.facts
    if last is None:
        return None
    verb, _, name = last.action.partition(" ")
    if last.mistake:
        text = {
            "cd": pick(rng, (f"Entering {name} was a detour: nothing in there relates to the question.", f"Going into {name} did not help; that folder is unrelated to what is asked.")),
            "cat": pick(rng, (f"Reading {name} did not help: it is unrelated to the question.", f"{name} turned out to be the wrong file to read.")),
        }.get(verb, pick(rng, (f"'{last.action}' led away from the answer.", f"'{last.action}' was not a useful step.")))
        if name == ".." and verb == "cd":
            text = pick(rng, ("Going up left the folder where the answer lies.", "Leaving that folder was a mistake; the answer was below it."))
        if last.better:
            text += pick(rng, (f" '{last.better}' would have been better.", f" The better step was '{last.better}'."))
        return text
    if verb == "cat":
        return pick(rng, (f"The file just read mentions \"{facts['evidence']}\", which is what the question is about.", f"{name} says \"{facts['evidence']}\": this is the file the question means."))
    if verb == "cd" and name != "..":
        return pick(rng, (f"Entering {name} was a good move.", f"Going into {name} brought me closer to the answer."))
    if last.action.startswith(PAGE_ACTION_PREFIX):
        return "The listing continued on the next page."
    return pick(rng, ("That step made progress.", "The last step went well."))


def _next(request: ReflectionRequest, rng: np.random.Generator) -> str:
    best, facts = request.best_action, request.facts
    verb, _, name = best.partition(" ")
    subject = _subject(facts)
    if best.startswith(PAGE_ACTION_PREFIX):
        return pick(rng, ("Nothing on this page of the listing fits; show more actions.", "The right entry is not listed on this page, so show more actions."))
    if verb == "cd" and name == "..":
        return pick(rng, (f"Nothing in {facts['cwd']} fits the question, so go back up with cd ...", "This folder does not hold the answer; going up is the way (cd ..)."))
    if verb == "cd":
        return pick(rng, (f"The question asks about {subject}, and {name} is where that would live, so cd {name}.", f"{name} looks like the right folder for this question: cd {name}.", f"Next, enter {name}; it fits the question best."))
    if verb == "cat":
        return pick(rng, (f"{name} looks like the file that would hold this; read it with cat {name}.", f"Reading {name} is the next step, since its name fits the question.", f"Of the files here, {name} matches the question best: cat {name}."))
    if verb == "id":
        return pick(rng, (f"{name} answers the question, so identify it: id {name}.", f"This is the answer file; finish with id {name}."))
    return f"Next: {best}."


def autoexplore_explain(request: ReflectionRequest, rng: np.random.Generator) -> str:
    return " ".join(p for p in (_last(request, rng), _next(request, rng)) if p)


def _concise_reason(request: ReflectionRequest) -> str:
    """The one fact behind the next command (one wording per kind of command)."""
    best, facts = request.best_action, request.facts
    verb, _, name = best.partition(" ")
    if best.startswith(PAGE_ACTION_PREFIX):
        return "The right entry is on another page."
    if verb == "cd" and name == "..":
        return f"Nothing in {facts['cwd']} fits the question."
    if verb == "cd":
        return f"The question is about {_subject(facts)}; {name} is where it would be."
    if verb == "cat":
        return f"{name} fits the question best."
    # Quote what the file just read says when the agent can see it too, so that "id" is tied to visible text (a
    # read that does not show it is followed by another read, not by "id"); never quote what is not shown. A data
    # question's evidence is a normalised record ("closing_time = 18:30"), never verbatim in the file: the phrase the
    # question quotes is ("closing_time").
    if _shown(facts["evidence"], request.state.observation):
        return f"It says \"{facts['evidence']}\"."
    if _shown(facts.get("quoted", ""), request.state.observation):
        return f"It mentions \"{facts['quoted']}\"."
    return f"{name} holds the answer."


def _shown(evidence: str, observation: str) -> bool:
    text = " ".join(observation.split())
    return bool(evidence) and not evidence.endswith("...") and evidence in text


def autoexplore_explain_concise(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """Next command first, then the fact behind it, then the verdict on the last command; one template.

    e.g. "Next: cd docs. The question is about documentation; docs is where it would be. Last step (cd src) was a mistake."
    """
    return " ".join(p for p in (f"Next: {request.best_action}.", _concise_reason(request), _last_verdict(request)) if p)


def _last_verdict(request: ReflectionRequest) -> str | None:
    last = request.last
    if last is None:
        return None
    if last.mistake and last.action.startswith("cat "):
        return f"{last.action.removeprefix('cat ')} does not answer it."
    return f"Last step ({last.action}) was {'a mistake' if last.mistake else 'good'}."


def autoexplore_explain_reasoned(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """The verdict on the last command (what it showed), the fact behind the next command, then the command.

    e.g. "notes.md does not answer it. The question is about documentation; docs is where it would be. Next: cd docs."
    The paper's order: the recommendation comes last, after what the reflector wrote about the state.
    """
    return " ".join(p for p in (_last_verdict(request), _concise_reason(request), f"Next: {request.best_action}.") if p)


EXPLAINER = Explainer(
    facts=autoexplore_facts, assess=generic_assess, explain=autoexplore_explain, concise=autoexplore_explain_concise,
    reasoned=autoexplore_explain_reasoned,
)
