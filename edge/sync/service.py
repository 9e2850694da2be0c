"""Site-wide enrolment: a gate shares what it enrols with the gates in the person's consent scope,
and stores what other gates share with it, under its own consent ledger. See docs/sync.md.

Sending (``share``): right after a local enrolment, while the captured templates are still in
memory (face embeddings before this gate's keyed transform; the sensor's own template bytes), one
sealed parcel per recipient: every other gate of the roster that has a sync key and stands where
the person's consent covers. Parcels go through the durable outbox as retained messages, so a gate
that is offline finds them when it connects.

Receiving (``on_message`` from the MQTT thread, ``process`` on the consent thread): a parcel is
opened only if a registered gate signed it for this gate; its subject must have consent in force
*here* (this gate's place, the ledger's purpose) and must not predate that consent. Face
templates are then enrolled through the enforcer (same lock, same audit, this gate's own keyed
transform); a fingerprint template waits, still sealed, for the sensor thread to write it into
the module (``install_waiting``). Every parcel is applied at most once, whatever the broker
redelivers, and once handled its retained message is cleared: ciphertext does not linger.

Refusals are audited (``sync_refused``: sender, parcel id, reason; the subject only once the
parcel was open) and never stop the service.
"""

from __future__ import annotations

import logging
import queue
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey
from numpy.typing import NDArray

from edge.audit.log import AuditLog
from edge.consent.enforce import Enforcer, EnrolmentRefused
from edge.consent.ledger import ConsentLedger
from edge.crypto.keys import device_id
from edge.errors import EdgeError
from edge.events.kinds import AnyEvent, Enrolment
from edge.events.sink import EventSink
from edge.modality import Modality
from edge.sync.parcel import (
    PARCEL_ID_SIZE,
    Contents,
    FaceTemplates,
    ParcelError,
    SensorTemplate,
    inbox_filter,
    open_parcel,
    seal,
)
from edge.sync.store import APPLIED, REFUSED, WAITING, SyncStore

log = logging.getLogger(__name__)

#: parcels kept in memory while they wait for a fresh or newer consent list
MAX_DEFERRED = 10_000


class RetainedOutbox(Protocol):
    """What the service needs of ``edge.transport.outbox.Outbox``."""

    def put(self, topic: str, payload: bytes, seq: int = 0, *, retain: bool = False) -> int: ...


class FaceGallery(Protocol):
    """What the service needs of ``edge.gallery.Gallery``: enrol raw templates (it applies this
    gate's own keyed transform) or a sensor slot."""

    def enrol(
        self,
        subject: str,
        modality: str,
        *,
        templates: Sequence[NDArray[np.floating[Any]]] = (),
        sensor_slot: int | None = None,
        model_id: str = "",
    ) -> object: ...


@dataclass(frozen=True)
class Outcome:
    """What became of one incoming message: ``applied``, ``waiting`` (for the sensor),
    ``refused`` (with a reason), ``duplicate``, ``cleared`` (an empty retained message) or
    ``deferred`` (the list is stale, or older than the sender's: retried when a fresh or newer one
    is in force)."""

    result: str
    reason: str = ""


