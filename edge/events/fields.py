"""The field types an event body may use (pure): each one narrow by construction.

An enum, a short token, a bounded integer, one scalar number, a short list of enum values. Nothing
here can hold a byte string, a nested map, a list of numbers or a long free-form string, so no
event field can carry an image, an embedding or a sensor template. ``edge.events.kinds`` annotates
each event dataclass field with one of these; ``edge.events.schema`` derives the table from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Pseudonymous subject ids issued by the consent authority (never names or card numbers).
PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
#: Reason and alarm codes: short snake_case tokens.
CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
#: Short identifiers (door, software version).
IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
#: A SHA-256 digest in lowercase hex (the consent list digest).
HEX256 = re.compile(r"^[0-9a-f]{64}$")

INT_MAX = 2**53


@dataclass(frozen=True)
class Field:
    """One field: its type name and constraints. ``nullable`` allows an explicit null."""

    type: str  # "enum" | "text" | "int" | "number" | "bool" | "enum_list"
    required: bool = True
    nullable: bool = False
    values: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    minimum: float = 0
    maximum: float = INT_MAX
    max_items: int = 8


def enum(*values: str, required: bool = True) -> Field:
    return Field("enum", required=required, values=values)


def text(pattern: re.Pattern[str], *, required: bool = True, nullable: bool = False) -> Field:
    return Field("text", required=required, nullable=nullable, pattern=pattern)


def integer(minimum: int = 0, maximum: int = INT_MAX, *, required: bool = True, nullable: bool = False) -> Field:
    return Field("int", required=required, nullable=nullable, minimum=minimum, maximum=maximum)


def number(minimum: float, maximum: float, *, required: bool = False) -> Field:
    return Field("number", required=required, minimum=minimum, maximum=maximum)


def enum_list(*values: str, required: bool = True) -> Field:
    return Field("enum_list", required=required, values=values, max_items=len(values))


def as_code(text: object) -> str:
    """A free-form internal reason (``not-in-list``, an exception's reason) as a ``CODE`` token."""
    out = "".join(c if c.isalnum() else "_" for c in str(text).lower()).strip("_")
    if not out or not out[0].isalpha():
        out = "x_" + out
    return out[:48]
