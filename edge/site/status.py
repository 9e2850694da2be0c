"""Where a person's biometric data is, gate by gate, from the site's verified events. Pure.

The site verifier (``edge-site listen --out events.jsonl``) writes every verified event as one JSON
line. A gate reports each enrolment it stores (its own, or one synced from another gate: reason
``synced``) as an ``enrolment`` event, and each deletion as a signed ``deletion_receipt``. Folding
those for one subject, in each gate's own sequence order, says per gate and modality whether the
gate holds the person's templates, and the signed list in force says whether it should:

- ``enrolled``: holds them, and consent covers the gate;
- ``deleted``: its last word is a signed receipt (with the receipt's time and list version);
- ``not confirmed``: it holds them (its last word is an enrolment) but consent no longer covers
  it: the deletion has not been confirmed by a receipt yet;
- ``not enrolled``: nothing heard, and nothing owed.

A withdrawal is complete when no gate is ``not confirmed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge.consent.listformat import Entry, Place
from edge.errors import StorageError

ENROLLED = "enrolled"
DELETED = "deleted"
NOT_CONFIRMED = "not confirmed"
NOT_ENROLLED = "not enrolled"


@dataclass(frozen=True)
class GateStatus:
    gate: str
    modality: str
    state: str
    #: the seq and time of the event that decided the state (None for ``not enrolled``)
    seq: int | None = None
    at: int | None = None
    list_version: int | None = None


def read_events(lines: Iterable[str], where: str = "events") -> list[dict[str, object]]:
    """Verified event records from ``edge-site listen`` output; a damaged line is named, not skipped."""
    records: list[dict[str, object]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise StorageError(f"{where}:{number}: not a JSON line from `edge-site listen`") from None
        if not isinstance(record, dict) or not isinstance(record.get("body"), dict):
            raise StorageError(f"{where}:{number}: not an event record (device, kind, seq, body)")
        records.append(record)
    return records


def subject_status(
    subject: str,
    events: Iterable[Mapping[str, object]],
    gates: Mapping[str, Place],
    entry: Entry | None,
    *,
    purpose: str | None,
    now: float,
) -> list[GateStatus]:
    """Per gate and modality, where ``subject``'s templates are (see the module note).

    ``gates``: the site's gates and where they stand (the roster of the list in force); ``entry``:
    the subject's entry in that list (None: not listed, so no gate should hold anything).
    """
    last: dict[tuple[str, str], tuple[int, str, int | None, int | None]] = {}
    for record in events:
        body = record.get("body")
        device, seq, kind = record.get("device"), record.get("seq"), record.get("kind")
        if not isinstance(body, Mapping) or body.get("subject") != subject:
            continue
        if not isinstance(device, str) or not isinstance(seq, int) or isinstance(seq, bool):
            continue
        if kind == "enrolment" and body.get("result") == "enrolled":
            modality = body.get("modality")
            if isinstance(modality, str):
                _keep(
                    last,
                    (device, modality),
                    (seq, ENROLLED, _int(record.get("iat")), _int(body.get("consent_version"))),
                )
        elif kind == "deletion_receipt":
            deleted = body.get("deleted")
            for modality in deleted if isinstance(deleted, list) else ():
                if isinstance(modality, str):
                    receipt = (seq, DELETED, _int(body.get("deleted_at")), _int(body.get("consent_version")))
                    _keep(last, (device, modality), receipt)
    rows: list[GateStatus] = []
    modalities = sorted({m for _, m in last} | set(entry.modalities if entry is not None else ()))
    for gate in sorted(set(gates) | {g for g, _ in last}):
        place = gates.get(gate, Place(gate))
        for modality in modalities:
            heard = last.get((gate, modality))
            if heard is None:
                continue
            seq, state, at, version = heard
            owed = entry is not None and entry.allows(modality, purpose, now, place) and gate in gates
            if state == ENROLLED and not owed:
                state = NOT_CONFIRMED
            rows.append(GateStatus(gate, modality, state, seq, at, version))
    return rows


def complete(rows: Iterable[GateStatus]) -> bool:
    """No gate still holds what it should have deleted."""
    return all(row.state != NOT_CONFIRMED for row in rows)


def _keep(
    last: dict[tuple[str, str], tuple[int, str, int | None, int | None]],
    key: tuple[str, str],
    value: tuple[int, str, int | None, int | None],
) -> None:
    """A gate's later event (higher seq) decides; events may reach the verifier out of order."""
    held = last.get(key)
    if held is None or value[0] > held[0]:
        last[key] = value


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
