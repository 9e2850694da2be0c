"""Site sync between real gate stores: a person enrolled at one gate is matched at the others in
scope, under each gate's own consent ledger, transform and audit log.

Three gates of site `hq` share one consent authority: A and B stand in the lobby, C in the car
park. Each has its real ledger, enforcer, gallery, audit log, outbox and sync store. The broker is
played by moving the retained rows of one gate's outbox into another's inbox (the MQTT path is
tested in tests/transport and the multi-gate demo).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.audit.log import AuditLog
from edge.consent import trust
from edge.consent.authority import Authority
from edge.consent.enforce import Enforcer
from edge.consent.ledger import ConsentLedger
from edge.consent.listformat import Gate, make_entry
from edge.crypto.keys import device_id
from edge.events.sink import MemorySink
from edge.gallery.store import Gallery
from edge.gallery.stores import FaceStore
from edge.state import StateDir
from edge.sync.service import SiteSync
from edge.sync.store import SyncStore
from edge.transport.outbox import Outbox

SITE = "hq"
PURPOSE = "access:main-gate"
T0 = 1_800_000_000.0
MODEL = "dlib_resnet_v1"


@dataclass
class Terminal:
    name: str
    identity: SigningKey
    box: PrivateKey
    state: StateDir
    ledger: ConsentLedger
    enforcer: Enforcer
    gallery: Gallery
    outbox: Outbox
    audit: AuditLog
    sink: MemorySink
    sync: SiteSync

    @property
    def id(self) -> str:
        return device_id(self.identity.verify_key)

    def gate(self, *zones: str) -> Gate:
        return Gate(self.id, bytes(self.identity.verify_key), bytes(self.box.public_key), frozenset(zones))

    def close(self) -> None:
        for closer in (
            self.sync.store.close,
            self.gallery.close,
            self.ledger.close,
            self.outbox.close,
            self.audit.close,
        ):
            closer()


def _terminal(tmp_path: Path, name: str, authority: Authority, seed: int) -> Terminal:
    state = StateDir(tmp_path / name)
    state.ensure()
    for pub in authority.root.glob("consent-authority-*.pub"):
        trust.pin(state, bytes.fromhex(pub.read_text()))
    identity = SigningKey(bytes([seed]) * 32)
    box = PrivateKey(bytes([seed + 100]) * 32)
    me = device_id(identity.verify_key)
    audit = AuditLog.open(state.audit_db, identity, synchronous="NORMAL")
    ledger = ConsentLedger.open(state, SITE, grace_period_s=3600.0, audit=audit, device=me)
    gallery = Gallery.open(state, create_key=True)
    sink = MemorySink()
    enforcer = Enforcer(ledger, [FaceStore(gallery)], sink, audit, purpose=PURPOSE)
    outbox = Outbox(state.root / "outbox.sqlite3")
    sync = SiteSync(
        site=SITE,
        identity=identity,
        box=box,
        ledger=ledger,
        enforcer=enforcer,
        gallery=gallery,
        store=SyncStore(state.root / "sync.sqlite3"),
        outbox=outbox,
        sink=sink,
        audit=audit,
        face_model=MODEL,
        sensor_family="r503",
    )
    return Terminal(name, identity, box, state, ledger, enforcer, gallery, outbox, audit, sink, sync)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Authority, Terminal, Terminal, Terminal]]:
    authority = Authority(tmp_path / "authority")
    authority.keygen(SITE)
    a, b, c = (_terminal(tmp_path, n, authority, i) for i, n in enumerate("abc", start=1))
    authority.set_gates(sorted([a.gate("lobby"), b.gate("lobby"), c.gate("car-park")], key=lambda g: g.id))
    yield authority, a, b, c
    for t in (a, b, c):
        t.close()


def _issue(authority: Authority, terminals: list[Terminal], now: float, **entries: object) -> None:
    message, _ = authority.issue(entries, now=now)  # type: ignore[arg-type]
    for t in terminals:
        t.enforcer.apply(message, now)


def _entry(subject: str, *modalities: str, granted: float = T0 - 100, **kw: object) -> object:
    return make_entry(subject, [PURPOSE], modalities, int(granted), **kw)  # type: ignore[arg-type]


def _retained(sender: Terminal, recipient: Terminal) -> list[tuple[str, bytes]]:
    """The broker: retained rows of ``sender``'s outbox addressed to ``recipient``."""
    prefix = f"sites/{SITE}/sync/{recipient.id}/"
    return [(e.topic, e.payload) for e in sender.outbox.pending(limit=1000) if e.retain and e.topic.startswith(prefix)]


