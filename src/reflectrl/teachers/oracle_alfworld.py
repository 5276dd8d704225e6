"""The oracle's explainer for ALFWorld: reflections from the game's true state and the planner's plan.

Privileged facts come from the engine's PDDL facts and the task folder's name
(the real data set and generated games both name it
``<task type>-<Object>-<movable>-<Receptacle>-<scene>``): the goal object and
target receptacle types, where every goal object is (also inside closed
receptacles the agent has not opened), what the agent holds and where it
stands, which receptacles are closed, the planner's next command and how many
steps its plan has left. None of this is shown to the agent.

`alfworld_assess` judges an action with a small cost model of pick-and-place
(go, open, take, move; every other command changes nothing that matters):
an action is on the plan when one step plus the cost from the state it leads
to equals the cost from here. The model is used only where it agrees with the
planner's plan length; elsewhere (other task types, states it does not model)
an action is on the plan when it is the planner's command or a ``go to`` to
the same spot, since two receptacles at one location are reached alike.

Reflections: ``full`` judges the last action and argues for the next command
with several wordings; ``concise`` names the next menu entry first, then the
one fact behind it, then the verdict on the last action, in one template;
``grounded`` puts the fact first and the entry after it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reflectrl.envs.alfworld.tasks import goal_types, instance_type
from reflectrl.envs.alfworld.world import World
from reflectrl.envs.base import PAGE_ACTION_PREFIX, TextEnv
from reflectrl.teachers.base import Assessment, ReflectionRequest
from reflectrl.teachers.explainers import Explainer, oracle_menu_choice, pick

MODELLED_TASKS = ("pick_and_place_simple",)
"""Task types whose optimal-step cost `_cost` computes exactly (checked against the planner at every use)."""


def _cost(world: World, obj_type: str, recep_type: str) -> int | None:
    """Fewest steps to put a goal object into a target receptacle (None: not possible in this model)."""
    targets = [r for r in world.recep_loc if instance_type(r) == recep_type]
    if any(instance_type(o) == obj_type and instance_type(r) == recep_type for o, r in world.container.items()):
        return 0
    if not targets:
        return None

    def place(loc: str | None) -> int:
        return min((world.recep_loc[r] != loc) + (r in world.closed) + 1 for r in targets)

    if world.held is not None and instance_type(world.held) == obj_type:
        return place(world.agent)
    if world.held is not None:
        return None  # putting the other object down first: not modelled
    options = []
    for obj, loc in world.object_loc.items():
        if instance_type(obj) != obj_type or loc is None:
            continue
        inside_closed = world.container.get(obj) in world.closed
        options.append((loc != world.agent) + inside_closed + 1 + place(loc))
    return min(options) if options else None


def _plan(env: TextEnv) -> list[str]:
    """The planner's current plan (the env keeps it; asking for the oracle's action makes one)."""
    env.oracle_action()
    return list(env._plan or [])


def _costs(env: TextEnv, actions: list[str]) -> tuple[int, dict[str, int]] | None:
    """(cost from here, 1 + cost after each action) when the cost model agrees with the planner, else None."""
    record = env.game
    if record is None or record.task_type not in MODELLED_TASKS:
        return None
    obj_type, recep_type = goal_types(record.game_id)
    world = World.read(env)
    now = _cost(world, obj_type, recep_type)
    if now is None or now != len(_plan(env)):
        return None
    after = {}
    for action in actions:
        cost = _cost(world.after(action), obj_type, recep_type)
        after[action] = 10**6 if cost is None else 1 + cost
    return now, after


def alfworld_assess(env: TextEnv, action: str) -> Assessment:
    best = oracle_menu_choice(env)
    command = env.oracle_action()
    if action.startswith(PAGE_ACTION_PREFIX) or best.startswith(PAGE_ACTION_PREFIX) or _off_planner(env):
        # the search is judged by its own order: the planner's costs read where the object is
        fine = action == best
        return Assessment(action=action, mistake=not fine, better=None if fine else best)
    costs = _costs(env, [action])
    if costs is not None:
        now, after = costs
        extra = after[action] - now
        if extra == 0:
            return Assessment(action=action, mistake=False)
        return Assessment(action=action, mistake=True, better=best, details={"extra_steps": extra if extra < 10**5 else None})
    if action == command or _same_spot(env, action, command):
        return Assessment(action=action, mistake=False)
    return Assessment(action=action, mistake=True, better=best)


def _same_spot(env: TextEnv, a: str, b: str) -> bool:
    if not (a.startswith("go to ") and b.startswith("go to ")):
        return False
    locs = World.read(env).recep_loc
    return locs.get(a[6:]) is not None and locs.get(a[6:]) == locs.get(b[6:])


def _off_planner(env: TextEnv) -> bool:
    """The oracle's command comes from the prior-ordered search (or fetches what it found), not the planner."""
    search = getattr(env, "search_action", None)
    return search is not None and search() is not None


