"""Sample an ALFWorld task in an ALFRED room and write it as `initial_state.pddl` + `traj_data.json`.

The problem follows the layout of the real data set: ALFRED-style mangled
instance ids (alfworld's demangler turns 'Apple_bar_plus_00_dot_48...' into
'apple 1'), one location per interaction pose, the object/receptacle facts of
the alfred domain, every `canContain` fact between the types present (without
them no object can be put anywhere and the planner finds nothing), and the goal
from alfworld's own goal library.

Objects are placed at random in receptacles that can hold them, never already
in a receptacle of the goal's type, so no game starts won. The number of
movable objects is bounded (`max_objects`): the planner expert searches
breadth-first, and every extra object multiplies its search space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflectrl.envs.alfworld.scenes import (
    LIGHT_HOSTS,
    Receptacle,
    Scene,
    can_contain,
    format_alfred_id,
    load_scene,
    missing_receptacle_types,
    scene_numbers,
)

TOOLS = {
    "pick_clean_then_place_in_recep": ("Cleanable", "SinkBasin"),
    "pick_heat_then_place_in_recep": ("Heatable", "Microwave"),
    "pick_cool_then_place_in_recep": ("Coolable", "Fridge"),
}
"""Task type -> (object property in ALFRED's table, receptacle type that does the job)."""

EXTRA_INSTANCES = {"StoveBurner": 2}
"""How many instances to place of a receptacle type the package gives no pose for (default 1)."""

AGENT = "agent1"


@dataclass(frozen=True)
class PlacedObject:
    alfred_id: str
    type: str
    receptacle: Receptacle


@dataclass
class Problem:
    """A sampled task: everything needed to write the trial folder."""

    scene: Scene
    task_type: str
    object_target: str
    parent_target: str
    toggle_target: str
    receptacles: list[Receptacle]
    objects: list[PlacedObject]
    start_pose: tuple[int, int, int, int]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder_name(self) -> str:
        """The real data set's task folder name: type-object-movable receptacle-parent-scene."""
        parent = self.parent_target or self.toggle_target
        return f"{self.task_type}-{self.object_target}-None-{parent}-{self.scene.number}"

    def pddl_params(self) -> dict[str, Any]:
        return {
            "object_target": self.object_target,
            "parent_target": self.parent_target,
            "toggle_target": self.toggle_target,
            "mrecep_target": "",
            "object_sliced": False,
        }


def mangle(alfred_id: str) -> str:
    """ALFRED's escaping of an id into a PDDL name (the inverse of alfworld's demangler)."""
    for raw, escaped in (("|", "_bar_"), ("+", "_plus_"), ("-", "_minus_"), (".", "_dot_"), (",", "_comma_")):
        alfred_id = alfred_id.replace(raw, escaped)
    return alfred_id


def location_name(pose: tuple[int, int, int, int]) -> str:
    return mangle("loc|" + "|".join(str(v) for v in pose))


def rooms_for(task_type: str, held_out: bool) -> tuple[int, ...]:
    """Rooms of ALFRED's training (or held-out) set whose type and furniture allow `task_type`."""
    from alfworld.gen import constants

    rooms = []
    for number in scene_numbers(held_out):
        scene = load_scene(number)
        kinds = scene.receptacle_types | set(missing_receptacle_types(number))
        if scene.room not in constants.GOALS_VALID[task_type]:
            continue
        if task_type == "look_at_obj_in_light" and not (scene.light_types and kinds & set(LIGHT_HOSTS)):
            continue
        if task_type in TOOLS and TOOLS[task_type][1] not in kinds:
            continue
        rooms.append(number)
    return tuple(rooms)


def sample_problem(scene_number: int, task_type: str, rng: np.random.Generator, max_objects: int = 8) -> Problem | None:
    """A random task of `task_type` in the room, or None when the room cannot host one."""
    from alfworld.gen import constants

    scene = load_scene(scene_number)
    if scene.room not in constants.GOALS_VALID[task_type]:
        return None
    receptacles = list(scene.receptacles) + _place_missing_receptacles(scene, rng)
    kinds = sorted({r.type for r in receptacles})

    def hosts(object_type: str, exclude: str = "") -> list[Receptacle]:
        return [r for r in receptacles if r.type != exclude and can_contain(r.type, object_type)]

    toggle, tool_type, light = "", "", None
    if task_type == "look_at_obj_in_light":
        light_hosts = [r for r in receptacles if r.type in LIGHT_HOSTS]
        if not scene.light_types or not light_hosts:
            return None
        toggle = str(rng.choice(scene.light_types))
        light = light_hosts[int(rng.integers(len(light_hosts)))]
    elif task_type in TOOLS:
        tool_type = TOOLS[task_type][1]
        if tool_type not in kinds:
            return None

    candidates: list[tuple[str, str]] = []  # (object type, parent type)
    for obj in scene.object_types:
        if task_type in TOOLS and obj not in constants.VAL_ACTION_OBJECTS[TOOLS[task_type][0]]:
            continue
        if task_type == "look_at_obj_in_light":
            if hosts(obj):
                candidates.append((obj, ""))
            continue
        for parent in kinds:
            if parent != tool_type and can_contain(parent, obj) and hosts(obj, exclude=parent):
                candidates.append((obj, parent))
    if not candidates:
        return None
    obj, parent = candidates[int(rng.integers(len(candidates)))]

    n_target = (2 if task_type == "pick_two_obj_and_place" else 1) + int(rng.integers(0, 2))
    placed: list[PlacedObject] = []
    taken: set[str] = set()
    target_hosts = hosts(obj, exclude=parent)
    for _ in range(n_target):
        placed.append(_place(obj, target_hosts, rng, taken))
    others = [t for t in scene.object_types if t != obj and hosts(t)]
    n_other = max(0, min(len(others), max_objects - n_target))
    for kind in rng.choice(others, size=n_other, replace=False) if n_other else []:
        # a distractor of any type may lie anywhere, even in the goal receptacle
        placed.append(_place(str(kind), hosts(str(kind)), rng, taken))
    if light is not None:
        placed.append(_place(toggle, [light], rng, taken))

    used = {r.pose[:3] for r in receptacles}
    start = None
    for _ in range(100):
        x, z = scene.floor[int(rng.integers(len(scene.floor)))]
        pose = (round(x / 0.25), round(z / 0.25), int(rng.integers(4)), 30)
        if pose[:3] not in used:
            start = pose
            break
    if start is None:
        return None
    return Problem(scene, task_type, obj, parent, toggle, receptacles, placed, start)


def _place_missing_receptacles(scene: Scene, rng: np.random.Generator) -> list[Receptacle]:
    placed = []
    for kind in missing_receptacle_types(scene.number):
        for _ in range(EXTRA_INSTANCES.get(kind, 1)):
            x, z = scene.floor[int(rng.integers(len(scene.floor)))]
            alfred_id = format_alfred_id(kind, x, round(float(rng.uniform(0.0, 1.5)), 2), z)
            placed.append(Receptacle(alfred_id, kind, (round(x / 0.25), round(z / 0.25), int(rng.integers(4)), 30)))
    return placed


def _place(kind: str, hosts: list[Receptacle], rng: np.random.Generator, taken: set[str]) -> PlacedObject:
    host = hosts[int(rng.integers(len(hosts)))]
    x0, z0 = host.pose[0] * 0.25, host.pose[1] * 0.25
    while True:  # ids must be unique; coordinates only need to look like ALFRED's
        alfred_id = format_alfred_id(
            kind, round(x0 + float(rng.uniform(-0.5, 0.5)), 2), round(float(rng.uniform(0.0, 2.0)), 2), round(z0 + float(rng.uniform(-0.5, 0.5)), 2)
        )
        if alfred_id not in taken:
            taken.add(alfred_id)
            return PlacedObject(alfred_id, kind, host)


def problem_pddl(problem: Problem, name: str) -> str:
    """The PDDL problem text (the `initial_state.pddl` of the real data set)."""
    from alfworld.gen import constants
    from alfworld.gen import goal_library as goals

    objects = problem.objects
    receptacles = problem.receptacles
    object_types = sorted({o.type for o in objects})
    receptacle_types = sorted({r.type for r in receptacles})
    locations = sorted({location_name(r.pose) for r in receptacles} | {location_name(problem.start_pose)})
    movable = set(constants.MOVABLE_RECEPTACLES)
    actions = constants.VAL_ACTION_OBJECTS

    lines = [f"(define (problem {name})", "(:domain alfred)", "(:objects", f"        {AGENT} - agent"]
    lines += [f"        {t}Type - otype" for t in object_types]
    lines += [f"        {t}Type - rtype" for t in receptacle_types]
    lines += [f"        {mangle(o.alfred_id)} - object" for o in objects]
    lines += [f"        {mangle(r.alfred_id)} - receptacle" for r in receptacles]
    lines += [f"        {loc} - location" for loc in locations]
    lines += ["        )", "", "(:init"]
    lines.append(f"        (atLocation {AGENT} {location_name(problem.start_pose)})")
    for r in receptacles:
        rid = mangle(r.alfred_id)
        lines.append(f"        (receptacleType {rid} {r.type}Type)")
        lines.append(f"        (receptacleAtLocation {rid} {location_name(r.pose)})")
        if r.type in constants.OPENABLE_CLASS_SET:
            lines.append(f"        (openable {rid})")
    for o in objects:
        oid = mangle(o.alfred_id)
        lines.append(f"        (objectType {oid} {o.type}Type)")
        lines.append(f"        (inReceptacle {oid} {mangle(o.receptacle.alfred_id)})")
        lines.append(f"        (objectAtLocation {oid} {location_name(o.receptacle.pose)})")
        if o.type in actions["Toggleable"]:
            lines.append(f"        (toggleable {oid})")
            continue
        lines.append(f"        (pickupable {oid})")
        if o.type in movable:
            lines.append(f"        (isReceptacleObject {oid})")
        for table, predicate in (("Cleanable", "cleanable"), ("Heatable", "heatable"), ("Coolable", "coolable"), ("Sliceable", "sliceable")):
            if o.type in actions[table]:
                lines.append(f"        ({predicate} {oid})")
    for rt in receptacle_types:
        for ot in object_types:
            if can_contain(rt, ot):
                lines.append(f"        (canContain {rt}Type {ot}Type)")
    lines.append("        )")
    goal = goals.gdict[problem.task_type]["pddl"].format(
        obj=problem.object_target, recep=problem.parent_target, toggle=problem.toggle_target, mrecep=""
    )
    # the goal library writes typed variables as '?r # receptacle'; its text also closes `(define`
    return "\n".join(lines) + "\n" + goal.replace(" # ", " - ") + "\n"


def traj_data(problem: Problem, trial: str, task_desc: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The fields of ALFRED's `traj_data.json` that alfworld reads, plus our generation record."""
    return {
        "task_id": trial,
        "task_type": problem.task_type,
        "pddl_params": problem.pddl_params(),
        "scene": {"floor_plan": f"FloorPlan{problem.scene.number}", "scene_num": problem.scene.number},
        "turk_annotations": {"anns": [{"task_desc": task_desc, "high_descs": [], "votes": []}]},
        "reflectrl": extra,
    }
