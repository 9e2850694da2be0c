"""The product's one vocabulary of ways through the gate: ``Modality`` (pure, imports nothing).

Two are biometric (``face``, ``fingerprint``: consent per modality, templates in the gallery or on
the sensor); three are credentials (``card``, ``pin``, ``qr``: the non-biometric path nobody may be
refused). The consent list, the gallery, the credential readers, the gate's policy and the
published events all name modalities with this enum's values.

``Modality`` is a ``str`` enum whose member names equal their values, so a member compares and
hashes like its text on every supported Python (a set of ``"face"`` strings holds
``Modality.face``) and formats as its text (``f"{Modality.pin}"`` is ``pin``), which keeps the
keyed credential digests and stored records byte-identical. A two-factor grant is a pair of
members (``edge.agent.decide.Decision.second``), never a joined string.
"""

from __future__ import annotations

from enum import Enum


class Modality(str, Enum):
    face = "face"
    fingerprint = "fingerprint"
    card = "card"
    pin = "pin"
    qr = "qr"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @property
    def biometric(self) -> bool:
        return self in BIOMETRIC


#: Every modality, in the order the schema and reports list them.
ALL: tuple[Modality, ...] = tuple(Modality)
#: Templates held under per-modality consent.
BIOMETRIC: frozenset[Modality] = frozenset({Modality.face, Modality.fingerprint})
#: The non-biometric credentials, in the order the config and lists name them.
CREDENTIALS: tuple[Modality, ...] = (Modality.card, Modality.pin, Modality.qr)


def parse(value: str, allowed: frozenset[Modality] | tuple[Modality, ...] = ALL) -> Modality:
    """``value`` as one of ``allowed``; ``ValueError`` naming what is allowed otherwise."""
    for modality in allowed:
        if value == modality.value:
            return modality
    names = ", ".join(m.value for m in ALL if m in allowed)
    raise ValueError(f"unknown modality {value!r}; expected one of {names}")


def in_order(modalities: frozenset[Modality] | set[Modality]) -> tuple[Modality, ...]:
    """``modalities`` in the product's order (``ALL``), so lists never depend on set order."""
    return tuple(m for m in ALL if m in modalities)
