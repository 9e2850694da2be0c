"""The gallery as the consent enforcer's biometric stores: one view per modality.

A withdrawal of one modality deletes only that modality's data (the person keeps what they still
consent to). A face template lives in the gallery, so its deletion is done when ``delete_subject``
returns. A fingerprint template lives in the sensor's flash: ``schedule_deletion`` queues the slots
(persisted) before it drops the gallery record, and the enforcer signs that receipt only when the
sensor has erased them (``edge.fingerprint.erasure``).
"""

from __future__ import annotations

from collections.abc import Mapping

from edge.fingerprint.erasure import EraseQueue, PendingErase
from edge.gallery.store import Gallery


class FaceStore:
    name = "face"
    modality = "face"

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery

    def subjects(self) -> set[str]:
        return self.gallery.subjects("face")

    def has_subject(self, subject: str) -> bool:
        return subject in self.gallery.subjects("face")

    def delete_subject(self, subject: str) -> Mapping[str, object]:
        report = self.gallery.delete_subject(subject, "face")
        return {"templates": int(report.face_templates), "slots": [], "modalities": list(report.modalities)}


class FingerprintStore:
    """The gallery's fingerprint records (subject -> sensor slots) and the sensor's erase queue."""

    name = "fingerprint"
    modality = "fingerprint"

    def __init__(self, gallery: Gallery, queue: EraseQueue) -> None:
        self.gallery = gallery
        self.queue = queue

    def subjects(self) -> set[str]:
        return self.gallery.subjects("fingerprint")

    def has_subject(self, subject: str) -> bool:
        return subject in self.gallery.subjects("fingerprint")

    def schedule_deletion(self, subject: str, reason: str, list_version: int) -> int:
        """Queue the subject's slots for erasure (persisted first), then drop the gallery record."""
        slots = self.gallery.slots_of(subject)
        self.queue.add(PendingErase(slot, subject, reason, list_version) for slot in slots)
        self.gallery.delete_subject(subject, "fingerprint")
        return len(slots)