def _searching(env: TextEnv) -> bool:
    """Looking for the goal object: the search leads and no goal object has been seen yet."""
    searching = getattr(env, "searching", None)
    return searching is not None and searching()


def alfworld_facts(env: TextEnv) -> dict[str, Any]:
    record = env.game
    obj_type, recep_type = goal_types(record.game_id)
    world = World.read(env)
    command = env.oracle_action()
    places = {o: world.container.get(o, "") for o in sorted(world.object_loc) if instance_type(o) == obj_type}
    targets = sorted(r for r in world.recep_loc if instance_type(r) == recep_type)
    spot = []
    if command.startswith("go to ") and command[6:] in world.recep_loc:
        loc = world.recep_loc[command[6:]]
        spot = sorted(r for r, at in world.recep_loc.items() if at == loc)
    return {
        "task_type": record.task_type,
        "object": obj_type,
        "receptacle": recep_type,
        "here": world.here(),
        "holding": world.held,
        "places": places,
        "targets": targets,
        "closed": sorted(r for r in world.closed if r in targets or r in places.values()),
        "command": command,
        "spot": spot,
        "steps_left": len(env._plan or []),
        "searching": _searching(env),
        "task": env._task(),  # the task sentence the agent reads (the hook is how every env gives it)
    }


# ------------------------------------------------------------------ wording
def _reason(facts: dict[str, Any]) -> str:
    """The one fact behind the planner's command (fixed wording; the concise style and the full style's core)."""
    command, obj, recep = facts["command"], facts["object"], facts["receptacle"]
    held = facts["holding"]
    verb, _, rest = command.partition(" ")
    if facts["searching"]:
        return _search_reason(facts)
    if command.startswith("go to "):
        place = command[6:]
        if held and instance_type(held) == obj:
            return _task_reason(facts)
        for o, r in facts["places"].items():
            if r == place:
                return f"{o} is in {place}."
            if r in facts["spot"]:
                return f"{o} is in {r}, next to {place}."
        return f"{place} is on the way."
    if verb == "open":
        inside = [o for o, r in facts["places"].items() if r == rest]
        if inside and not held:
            return f"{rest} is closed and {inside[0]} is inside."
        return f"{rest} is closed; {held or 'the ' + obj} must go inside."
    if verb == "take" and " from " in rest:
        o, r = rest.split(" from ", 1)
        return f"{o} is here, in {r}." if instance_type(o) == obj else f"{o} is in the way."
    if verb == "move" and " to " in rest:
        o, r = rest.split(" to ", 1)
        return _task_reason(facts) if instance_type(r) == recep else f"{o} must be put down first."
    return "That is the next step of the task."


def _task_reason(facts: dict[str, Any]) -> str:
    """The errand's reason, in the task's own words: the target type is then copied from the task line, not
    guessed from where such objects are usually found (the search's reasons talk about that)."""
    return f"The task is to {facts['task'].rstrip('.')}."


def _search_reason(facts: dict[str, Any]) -> str:
    """Why the search goes there, from what a player knows: no goal object seen yet, the place not searched."""
    command, obj = facts["command"], facts["object"]
    if command.startswith("open "):
        return f"{command[5:]} is closed; a {obj} may be inside."
    return f"No {obj} seen yet; {command[6:]} is not searched yet."


def _page_reason(request: ReflectionRequest) -> str:
    return f"'{request.facts['command']}' is on another page."


def _verdict(request: ReflectionRequest) -> str | None:
    last = request.last
    if last is None:
        return None
    return f"Last step: {'a mistake' if last.mistake else 'good'}."