class SiteSync:
    def __init__(
        self,
        *,
        site: str,
        identity: SigningKey,
        box: PrivateKey,
        ledger: ConsentLedger,
        enforcer: Enforcer,
        gallery: FaceGallery | None,
        store: SyncStore,
        outbox: RetainedOutbox,
        sink: EventSink,
        audit: AuditLog | None,
        face_model: str | None = None,
        sensor_family: str | None = None,
    ) -> None:
        self.site = site
        self.identity = identity
        self.me = device_id(identity.verify_key)
        self.box = box
        self.ledger = ledger
        self.enforcer = enforcer
        self.gallery = gallery
        self.store = store
        self.outbox = outbox
        self.sink = sink
        self.audit = audit
        self.face_model = face_model
        self.sensor_family = sensor_family
        self._generation = -1  # the ledger generation whose consent the sent parcels were checked against
        #: the face models are still loading (the agent's start): face parcels wait instead of being
        #: refused as model_mismatch against a model not yet known
        self.face_pending = False
        self._incoming: queue.Queue[tuple[str, bytes]] = queue.Queue()
        #: topic -> (parcel, the list version it waits for; 0: any fresh list)
        self._deferred: dict[str, tuple[bytes, int]] = {}

    @property
    def subscription(self) -> str:
        return inbox_filter(self.site, self.me)

    # ------------------------------------------------------------------ sending

    def recipients(self, subject: str, modality: str, now: float) -> list[tuple[str, PublicKey]]:
        """Gates other than this one, with a sync key, where ``subject``'s consent for ``modality``
        is in force (any purpose: each recipient checks its own)."""
        entry = self.ledger.entry(subject)
        if entry is None:
            return []
        out: list[tuple[str, PublicKey]] = []
        for gate in sorted(self.ledger.gates().values(), key=lambda g: g.id):
            if gate.id == self.me or gate.box_key is None:
                continue
            if entry.allows(modality, None, now, gate.place()):
                out.append((gate.id, PublicKey(gate.box_key)))
        return out

    def share_face(
        self, subject: str, vectors: Sequence[NDArray[np.floating[Any]]], model: str, enrolled_at: int, now: float
    ) -> list[str]:
        """Seal face embeddings (unit vectors, before any keyed transform) for every in-scope gate."""
        raw = [np.asarray(v, dtype=np.float64) for v in vectors]
        units = tuple((v / np.linalg.norm(v)).astype("<f4").tobytes() for v in raw)
        templates = FaceTemplates(model, int(raw[0].shape[0]), units)
        contents = Contents(subject, Modality.face, enrolled_at, self._version(), face=templates)
        return self._share(contents, now)

    def share_fingerprint(self, subject: str, template: bytes, family: str, enrolled_at: int, now: float) -> list[str]:
        """Seal the sensor's own template (UpChar of the enrolled slot) for every in-scope gate."""
        contents = Contents(
            subject, Modality.fingerprint, enrolled_at, self._version(), fingerprint=SensorTemplate(family, template)
        )
        return self._share(contents, now)

    def _version(self) -> int:
        return self.ledger.version or 0

    def _share(self, contents: Contents, now: float) -> list[str]:
        sent: list[str] = []
        for gate, box in self.recipients(contents.subject, contents.modality, now):
            parcel = secrets.token_bytes(PARCEL_ID_SIZE)
            topic, message = seal(
                contents,
                site=self.site,
                sender_key=self.identity,
                recipient=gate,
                recipient_box_key=box,
                parcel_id=parcel,
                issued_at=int(now),
            )
            self.outbox.put(topic, message, retain=True)
            self.store.sent(parcel, gate, topic, contents.subject, contents.modality, now)
            sent.append(gate)
        if sent and self.audit is not None:
            self.audit.append(
                "sync_sent", {"subject": contents.subject, "modality": contents.modality, "recipients": sent}, at=now
            )
        log.info("shared a %s enrolment with %s gate(s)", contents.modality, len(sent))
        return sent

    def recall(self, now: float) -> int:
        """Clear from the broker the parcels this gate sent that the list in force no longer allows
        at their recipient (the person withdrew, their scope or the gate moved, the gate left the
        roster): a recipient that has not fetched one yet never will, and its ciphertext does not
        wait on the broker for a gate that would refuse it. Returns how many were recalled."""
        gates = self.ledger.gates()
        recalled: list[str] = []
        for topic, recipient, subject, modality in self.store.sent_parcels():
            entry = self.ledger.entry(subject)
            gate = gates.get(recipient)
            if entry is not None and gate is not None and entry.allows(modality, None, now, gate.place()):
                continue
            self._clear(topic)
            recalled.append(topic)
        if recalled:
            self.store.forget_sent(recalled)
            log.info("recalled %s template parcel(s) the consent in force no longer allows", len(recalled))
        return len(recalled)

    # ------------------------------------------------------------------ receiving

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """From the MQTT thread: queue only (opening a parcel is work for the consent thread)."""
        self._incoming.put((topic, bytes(payload)))

    def process(self, now: float) -> list[Outcome]:
        """Handle everything queued, and deferred parcels once the list they wait for is in force;
        never raises."""
        outcomes: list[Outcome] = []
        if self.ledger.generation != self._generation:
            self._generation = self.ledger.generation
            try:
                self.recall(now)
            except Exception as exc:  # a store problem: the parcels stay retained, retried on the next list
                log.error("sent parcels could not be recalled: %s", exc.__class__.__name__)
        if self._deferred and not self.ledger.is_stale(now):
            version = self._version()
            for topic, (payload, wanted) in sorted(self._deferred.items()):
                if wanted <= version:
                    self._incoming.put((topic, payload))
                    del self._deferred[topic]
        while True:
            try:
                topic, payload = self._incoming.get_nowait()
            except queue.Empty:
                return outcomes
            try:
                outcomes.append(self.apply(topic, payload, now))
            except Exception as exc:  # a bug must not stop the consent thread; the parcel stays retained
                log.error("template parcel on %s could not be handled: %s", topic[:120], exc.__class__.__name__)
                outcomes.append(Outcome(REFUSED, "internal_error"))

    def _senders(self) -> Mapping[str, VerifyKey]:
        return {g.id: VerifyKey(g.public_key) for g in self.ledger.gates().values()}

    def apply(self, topic: str, payload: bytes, now: float) -> Outcome:
        """Handle one message from this gate's inbox."""
        parts = topic.split("/")
        if len(parts) != 6 or parts[:4] != ["sites", self.site, "sync", self.me]:
            return Outcome(REFUSED, "not-for-us")  # the subscription makes this unreachable
        sender, parcel_hex = parts[4], parts[5]
        try:
            parcel = bytes.fromhex(parcel_hex)
        except ValueError:
            parcel = b""
        if len(parcel) != PARCEL_ID_SIZE:
            self._refuse(topic, None, sender, "bad-address", now)
            self._clear(topic)
            return Outcome(REFUSED, "bad-address")
        if not payload:
            return Outcome("cleared")
        if self.store.seen(parcel) is not None:
            self._clear(topic)
            return Outcome("duplicate")
        try:
            opened = open_parcel(
                payload, topic, site=self.site, recipient_key=self.box, recipient=self.me, senders=self._senders()
            )
        except ParcelError as exc:
            return self._refuse(topic, parcel, sender, exc.reason, now)
        contents = opened.contents
        if self.ledger.is_stale(now):
            return self._defer(topic, payload, 0, "consent_stale")  # a fresh list decides
        if contents.face is not None and self.face_model is None and self.face_pending:
            return self._defer(topic, payload, 0, "face_models_loading")  # retried once they are loaded
        reason = self._consent_problem(contents, now)
        if reason == "no_consent" and contents.consent_version > self._version():
            # the sender enrolled under a list this gate has not applied yet (it was offline, or the
            # parcel overtook the list): that list decides, not the older one in force here
            return self._defer(topic, payload, contents.consent_version, "consent_newer")
        if reason is None and contents.face is not None and contents.face.model != self.face_model:
            reason = "model_mismatch"
        if reason is None and contents.fingerprint is not None and contents.fingerprint.family != self.sensor_family:
            reason = "sensor_mismatch"
        if reason is not None:
            return self._refuse(topic, parcel, sender, reason, now, contents)
        if contents.fingerprint is not None:
            self.store.record(
                parcel, sender, topic, WAITING, now, subject=contents.subject, modality="fingerprint", message=payload
            )
            return Outcome(WAITING)
        assert contents.face is not None
        face = contents.face
        vectors = [np.frombuffer(v, dtype="<f4").astype(np.float32) for v in face.vectors]
        gallery = self.gallery
        if gallery is None:
            return self._refuse(topic, parcel, sender, "model_mismatch", now, contents)
        try:
            self.enforcer.enrol(
                contents.subject,
                "face",
                now,
                lambda: gallery.enrol(contents.subject, "face", templates=vectors, model_id=face.model),
                source=sender,
            )
        except EnrolmentRefused as exc:
            return self._refuse(topic, parcel, sender, exc.reason, now, contents)
        return self._applied(topic, parcel, sender, contents, now)

    def _defer(self, topic: str, payload: bytes, wanted: int, reason: str) -> Outcome:
        """Keep a parcel in memory until the list it needs is in force; the broker keeps it too (it
        is retained until handled), so one dropped here at the bound comes back at the next connect."""
        if topic not in self._deferred and len(self._deferred) >= MAX_DEFERRED:
            log.warning(
                "more than %s template parcels wait for a consent list: the rest stay on the broker", MAX_DEFERRED
            )
        else:
            self._deferred[topic] = (payload, wanted)
        return Outcome("deferred", reason)

    def _consent_problem(self, contents: Contents, now: float) -> str | None:
        if not self.ledger.allows(contents.subject, contents.modality, self.enforcer.purpose, now):
            return "no_consent"
        entry = self.ledger.entry(contents.subject)
        if entry is not None and contents.enrolled_at < entry.granted_at:
            return "older_than_consent"  # captured before the consent in force (e.g. a replay after re-consent)
        return None

    def install_waiting(self, install: Callable[[bytes], int], remove: Callable[[int], None], now: float) -> int:
        """On the sensor thread: write every waiting fingerprint parcel into the module (``install``
        returns the slot it stored the template in) and enrol the slot; a slot whose enrolment is
        then refused (consent changed meanwhile) is erased again with ``remove``. Returns how many
        were enrolled."""
        done = 0
        for item in self.store.waiting():
            sender = item.topic.split("/")[4]
            try:
                opened = open_parcel(
                    item.message,
                    item.topic,
                    site=self.site,
                    recipient_key=self.box,
                    recipient=self.me,
                    senders=self._senders(),
                )
            except ParcelError as exc:  # the sender left the roster while the parcel waited
                self._refuse(item.topic, item.parcel, sender, exc.reason, now)
                continue
            contents = opened.contents
            reason = self._consent_problem(contents, now)
            if reason is not None:
                self._refuse(item.topic, item.parcel, sender, reason, now, contents)
                continue
            assert contents.fingerprint is not None
            try:
                slot = install(contents.fingerprint.template)
            except EdgeError as exc:  # the sensor is down or full: keep waiting, say why once per pass
                log.warning("a synced fingerprint could not be written to the sensor yet: %s", exc.one_line())
                return done
            try:
                self._enrol_slot(contents.subject, slot, sender, now)
            except EnrolmentRefused as exc:
                remove(slot)
                self._refuse(item.topic, item.parcel, sender, exc.reason, now, contents)
                continue
            self._applied(item.topic, item.parcel, sender, contents, now)
            done += 1
        return done

    def _enrol_slot(self, subject: str, slot: int, sender: str, now: float) -> None:
        gallery = self.gallery
        if gallery is None:
            raise EnrolmentRefused("fingerprint", "no_consent")
        self.enforcer.enrol(
            subject, "fingerprint", now, lambda: gallery.enrol(subject, "fingerprint", sensor_slot=slot), source=sender
        )

    # ------------------------------------------------------------------ outcomes

    def _applied(self, topic: str, parcel: bytes, sender: str, contents: Contents, now: float) -> Outcome:
        self.store.record(parcel, sender, topic, APPLIED, now, subject=contents.subject, modality=contents.modality)
        self._clear(topic)
        self._emit(Enrolment(contents.subject, contents.modality, "enrolled", "synced", self._version()))
        log.info("stored a %s enrolment synced from another gate", contents.modality)
        return Outcome(APPLIED)

    def _refuse(
        self,
        topic: str,
        parcel: bytes | None,
        sender: str,
        reason: str,
        now: float,
        contents: Contents | None = None,
    ) -> Outcome:
        details: dict[str, object] = {"reason": reason}
        if sender.startswith("gw-") and len(sender) == 19:
            details["sender"] = sender
        if parcel is not None:
            details["parcel"] = parcel.hex()
        if contents is not None:
            details["subject"] = contents.subject
            details["modality"] = contents.modality
        if self.audit is not None:
            try:
                self.audit.append("sync_refused", details, at=now)
            except EdgeError as exc:  # a sender id the allow-list refuses: keep the reason
                log.error("sync refusal not audited: %s", exc.one_line())
        log.warning("refused a template parcel: %s", reason)
        if parcel is not None:
            self.store.record(parcel, sender, topic, REFUSED, now)
            self._clear(topic)
        return Outcome(REFUSED, reason)

    def _clear(self, topic: str) -> None:
        """An empty retained message: the broker drops the handled parcel."""
        self.outbox.put(topic, b"", retain=True)

    def _emit(self, event: AnyEvent) -> None:
        try:
            self.sink.emit(event)
        except Exception as exc:
            log.error("event sink refused a %s event: %s", event.kind, exc.__class__.__name__)