def _deliver(sender: Terminal, recipient: Terminal, now: float) -> list[str]:
    for topic, payload in _retained(sender, recipient):
        recipient.sync.on_message(topic, payload, True)
    return [o.result for o in recipient.sync.process(now)]


def _faces(n: int = 3, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 128))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_face_enrolled_at_one_gate_is_matched_at_the_others_in_scope_only(site) -> None:
    authority, a, b, c = site
    _issue(authority, [a, b, c], T0, **{"p-1": _entry("p-1", "face", scope=["lobby"])})
    faces = _faces()
    a.enforcer.enrol("p-1", "face", T0, lambda: a.gallery.enrol("p-1", "face", templates=list(faces), model_id=MODEL))
    assert a.sync.share_face("p-1", list(faces), MODEL, int(T0), T0) == [b.id]  # C stands outside the scope
    assert _retained(a, c) == []
    assert _deliver(a, b, T0 + 1) == ["applied"]
    # B matches the person with its own transform: same decision, different stored vectors
    hit = b.gallery.search(faces[0], k=2)
    assert hit.subject == "p-1"
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert b.gallery.subjects("face") == {"p-1"}
    assert c.gallery.subjects("face") == set()
    # audited at both ends; an enrolment event names the sync; the handled parcel is cleared
    assert [r.details["recipients"] for r in a.audit.records() if r.kind == "sync_sent"] == [[b.id]]
    (record,) = [r for r in b.audit.records() if r.kind == "enrolment"]
    assert record.details["source"] == a.id
    (event,) = b.sink.of_kind("enrolment")
    assert (event["subject"], event["result"], event["reason"]) == ("p-1", "enrolled", "synced")
    cleared = [e for e in b.outbox.pending(limit=100) if e.retain and e.payload == b""]
    assert [e.topic for e in cleared] == [t for t, _ in _retained(a, b)]


def test_a_redelivered_parcel_is_applied_once(site) -> None:
    authority, a, b, _ = site
    _issue(authority, [a, b], T0, **{"p-1": _entry("p-1", "face")})
    a.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0)
    assert _deliver(a, b, T0 + 1) == ["applied"]
    assert _deliver(a, b, T0 + 2) == ["duplicate"]  # a reconnect brings the retained message again
    assert len([r for r in b.audit.records() if r.kind == "enrolment"]) == 1


def test_a_parcel_for_someone_who_withdrew_meanwhile_is_refused_and_nothing_stored(site) -> None:
    authority, a, b, _ = site
    _issue(authority, [a, b], T0, **{"p-1": _entry("p-1", "face")})
    a.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0)
    message, _ = authority.withdraw("p-1", now=T0 + 5)
    b.enforcer.apply(message, T0 + 5)  # B was offline during the enrolment, gets the withdrawal first
    assert _deliver(a, b, T0 + 6) == ["refused"]
    assert b.gallery.subjects("face") == set()
    (refusal,) = [r for r in b.audit.records() if r.kind == "sync_refused"]
    assert (refusal.details["reason"], refusal.details["sender"], refusal.details["subject"]) == (
        "no_consent",
        a.id,
        "p-1",
    )


def test_a_template_captured_before_the_consent_in_force_is_refused(site) -> None:
    """A person withdrew and consented again later: a parcel captured under the old consent (here
    replayed from the broker) is refused; only a fresh enrolment counts."""
    authority, a, b, _ = site
    _issue(authority, [a, b], T0, **{"p-1": _entry("p-1", "face", granted=T0 + 50)})
    a.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0 + 60)  # captured before granted_at
    assert _deliver(a, b, T0 + 61) == ["refused"]
    assert [r.details["reason"] for r in b.audit.records() if r.kind == "sync_refused"] == ["older_than_consent"]


