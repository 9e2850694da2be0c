"""The gate's and the consent enforcer's event bodies, in the published schema (``edge.events.schema``).

The gate loop and the enforcer describe what happened in their own words (``granted: True``,
``alarm``/``active``, a receipt's per-store ``deleted`` map). The egress guard only lets the narrow
published schema out, so ``to_schema`` translates one into the other here, in one pure function,
and ``SchemaSink`` applies it in front of the real sink. A body of a kind that is already in schema
form (``consent_applied``, an outbox alarm) passes through unchanged; the guard still checks it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge.events.sink import EventSink

# device names of the gate loop -> the modality they serve
DEVICE_MODALITY = {"camera": "face", "fingerprint": "fingerprint", "credential": "card"}
CRITICAL_ALARMS = frozenset({"door_forced_open", "tamper"})
RECEIPT_REASONS = {"withdrawn": "withdrawn", "expired": "expired", "not-in-list": "not_listed", "admin": "admin"}
SCHEMA_MODALITIES = ("face", "fingerprint", "card", "pin", "qr")


@dataclass
class EventContext:
    """Device facts the schema wants and the gate does not know: queried when an event is built."""

    outbox_depth: Callable[[], int] = lambda: 0
    consent_version: Callable[[], int | None] = lambda: None
    software: str = ""
    disk_path: Path | None = None
    extra_modalities: list[str] = field(default_factory=list)


def _code(text: object) -> str:
    """A free-form internal code as a schema CODE token (lower snake case)."""
    out = "".join(c if c.isalnum() else "_" for c in str(text).lower()).strip("_")
    if not out or not out[0].isalpha():
        out = "x_" + out
    return out[:48]


def _access(body: Mapping[str, object], ctx: EventContext) -> dict[str, object]:
    if "decision" in body:
        return dict(body)
    modality = str(body.get("modality") or "none")
    # A two-factor grant ("face+card") is reported by its biometric factor; the reason says two factors.
    parts = modality.split("+")
    reason = str(body.get("reason", ""))
    if len(parts) > 1 and body.get("granted"):
        reason = "granted_two_factor"
    out: dict[str, object] = {
        "decision": "granted" if body.get("granted") else "denied",
        "modality": parts[0] if parts[0] in SCHEMA_MODALITIES else "none",
        "subject": body.get("subject"),
        "reason": _code(reason),
    }
    if body.get("gate"):
        out["door"] = str(body["gate"])
    version = ctx.consent_version()
    if version is not None:
        out["consent_version"] = int(version)
    return out


def _alarm(body: Mapping[str, object], ctx: EventContext) -> dict[str, object]:
    if "code" in body:
        return dict(body)
    code = _code(body.get("alarm", "alarm"))
    out: dict[str, object] = {
        "code": code,
        "severity": "critical" if code in CRITICAL_ALARMS else "warning",
        "state": "raised" if body.get("active") else "cleared",
    }
    if body.get("device"):
        out["component"] = _code(body["device"])
    elif code.startswith("consent"):
        out["component"] = "consent"
    return out


def _health(body: Mapping[str, object], ctx: EventContext) -> dict[str, object]:
    if "outbox_depth" in body:
        return dict(body)
    devices = body.get("devices")
    up: list[str] = list(ctx.extra_modalities)
    if isinstance(devices, Mapping):
        for name, status in devices.items():
            modality = DEVICE_MODALITY.get(str(name))
            if modality is not None and status == "up" and modality not in up:
                up.append(modality)
    out: dict[str, object] = {
        "uptime_s": int(body.get("uptime_s", 0) or 0),  # type: ignore[call-overload]
        "outbox_depth": int(ctx.outbox_depth()),
        "modalities": [m for m in SCHEMA_MODALITIES if m in up],
        "consent_version": ctx.consent_version(),
    }
    if ctx.software:
        out["software"] = ctx.software
    with contextlib.suppress(OSError):
        out["load1"] = round(min(os.getloadavg()[0], 1000.0), 2)
    if ctx.disk_path is not None:
        with contextlib.suppress(OSError):
            out["disk_free_mb"] = int(shutil.disk_usage(ctx.disk_path).free // 2**20)
    return out


def _count(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)):
        return len(value)
    return 0


def _receipt(body: Mapping[str, object], ctx: EventContext) -> dict[str, object]:
    deleted = body.get("deleted")
    if not isinstance(deleted, Mapping):
        return dict(body)  # already in schema form
    modalities: list[str] = []
    records = 0
    for store, result in deleted.items():
        found: list[str] = []
        if isinstance(result, Mapping):
            listed = result.get("modalities")
            if isinstance(listed, (list, tuple)):
                found = [str(m) for m in listed]
            records += _count(result.get("templates", result.get("face_templates", 0)))
            records += _count(result.get("slots", result.get("sensor_slots", ())))
        if str(store) in SCHEMA_MODALITIES:
            found.append(str(store))
        for modality in found:
            if modality in SCHEMA_MODALITIES and modality not in modalities:
                modalities.append(modality)
    version = body.get("list_version")
    at = body.get("at", 0)
    return {
        "subject": body.get("subject"),
        "deleted": [m for m in SCHEMA_MODALITIES if m in modalities],
        "records": records,
        # not consented for this modality or purpose any more: to the person, a withdrawal
        "reason": RECEIPT_REASONS.get(str(body.get("reason")), "withdrawn"),
        "consent_version": int(version) if isinstance(version, int) else 0,
        "deleted_at": int(at) if isinstance(at, (int, float)) else 0,
    }


def _enrolment(body: Mapping[str, object], ctx: EventContext) -> dict[str, object]:
    if "result" in body:
        return dict(body)
    out: dict[str, object] = {
        "subject": body.get("subject"),
        "modality": body.get("modality"),
        "result": "enrolled",
    }
    if body.get("flagged"):
        out["reason"] = "possible_duplicate"
    version = ctx.consent_version()
    if version is not None:
        out["consent_version"] = int(version)
    return out


_TRANSLATE: dict[str, Callable[[Mapping[str, object], EventContext], dict[str, object]]] = {
    "access": _access,
    "alarm": _alarm,
    "health": _health,
    "deletion_receipt": _receipt,
    "enrolment": _enrolment,
}


def to_schema(kind: str, body: Mapping[str, object], ctx: EventContext | None = None) -> dict[str, object]:
    """The published form of an internal event body (pure apart from the context's callables)."""
    translate = _TRANSLATE.get(kind)
    if translate is None:
        return dict(body)
    return translate(body, ctx or EventContext())


class SchemaSink:
    """An ``EventSink`` that translates bodies with ``to_schema`` and hands them to ``inner``."""

    def __init__(self, inner: EventSink, ctx: EventContext | None = None) -> None:
        self.inner = inner
        self.ctx = ctx or EventContext()
        self.listeners: list[Callable[[str, Mapping[str, object]], None]] = []

    def emit(self, kind: str, body: Mapping[str, object]) -> None:
        clean = to_schema(kind, body, self.ctx)
        self.inner.emit(kind, clean)
        for listener in self.listeners:
            listener(kind, clean)
