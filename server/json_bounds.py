"""JSON request bodies decoded with a bound on nesting, so no body can exhaust the stack.

``json.loads`` recurses once per level: a 2 KB body of 990 brackets raises ``RecursionError``.
``bounded_loads`` finds the too-deep parts first with a flat scan and cuts them out, so a batch
keeps its valid items and only the item nested too deep is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

#: Deepest nesting accepted in a body. A result is at most a few levels deep (a list of hops of
#: a few fields) and sits two levels down in ``{"results": [...]}``; 64 leaves room for any later
#: schema while staying far below Python's recursion limit of 1000.
MAX_JSON_DEPTH = 64

# A whole string (so brackets and commas inside it are not structure), or one structural byte.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
#: Each byte's change of depth: +1 opens, -1 closes.
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
#: Where an item sits: its container is the top-level value's child (``{"results": [ITEM]}``).
_ITEM_DEPTH = 3


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded body; each item nested too deep was replaced by ``None``."""

    value: Any
    #: Positions, within the last second-level container (the batch's list), of the items cut.
    too_deep: frozenset[int]
    #: Whether anything was cut, wherever it was.
    cut: bool


def bounded_loads(text: str, max_depth: int = MAX_JSON_DEPTH) -> Decoded:
    """``text`` decoded as JSON, with each element of a second-level container (an item of
    ``{"results": [...]}``) that nests deeper than ``max_depth`` levels replaced by ``null``.

    Raises ``json.JSONDecodeError`` for text that is not JSON.
    """
    if max_depth < _ITEM_DEPTH:
        raise ValueError(f"max_depth must be at least {_ITEM_DEPTH}, got {max_depth}")
    if not nests_deeper_than(text, max_depth):
        return Decoded(json.loads(text), frozenset(), cut=False)
    depth = 0
    index = 0  # the current element's position in its second-level container
    item_start = 0
    cutting = False
    cuts: list[tuple[int, int]] = []
    too_deep: set[int] = set()
    for match in _TOKEN.finditer(text):
        char = text[match.start()]
        if char == '"':
            continue
        if char == ",":
            index += depth == _ITEM_DEPTH - 1
            continue
        if char in "[{":
            depth += 1
            if depth == _ITEM_DEPTH - 1:
                # A new second-level container: json.loads keeps the last one of a repeated key.
                index = 0
                too_deep.clear()
            elif depth == _ITEM_DEPTH:
                item_start = match.start()
            elif depth > max_depth and not cutting:
                cutting = True
                too_deep.add(index)
            continue
        depth -= 1
        if depth == _ITEM_DEPTH - 1 and cutting:
            cuts.append((item_start, match.end()))
            cutting = False
    if cutting:  # unterminated: cut to the end, json.loads then reports where the text ends
        cuts.append((item_start, len(text)))
    if cuts:
        parts: list[str] = []
        end = 0
        for start, stop in cuts:
            parts += [text[end:start], "null"]
            end = stop
        parts.append(text[end:])
        text = "".join(parts)
    return Decoded(json.loads(text), frozenset(too_deep), cut=bool(cuts))


def nests_deeper_than(text: str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests deeper than ``max_depth``: the quick test that spares a healthy
    body the scan (strings and all but brackets removed, then a running sum in C)."""
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii")
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0) > max_depth
