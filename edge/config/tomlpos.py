"""Find the line of each key in a TOML document, so errors can point at file:line.

``tomllib`` parses values but forgets positions. This pure scanner walks the text once and maps
every key path (tables, arrays of tables and dotted keys included) to the line it was written on.
It reads well-formed TOML only; on text it does not understand it simply records nothing.
"""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_TABLE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]\s*(?:#.*)?$")
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY)


def _split(dotted: str) -> list[str]:
    parts = []
    for match in _PART.finditer(dotted):
        token = match.group(0)
        if token[0] in "\"'":
            token = token[1:-1]
        parts.append(token)
    return parts


def key_lines(text: str) -> dict[KeyPath, int]:
    """Return ``{key path: 1-based line}`` for every table header and key in ``text``."""
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    array_counts: dict[KeyPath, int] = {}
    in_multiline: str | None = None
    depth = 0  # open brackets of a multi-line array or inline table
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        if depth > 0:
            depth += line.count("[") + line.count("{") - line.count("]") - line.count("}")
            continue
        if match := _ARRAY_TABLE.match(line):
            base = tuple(_split(match.group(1)))
            index = array_counts.get(base, -1) + 1
            array_counts[base] = index
            table = (*base, index)
            lines.setdefault(base, number)
            lines[table] = number
            continue
        if match := _TABLE.match(line):
            table = _resolve(tuple(_split(match.group(1))), array_counts)
            lines.setdefault(table, number)
            continue
        if match := _ASSIGN.match(line):
            path = (*table, *_split(match.group(1)))
            lines.setdefault(path, number)
            value = line[match.end() :]
            for quote in ('"""', "'''"):
                if value.count(quote) == 1:
                    in_multiline = quote
            stripped = _strip_strings(value)
            depth = stripped.count("[") + stripped.count("{") - stripped.count("]") - stripped.count("}")
    return lines


def _resolve(path: tuple[str, ...], array_counts: dict[KeyPath, int]) -> KeyPath:
    """A sub-table of an array of tables belongs to its latest element."""
    out: list[str | int] = []
    for part in path:
        out.append(part)
        index = array_counts.get(tuple(out))
        if index is not None:
            out.append(index)
    return tuple(out)


def _strip_strings(value: str) -> str:
    value = re.sub(_QUOTED, '""', value)
    return value.split("#", 1)[0]


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest written ancestor."""
    probe = tuple(path)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return None