def test_a_stale_list_defers_the_parcel_until_a_fresh_one_arrives(site) -> None:
    authority, a, b, _ = site
    _issue(authority, [a, b], T0, **{"p-1": _entry("p-1", "face")})
    a.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0)
    late = T0 + 8 * 86400  # past the list's validity and the grace period
    assert _deliver(a, b, late) == ["deferred"]
    assert b.gallery.subjects("face") == set()
    _issue(authority, [b], late, **{"p-1": _entry("p-1", "face")})
    assert [o.result for o in b.sync.process(late + 1)] == ["applied"]
    assert b.gallery.subjects("face") == {"p-1"}


def test_a_gate_not_on_the_roster_cannot_send_and_another_model_is_refused(site, tmp_path: Path) -> None:
    authority, a, b, _ = site
    _issue(authority, [a, b], T0, **{"p-1": _entry("p-1", "face")})
    rogue = _terminal(tmp_path, "rogue", authority, 9)  # registered nowhere: not in the roster
    try:
        message, _ = authority.issue({"p-1": _entry("p-1", "face")}, now=T0)  # type: ignore[dict-item]
        rogue.enforcer.apply(message, T0)
        # the rogue gate reads the roster from the list and seals to B's key properly
        sent = rogue.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0)
        assert b.id in sent
        assert _deliver(rogue, b, T0 + 1) == ["refused"]
        assert [r.details["reason"] for r in b.audit.records() if r.kind == "sync_refused"] == ["unknown-sender"]
        b.sync.face_model = "another-model"
        a.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0 + 2)
        assert _deliver(a, b, T0 + 3) == ["refused"]
        assert b.gallery.subjects("face") == set()
    finally:
        rogue.close()


def test_a_synced_fingerprint_waits_sealed_for_the_sensor_and_a_withdrawal_meanwhile_never_reaches_it(site) -> None:
    authority, a, b, c = site
    _issue(authority, [a, b], T0, **{"p-2": _entry("p-2", "fingerprint"), "p-3": _entry("p-3", "fingerprint")})
    template = bytes(range(256)) * 6  # 1536 bytes, an R503 char file
    for subject in ("p-2", "p-3"):  # whole-site consent: both other gates
        assert a.sync.share_fingerprint(subject, template, "r503", int(T0), T0) == sorted([b.id, c.id])
    assert _deliver(a, b, T0 + 1) == ["waiting", "waiting"]
    # waiting parcels are kept as they came: sealed, so the template is not on B's disk in clear
    raw = (b.state.root / "sync.sqlite3").read_bytes() + (b.state.root / "sync.sqlite3-wal").read_bytes()
    assert template[:64] not in raw
    message, _ = authority.withdraw("p-3", now=T0 + 2)  # p-3 withdraws before the sensor gets to it
    b.enforcer.apply(message, T0 + 2)
    sensor: dict[int, bytes] = {}

    def install(data: bytes) -> int:
        slot = len(sensor) + 10
        sensor[slot] = data
        return slot

    assert b.sync.install_waiting(install, sensor.pop, T0 + 3) == 1
    assert list(sensor.values()) == [template]
    assert b.gallery.subjects("fingerprint") == {"p-2"}
    assert b.gallery.subject_for_slot(10) == "p-2"
    assert [r.details["reason"] for r in b.audit.records() if r.kind == "sync_refused"] == ["no_consent"]
    assert b.sync.install_waiting(install, sensor.pop, T0 + 4) == 0  # nothing left waiting


