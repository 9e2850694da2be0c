"""Every event the device may publish, one frozen dataclass per kind (pure).

Producers (the gate, the consent enforcer and service, the outbox, site sync, enrolment) build
these directly and hand them to ``EventSink.emit``; ``body()`` renders the published map (enum
members as their text, tuples as lists, an absent optional field left out, a nullable one as
null). Each field is annotated with its wire type from ``edge.events.fields``; the schema table the
egress guard and the verifier check (``edge.events.schema.EVENT_KINDS``) and the CDDL in
``docs/events.md`` are derived from these annotations, so a field is added in one place.
"""

from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Annotated, ClassVar, Literal, get_args, get_type_hints

from edge.events.fields import CODE, HEX256, IDENT, PSEUDONYM, Field, enum, enum_list, integer, number, text
from edge.modality import BIOMETRIC, Modality, in_order

Verdict = Literal["granted", "denied"]
Severity = Literal["info", "warning", "critical"]
AlarmState = Literal["raised", "cleared"]
EnrolOutcome = Literal["enrolled", "refused", "failed"]
ReceiptReason = Literal["withdrawn", "expired", "not_listed", "out_of_scope", "admin"]


def _names(values: object) -> tuple[str, ...]:
    if isinstance(values, type) and issubclass(values, Enum):
        return tuple(str(m.value) for m in values)
    if isinstance(values, frozenset):
        return tuple(m.value for m in in_order(values))
    return tuple(str(v) for v in get_args(values))


def choice(values: object, *extra: str, required: bool = True) -> Field:
    """One of an enum's or a ``Literal``'s values (plus ``extra``): the values are written once."""
    return enum(*_names(values), *extra, required=required)


def choices(values: object, *, required: bool = True) -> Field:
    return enum_list(*_names(values), required=required)


class Event:
    """What every event kind shares: its ``kind`` and the published ``body()``."""

    kind: ClassVar[str]

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, spec in spec_of(type(self)).items():
            value = getattr(self, name)
            if value is None and not spec.required and not spec.nullable:
                continue
            out[name] = _plain(value)
        return out


def _plain(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Access(Event):
    """A decision at the gate: who (pseudonym, or none), how, and why. A two-factor grant is
    reported by its first (biometric) factor with reason ``granted_two_factor``."""

    kind: ClassVar[str] = "access"
    decision: Annotated[Verdict, choice(Verdict)]
    modality: Annotated[Modality | Literal["none"], choice(Modality, "none")]
    subject: Annotated[str | None, text(PSEUDONYM, nullable=True)]
    reason: Annotated[str, text(CODE)]
    door: Annotated[str | None, text(IDENT, required=False)] = None
    consent_version: Annotated[int | None, integer(required=False)] = None
    latency_ms: Annotated[int | None, integer(0, 600_000, required=False)] = None


@dataclass(frozen=True)
class Enrolment(Event):
    kind: ClassVar[str] = "enrolment"
    subject: Annotated[str, text(PSEUDONYM)]
    modality: Annotated[Modality, choice(BIOMETRIC)]
    result: Annotated[EnrolOutcome, choice(EnrolOutcome)]
    reason: Annotated[str | None, text(CODE, required=False)] = None
    consent_version: Annotated[int | None, integer(required=False)] = None


@dataclass(frozen=True)
class DeletionReceipt(Event):
    """Proof that a subject's data was deleted: what, how many records, why, under which list version."""

    kind: ClassVar[str] = "deletion_receipt"
    subject: Annotated[str, text(PSEUDONYM)]
    deleted: Annotated[tuple[Modality, ...], choices(Modality)]
    records: Annotated[int, integer(0, 1_000_000)]
    reason: Annotated[ReceiptReason, choice(ReceiptReason)]
    consent_version: Annotated[int, integer()]
    deleted_at: Annotated[int, integer()]


@dataclass(frozen=True)
class ConsentApplied(Event):
    kind: ClassVar[str] = "consent_applied"
    version: Annotated[int, integer()]
    entries: Annotated[int, integer(0, 10_000_000)]
    issued_at: Annotated[int | None, integer(required=False)] = None
    digest: Annotated[str | None, text(HEX256, required=False)] = None


@dataclass(frozen=True)
class ConsentRejected(Event):
    kind: ClassVar[str] = "consent_rejected"
    version: Annotated[int | None, integer(nullable=True)]
    reason: Annotated[str, text(CODE)]


@dataclass(frozen=True)
class Tamper(Event):
    kind: ClassVar[str] = "tamper"
    source: Annotated[str, text(CODE)]
    state: Annotated[AlarmState, choice(AlarmState)]


@dataclass(frozen=True)
class Alarm(Event):
    kind: ClassVar[str] = "alarm"
    code: Annotated[str, text(CODE)]
    severity: Annotated[Severity, choice(Severity)]
    state: Annotated[AlarmState | None, choice(AlarmState, required=False)] = None
    component: Annotated[str | None, text(CODE, required=False)] = None
    count: Annotated[int | None, integer(required=False)] = None
    first_seq: Annotated[int | None, integer(required=False)] = None
    last_seq: Annotated[int | None, integer(required=False)] = None


@dataclass(frozen=True)
class Health(Event):
    """At start and every ``health_interval_s``: what works, how full the outbox is, which list."""

    kind: ClassVar[str] = "health"
    uptime_s: Annotated[int, integer()]
    outbox_depth: Annotated[int, integer()]
    outbox_oldest_s: Annotated[int | None, integer(required=False)] = None
    modalities: Annotated[tuple[Modality, ...] | None, choices(Modality, required=False)] = None
    consent_version: Annotated[int | None, integer(required=False, nullable=True)] = None
    software: Annotated[str | None, text(IDENT, required=False)] = None
    cpu_temp_c: Annotated[float | None, number(-60.0, 150.0)] = None
    load1: Annotated[float | None, number(0.0, 1000.0)] = None
    disk_free_mb: Annotated[int | None, integer(required=False)] = None


AnyEvent = Access | Enrolment | DeletionReceipt | ConsentApplied | ConsentRejected | Tamper | Alarm | Health
EVENT_TYPES: tuple[type[Event], ...] = (
    Access,
    Enrolment,
    DeletionReceipt,
    ConsentApplied,
    ConsentRejected,
    Tamper,
    Alarm,
    Health,
)

_SPECS: dict[type[Event], dict[str, Field]] = {}


def spec_of(cls: type[Event]) -> dict[str, Field]:
    """The wire type of each field of ``cls``, in declaration order, read from its annotations."""
    found = _SPECS.get(cls)
    if found is None:
        if not is_dataclass(cls):
            raise TypeError(f"{cls.__name__} is not an event dataclass")
        hints = get_type_hints(cls, include_extras=True)
        found = {}
        for name in (f.name for f in fields(cls)):
            specs = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Field)]
            if len(specs) != 1:
                raise TypeError(f"{cls.__name__}.{name} needs exactly one wire type (Annotated[..., Field])")
            found[name] = specs[0]
        _SPECS[cls] = found
    return found
