"""Shorter wording of the ALFWorld engine's text, with the same information (`ALFWorldEnv(compact=True)`).

The engine's sentences repeat what the action already says ("go to drawer 2"
-> "You arrive at drawer 2. The drawer 2 is closed."), wrap every list in
articles ("you see a cabinet 8, a cabinet 7, ..., and a toaster 1"), and
answer ``help`` with a 15-line table. A prompt shows up to `history_length`
of these sentences besides the menu, so the small model reads a few hundred
tokens that carry nothing. Every rewrite below keeps each name and state word
of the original; text no rule matches is kept as it is.
"""

from __future__ import annotations

import re
from collections import defaultdict

HELP_SHORT = "Commands: look, inventory, go to, open, close, take from, move to, examine, use, heat/clean/cool with, slice with."

_ARRIVE = re.compile(r"^You arrive at [^.]+\.\s*")
_OPEN = re.compile(r"^You open the ([^.]+)\. The \1 is open\. In it, you see (.*)\.$")
_ON = re.compile(r"^On the ([^,]+), you see (.*)\.$")
_OPEN_IN = re.compile(r"^The ([^.]+) is open\. In it, you see (.*)\.$")
_CLOSED = re.compile(r"^The ([^.]+) is closed\.$")
_DONE = re.compile(r"^You (?:pick up|move|close|open) the [^.]+\.$")
_OVERVIEW = re.compile(r"^(You are in the middle of a room\.) Looking quickly around you, you see (.*)\.$", re.S)


def _items(listing: str) -> str:
    """'a mug 1, a fork 2, and an apple 1' -> 'mug 1, fork 2, apple 1'; 'nothing' stays."""
    parts = re.split(r",\s*(?:and\s+)?|\s+and\s+", listing.strip())
    names = [re.sub(r"^(?:a|an|some)\s+", "", p.strip()) for p in parts if p.strip()]
    return ", ".join(names) if names else listing


def grouped(names: list[str]) -> str:
    """'cabinet 1', ..., 'cabinet 8', 'fridge 1' -> 'cabinet 1-8, fridge 1' (runs of numbers as ranges)."""
    numbers: dict[str, list[int]] = defaultdict(list)
    order: list[str] = []
    others: list[str] = []
    for name in names:
        kind, _, number = name.rpartition(" ")
        if kind and number.isdigit():
            if kind not in numbers:
                order.append(kind)
            numbers[kind].append(int(number))
        else:
            others.append(name)
    parts = []
    for kind in order:
        values = sorted(set(numbers[kind]))
        runs, start = [], values[0]
        for prev, cur in zip(values, values[1:] + [None]):
            if cur != prev + 1:
                runs.append(f"{start}-{prev}" if prev > start else f"{start}")
                start = cur
        parts.append(f"{kind} {', '.join(runs)}")
    return ", ".join(sorted(parts) + others)


def compact_overview(text: str) -> str:
    """The room overview with the receptacles grouped ('Around you: cabinet 1-8, drawer 1-5, ...')."""
    match = _OVERVIEW.match(text.strip())
    if not match:
        return text
    return f"{match.group(1)} Around you: {grouped(_items(match.group(2)).split(', '))}."


def compact_feedback(text: str) -> str:
    """The engine's answer to one command without what the command already says."""
    text = text.strip()
    if text.startswith("Available commands:"):
        return HELP_SHORT
    text = _ARRIVE.sub("", text)
    if _OVERVIEW.match(text):  # `look` in the middle of the room answers with the overview
        return compact_overview(text)
    if match := _OPEN.match(text):
        return f"In it: {_items(match.group(2))}."
    if match := _OPEN_IN.match(text):
        return f"{match.group(1)} is open; in it: {_items(match.group(2))}."
    if match := _ON.match(text):
        return f"On it: {_items(match.group(2))}."
    if match := _CLOSED.match(text):
        return f"{match.group(1)} is closed."
    if _DONE.match(text):
        return "Done."
    return text