def test_a_parcel_sealed_under_a_newer_list_waits_for_that_list_instead_of_being_refused(site) -> None:
    """B was offline when p-2 consented (list v2) and A enrolled and shared p-2 at once: B sees the
    parcel while still under v1, which does not know p-2. Tried: deliver under v1 (deferred, not
    refused, not cleared from the broker, nothing stored), then apply v2 (applied on the next pass)."""
    authority, a, b, _ = site
    _issue(authority, [a, b], T0, **{"p-1": _entry("p-1", "face")})
    message, _ = authority.issue({"p-1": _entry("p-1", "face"), "p-2": _entry("p-2", "face")}, now=T0 + 10)  # type: ignore[dict-item]
    a.enforcer.apply(message, T0 + 10)  # only A got list v2
    assert b.id in a.sync.share_face("p-2", list(_faces()), MODEL, int(T0 + 11), T0 + 11)
    assert _deliver(a, b, T0 + 12) == ["deferred"]
    assert b.gallery.subjects("face") == set()
    assert not [r for r in b.audit.records() if r.kind == "sync_refused"]
    assert not [e for e in b.outbox.pending(limit=100) if e.retain and e.payload == b""]  # still on the broker
    assert b.sync.process(T0 + 13) == []  # still v1: nothing retried
    b.enforcer.apply(message, T0 + 14)
    assert [o.result for o in b.sync.process(T0 + 15)] == ["applied"]
    assert b.gallery.subjects("face") == {"p-2"}


def test_the_agent_handles_a_parcel_as_it_arrives_not_at_the_next_tick(site) -> None:
    """``edge.sync.wiring.attach``, as the agent's assembly calls it: the inbox is subscribed, an
    inbox message goes to sync and wakes the consent thread, any other message to the consent
    receiver. Tried: a consent thread whose next tick is an hour away (after its first one), the
    parcel and a list topic routed as the MQTT thread routes them; B stores the face regardless."""
    import threading
    import time

    from edge.agent.subsystems import ConsentService
    from edge.sync.wiring import attach

    authority, a, b, _ = site
    _issue(authority, [a, b], T0, **{"p-1": _entry("p-1", "face")})
    a.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0)
    consent = ConsentService(b.enforcer, b.sink, tick_s=3600.0, clock=lambda: T0 + 1)
    ticked = threading.Event()
    consent.hooks.append(lambda _now: ticked.set())
    subscriptions = [f"sites/{SITE}/consent"]
    others: list[str] = []
    route = attach(b.sync, consent, subscriptions, lambda topic, _p, _r: others.append(topic))
    assert subscriptions == [f"sites/{SITE}/consent", f"sites/{SITE}/sync/{b.id}/+/+"]
    consent.start()
    try:
        assert ticked.wait(20)  # the first tick is over: the next is an hour away
        route(f"sites/{SITE}/consent", b"list bytes", True)
        for topic, payload in _retained(a, b):
            route(topic, payload, True)
        deadline = time.monotonic() + 20
        while b.gallery.subjects("face") != {"p-1"} and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        consent.stop()
    assert b.gallery.subjects("face") == {"p-1"}
    assert others == [f"sites/{SITE}/consent"]


def test_a_withdrawal_recalls_the_parcels_not_yet_fetched_and_keeps_the_others(site) -> None:
    """C (car park) is offline when A shares p-1 (whole site) and p-2 (whole site); p-1 then
    withdraws. A clears p-1's parcels from the broker (an empty retained publish on each topic it
    sent them to) and forgets them; p-2's stay. Tried: the recall once the list changes, then again
    with no change (nothing more cleared)."""
    authority, a, b, c = site
    _issue(authority, [a], T0, **{"p-1": _entry("p-1", "face"), "p-2": _entry("p-2", "face")})
    assert a.sync.share_face("p-1", list(_faces()), MODEL, int(T0), T0) == sorted([b.id, c.id])
    a.sync.share_face("p-2", list(_faces(seed=6)), MODEL, int(T0), T0)
    p1_topics = sorted(a.sync.store.sent_topics("p-1"))
    assert a.sync.process(T0 + 1) == []  # nothing to recall under the list that allowed them
    assert not [e for e in a.outbox.pending(limit=100) if e.retain and e.payload == b""]
    message, _ = authority.withdraw("p-1", now=T0 + 5)
    a.enforcer.apply(message, T0 + 5)
    a.sync.process(T0 + 6)
    cleared = sorted(e.topic for e in a.outbox.pending(limit=100) if e.retain and e.payload == b"")
    assert cleared == p1_topics
    assert a.sync.store.sent_topics("p-1") == []
    assert len(a.sync.store.sent_topics("p-2")) == 2
    a.sync.process(T0 + 7)
    assert len([e for e in a.outbox.pending(limit=100) if e.retain and e.payload == b""]) == len(p1_topics)
