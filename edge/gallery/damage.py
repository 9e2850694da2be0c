"""Reporting quarantined gallery rows: audited with the subject, alarmed once without it.

``report_damage`` takes every quarantined row not yet reported, names its subject where it can
(a readable sibling row, else the consent list's subjects), appends one ``gallery_quarantine``
audit record per row (the subject is in the audit log, for the operator who must re-enrol that
person), then emits one ``gallery_damaged`` alarm for the batch (a count, never a subject) and
marks the rows reported, in the gallery file, so a restart does not report them again. A failure
on the way (a full disk) leaves them unreported: the next call reports them.

``watch_damage`` reports what the gallery found when it opened and installs the callback that
reports rows quarantined later (a record that fails when an enrolment or deletion reads it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from edge.events.kinds import Alarm
from edge.gallery.store import Damage, Gallery

log = logging.getLogger(__name__)

ALARM = "gallery_damaged"
AUDIT_KIND = "gallery_quarantine"

AuditAppend = Callable[[str, dict[str, object]], int]


def report_damage(
    gallery: Gallery, audit: AuditAppend, emit: Callable[[Alarm], None], candidates: Iterable[str] = ()
) -> int:
    """Audit and alarm every quarantined row not reported yet; returns how many were reported."""
    if all(d.audit_seq is not None for d in gallery.damage()):
        return 0
    gallery.resolve_damage(candidates)
    new = [d for d in gallery.damage() if d.audit_seq is None]
    reported: list[tuple[Damage, int]] = []
    for d in new:
        details: dict[str, object] = {"item": d.item, "modality": d.modality, "reason": d.reason}
        if d.id:
            details["quarantine_id"] = d.id
        if d.subject is not None:
            details["subject"] = d.subject
        reported.append((d, audit(AUDIT_KIND, details)))
    emit(Alarm(ALARM, "warning", component="gallery", count=len(new)))
    gallery.mark_reported(reported)
    unnamed = sum(1 for d in new if d.subject is None)
    log.error(
        "gallery: %d damaged row(s) reported (audit records %s..%s)%s; fix: re-enrol the person each names",
        len(new),
        reported[0][1],
        reported[-1][1],
        f", {unnamed} without a known subject" if unnamed else "",
    )
    return len(new)


def watch_damage(
    gallery: Gallery,
    audit: AuditAppend,
    emit: Callable[[Alarm], None],
    candidates: Callable[[], Iterable[str]],
) -> None:
    """Report what is quarantined now, and every row quarantined from now on, as it happens."""

    def report() -> None:
        report_damage(gallery, audit, emit, candidates())

    gallery.on_damage = report
    try:
        report()
    except Exception as exc:  # a full disk: the rows stay unreported and are reported at the next chance
        log.error("reporting gallery damage failed (%s); retried when the next row is read", exc.__class__.__name__)
