"""Room layouts and object tables that ship inside the alfworld package.

For each of ALFRED's 120 rooms (`FloorPlan<N>`) the package holds the object
types present (`-objects.json`), the receptacle instances with the pose from
which the agent interacts with them (`-openable.json`) and the reachable floor
points (`-layout.npy`). `alfworld.gen.constants` holds which receptacle types
can contain which object types, which objects can be heated, cooled, cleaned
or toggled, the room type of every scene and ALFRED's train/test room split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

BASIN_TYPES = {"SinkBasin": "Sink", "BathtubBasin": "Bathtub"}
"""Basins are named 'Sink|x|y|z|SinkBasin' in ALFRED; alfworld's name demangler relies on it."""

LIGHT_TYPES = ("DeskLamp",)
"""Lights for look_at_obj_in_light. Floor lamps stand on the floor, outside every receptacle,
so the domain's ToggleObject (which needs the light in a receptacle) could never use them."""

LIGHT_HOSTS = ("Desk", "SideTable", "Dresser", "Shelf", "CoffeeTable", "DiningTable", "TVStand")
"""Receptacle types a desk lamp stands on (ALFRED's tables give lamps no receptacle)."""


@dataclass(frozen=True)
class Receptacle:
    """A fixed receptacle of a room."""

    alfred_id: str
    """ALFRED-style id, e.g. 'Cabinet|+00.68|+00.50|-02.20' (type first, then coordinates)."""
    type: str
    pose: tuple[int, int, int, int]
    """Interaction pose: x and z in 0.25 m grid steps, rotation in quarter turns, camera horizon in degrees."""


@dataclass(frozen=True)
class Scene:
    """One ALFRED room as the generator sees it."""

    number: int
    room: str
    """Kitchen, LivingRoom, Bedroom or Bathroom."""
    receptacles: tuple[Receptacle, ...]
    object_types: tuple[str, ...]
    """Types that can be picked up, present in this room (sorted)."""
    light_types: tuple[str, ...]
    floor: tuple[tuple[float, float], ...]
    """Reachable floor points (x, z) in metres."""

    @property
    def receptacle_types(self) -> set[str]:
        return {r.type for r in self.receptacles}


def _constants():
    from alfworld.gen import constants  # lazy: alfworld is an optional dependency

    return constants


def layouts_dir() -> Path:
    return Path(_constants().__file__).parent / "layouts"


@cache
def pickupable_types() -> frozenset[str]:
    """Object types some receptacle can contain (whole objects only: slicing is not generated)."""
    table = _constants().VAL_RECEPTACLE_OBJECTS
    return frozenset(t for kinds in table.values() for t in kinds if not t.endswith("Sliced"))


@cache
def can_contain(receptacle_type: str, object_type: str) -> bool:
    return object_type in _constants().VAL_RECEPTACLE_OBJECTS.get(receptacle_type, ())


def room_of(number: int) -> str:
    for room, numbers in _constants().SCENE_TYPE.items():
        if number in numbers:
            return room
    raise ValueError(f"FloorPlan{number} is not an ALFRED scene")


def scene_numbers(held_out: bool) -> tuple[int, ...]:
    """ALFRED's training rooms, or the rooms it holds out (used for `valid_unseen`)."""
    c = _constants()
    numbers = c.TEST_SCENE_NUMBERS if held_out else c.TRAIN_SCENE_NUMBERS
    return tuple(sorted(n for n in numbers if (layouts_dir() / f"FloorPlan{n}-objects.json").is_file()))


def _grid(value: float) -> int:
    return round(value / 0.25)


def format_alfred_id(kind: str, x: float, y: float, z: float) -> str:
    """An ALFRED id for an instance at (x, y, z); basins get ALFRED's two-part form."""
    coords = f"{x:+06.2f}|{y:+06.2f}|{z:+06.2f}"
    if kind in BASIN_TYPES:
        return f"{BASIN_TYPES[kind]}|{coords}|{kind}"
    return f"{kind}|{coords}"


@cache
def load_scene(number: int) -> Scene:
    """Read one room from the package's layout files.

    Receptacle types listed in the room's objects but without an interaction
    pose (stove burners, toasters, garbage cans, ...) are not placed here: the
    problem sampler places them on floor points with its own random generator.
    """
    import numpy as np

    c = _constants()
    folder = layouts_dir()
    present = set(json.loads((folder / f"FloorPlan{number}-objects.json").read_text()))
    poses = json.loads((folder / f"FloorPlan{number}-openable.json").read_text())
    fixed = set(c.RECEPTACLES) - set(c.MOVABLE_RECEPTACLES)
    receptacles = []
    for alfred_id, (x, z, rotation, horizon) in sorted(poses.items()):
        parts = alfred_id.split("|")
        kind = parts[4] if len(parts) == 5 else parts[0]
        if kind not in fixed:
            continue
        receptacles.append(Receptacle(alfred_id, kind, (_grid(x), _grid(z), round(rotation / 90) % 4, round(horizon))))
    floor = np.load(folder / f"FloorPlan{number}-layout.npy")
    return Scene(
        number=number,
        room=room_of(number),
        receptacles=tuple(receptacles),
        object_types=tuple(sorted(present & pickupable_types())),
        light_types=tuple(t for t in LIGHT_TYPES if t in present),
        floor=tuple((float(x), float(z)) for x, z in floor),
    )


@cache
def missing_receptacle_types(number: int) -> tuple[str, ...]:
    """Fixed receptacle types present in the room but without an interaction pose in the package."""
    c = _constants()
    present = set(json.loads((layouts_dir() / f"FloorPlan{number}-objects.json").read_text()))
    fixed = (set(c.RECEPTACLES) - set(c.MOVABLE_RECEPTACLES)) & present
    return tuple(sorted(fixed - load_scene(number).receptacle_types))