def alfworld_explain_concise(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """Next menu entry first, then the fact behind it, then the verdict on the last step; one template.

    e.g. "Next: go to drawer 2. butterknife 2 is in sinkbasin 1, next to drawer 2. Last step: a mistake."
    (The last action itself is in the prompt's history.)
    """
    return " ".join(p for p in (f"Next: {request.best_action}.", _fact(request), _verdict(request)) if p)


def _fact(request: ReflectionRequest) -> str:
    """The one fact behind the next menu entry (the concise and grounded styles share it)."""
    best = request.best_action
    return _page_reason(request) if best.startswith(PAGE_ACTION_PREFIX) else _reason(request.facts)


def alfworld_explain_grounded(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """The fact behind the next entry first, then the entry, then the verdict on the last step; one template.

    e.g. "soapbottle 1 is here, in cabinet 3. Next: take soapbottle 1 from cabinet 3. Last step: good."
    Each step's first words state what the observation shows about the goal: the goal object here ("... is here"),
    none seen yet ("No soapbottle seen yet; ..."), the target here ("garbagecan 1 is here. The task is to ...").
    With the move first (concise), the 300-step SFT reflector kept searching where the object lay in view and walked
    away from the target with the object in hand (experiments/alfworld_rl).
    """
    return " ".join(p for p in (_grounded_fact(request), f"Next: {request.best_action}.", _verdict(request)) if p)


def _grounded_fact(request: ReflectionRequest) -> str:
    best, fact = request.best_action, _fact(request)
    target = best.partition(" to ")[2] if best.startswith("move ") else ""
    if target and instance_type(target) == request.facts["receptacle"]:
        fact = f"{target} is here. {fact}"
    return fact


def alfworld_explain_reasoned(request: ReflectionRequest, rng: np.random.Generator) -> str:
    """The verdict on the last step, the grounded fact, then the next entry: the paper's order in one template.

    e.g. "Last step: good. soapbottle 1 is here, in cabinet 3. Next: take soapbottle 1 from cabinet 3."
    """
    return " ".join(p for p in (_verdict(request), _grounded_fact(request), f"Next: {request.best_action}.") if p)


def _last_full(request: ReflectionRequest, rng: np.random.Generator) -> str | None:
    last, facts = request.last, request.facts
    if last is None:
        return None
    action, obj, recep = last.action, facts["object"], facts["receptacle"]
    verb, _, rest = action.partition(" ")
    if action.startswith(PAGE_ACTION_PREFIX):
        return "The menu moved on to its next page."
    if not last.mistake:
        if action.startswith("go to "):
            return pick(rng, (f"Going to {action[6:]} was right.", f"Heading to {action[6:]} brought me where I needed to be.", f"{action[6:]} was the right place to go."))
        if verb == "take":
            return pick(rng, (f"Picking up {rest.split(' from ')[0]} was the right move.", f"Good: I now hold {rest.split(' from ')[0]}."))
        if verb == "open":
            return pick(rng, (f"Opening {rest} was needed.", f"{rest} is open now, as it had to be."))
        return pick(rng, ("The last step went as planned.", f"'{action}' made progress."))
    extra = last.details.get("extra_steps")
    cost = f", costing {extra} extra step{'s' if extra > 1 else ''}" if extra else ""
    if action.startswith("go to "):
        text = pick(rng, (f"Going to {action[6:]} was a detour{cost}: nothing there brings the {obj} closer to a {recep}.", f"{action[6:]} was the wrong place to go{cost}."))
    elif verb in ("look", "inventory", "help", "examine"):
        text = pick(rng, (f"'{action}' changed nothing and cost a step.", f"'{action}' only looked around; it did not move the task on."))
    elif verb == "take":
        text = pick(rng, (f"Taking {rest.split(' from ')[0]} was a mistake: the task needs a {obj}.", f"{rest.split(' from ')[0]} is not what the task asks for{cost}."))
    elif verb == "move":
        text = pick(rng, (f"Putting that down there was a mistake{cost}: the {obj} belongs in a {recep}.", f"'{action}' undid progress{cost}."))
    else:
        text = pick(rng, (f"'{action}' did not help the task{cost}.", f"'{action}' was not a useful step{cost}."))
    if last.better:
        text += pick(rng, (f" '{last.better}' would have been better.", f" The better step was '{last.better}'."))
    return text


def _state_full(facts: dict[str, Any], rng: np.random.Generator) -> str:
    obj, recep, held = facts["object"], facts["receptacle"], facts["holding"]
    if held and instance_type(held) == obj:
        return pick(rng, (f"I am carrying {held}; it has to end up in a {recep}.", f"{held} is in my hands, and the task wants it in a {recep}."))
    if held:
        return f"I am holding {held}, which the task does not need."
    return pick(rng, (f"The task needs a {obj} put in a {recep}, and I hold nothing yet.", f"First I need a {obj}; then it goes in a {recep}."))


def alfworld_explain(request: ReflectionRequest, rng: np.random.Generator) -> str:
    facts, best = request.facts, request.best_action
    if best.startswith(PAGE_ACTION_PREFIX):
        nxt = pick(rng, (f"The command I need, '{facts['command']}', is not on this page; show more actions.", "The right command is on another page of the menu, so show more actions."))
    else:
        nxt = pick(rng, (f"{_reason(facts)} So the next step is '{best}'.", f"{_reason(facts)} Next: {best}.", f"Next I should {best}: {_reason(facts)[0].lower() + _reason(facts)[1:]}"))
    return " ".join(p for p in (_last_full(request, rng), _state_full(facts, rng), nxt) if p)


EXPLAINER = Explainer(
    facts=alfworld_facts, assess=alfworld_assess, explain=alfworld_explain, concise=alfworld_explain_concise,
    grounded=alfworld_explain_grounded, reasoned=alfworld_explain_reasoned,
)
