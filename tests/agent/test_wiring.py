"""The real wiring: the gate's and the enforcer's events pass the egress guard, and a built agent
(provisioned with the installer's commands) takes lists from the retained consent topic, grants a
card and publishes signed events a site verifier accepts, against a real Mosquitto."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent.decide import LanePolicy
from edge.agent.gate import GateCore, GateSettings
from edge.config.schema import PolicySection
from edge.consent.enforce import Deletion
from edge.door import DoorController, SimLines
from edge.events.guard import check
from edge.events.kinds import AnyEvent
from edge.events.schema import validate
from edge.modality import Modality
from edge.testing.mosquitto import Mosquitto
from provisioning.enrol import _enrolled
from tests.agent.doubles import Credential, FakeClock, Match, MemoryConsent, MemoryGallery, near, unit


class GuardedSink:
    """Every body goes through the real egress guard, as in the agent."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def emit(self, event: AnyEvent) -> None:
        self.events.append((event.kind, check(event.kind, event.body())))


def test_every_event_the_gate_raises_passes_the_egress_guard() -> None:
    """Grants by face, finger and card, denials, a two-factor grant, device alarms and health: all in schema form."""
    clock = FakeClock()
    gallery = MemoryGallery()
    alice = unit(1)
    gallery.faces["alice"] = alice
    gallery.faces["bob"] = unit(2)
    gallery.slots[3] = "alice"
    consent = MemoryConsent(
        consents={("alice", "face"), ("alice", "fingerprint")}, credentials={("card", "1234"): "carol"}
    )
    guarded = GuardedSink()
    core = GateCore(
        gallery=gallery,
        consent=consent,
        policy=LanePolicy(PolicySection(), 0.6),
        door=DoorController(SimLines()),
        sink=guarded,
        settings=GateSettings(gate="north-1"),
        clock=clock,
    )
    core.on_face(gallery.search(near(alice, 1)))
    clock.advance(10)
    core.on_finger(Match(3, 120))
    clock.advance(10)
    core.on_face(gallery.search(unit(99)))  # nobody
    core.on_credential(Credential("card", "1234"))  # carol: no biometric consent, card path
    core.on_credential(Credential("card", "9999"))  # unknown card
    core.device_failed("camera", OSError("unplugged"))
    core.device_ok("camera")
    core.emit_health()
    kinds = [k for k, _ in guarded.events]
    assert kinds.count("access") == 5
    assert {"alarm", "health"} <= set(kinds)
    access = [b for k, b in guarded.events if k == "access"]
    assert [(b["decision"], b["modality"]) for b in access] == [
        ("granted", "face"),
        ("granted", "fingerprint"),
        ("denied", "face"),
        ("granted", "card"),
        ("denied", "card"),
    ]
    assert access[0]["door"] == "north-1"
    alarms = [b for k, b in guarded.events if k == "alarm"]
    assert [(a["code"], a["state"], a.get("component")) for a in alarms] == [
        ("device_failed", "raised", "camera"),
        ("device_failed", "cleared", "camera"),
    ]
    health = next(b for k, b in guarded.events if k == "health")
    assert health["modalities"] == ["face"]


def test_two_factor_grants_receipts_and_stale_alarms_are_built_in_schema_form() -> None:
    """The bodies used to be translated from the producers' own words (``face+card`` split again,
    ``granted: True``); the producers now build the published events. Tried: a two-factor grant
    through the real gate, a receipt for a face store that also reported a slot, and the
    enforcer's stale-list alarm, each through the real egress guard."""
    guarded = GuardedSink()
    consent = MemoryConsent(consents={("s1", "face")}, credentials={("card", "77"): "s1"})
    gallery = MemoryGallery()
    gallery.faces["s1"] = unit(5)
    core = GateCore(
        gallery=gallery,
        consent=consent,
        policy=LanePolicy(PolicySection(mode="face_and_card"), 0.6),
        door=DoorController(SimLines()),
        sink=guarded,
        settings=GateSettings(gate="g"),
        clock=FakeClock(),
    )
    core.on_face(gallery.search(near(unit(5), 1)))
    core.on_credential(Credential("card", "77"))
    (two,) = [b for k, b in guarded.events if k == "access"]
    assert validate("access", two)["reason"] == "granted_two_factor"
    assert (two["decision"], two["modality"], two["door"]) == ("granted", "face", "g")
    deletion = Deletion(
        "s1",
        (
            ("face", "face", {"templates": 3, "slots": [4], "modalities": ["face", "fingerprint"]}),
            ("fingerprint", "fingerprint", {}),
        ),
        "not-in-list",
        7,
        1_800_000_000.5,
    )
    receipt = deletion.receipt().body()
    assert validate("deletion_receipt", receipt) == {
        "subject": "s1",
        "deleted": ["face", "fingerprint"],
        "records": 4,
        "reason": "not_listed",
        "consent_version": 7,
        "deleted_at": 1_800_000_000,
    }
    # the enforcer's stale-list alarm: tests/consent/test_consent_enforce.py checks its whole body
    enrolment = _enrolled("s1", Modality.face, duplicate_of="s2").body()
    assert validate("enrolment", enrolment)["reason"] == "possible_duplicate"


# ----------------------------------------------------------------------------------------- live


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return tmp_path / "site"


def collect(broker: Mosquitto, registry: Path, out: list[Any], stop: threading.Event) -> threading.Thread:
    from edge.cli.site_listen import Listener
    from edge.site.registry import Registry
    from edge.site.verifier import Verifier
    from edge.transport.mqtt import MqttSettings

    class Sink:
        def write(self, text: str) -> None:
            for line in text.splitlines():
                out.append(json.loads(line))

        def flush(self) -> None:
            pass

    listener = Listener(
        MqttSettings.from_url(broker.url),
        Verifier(Registry.load(registry)),
        Sink(),  # type: ignore[arg-type]
        None,
        share=None,
        site="+",
        client_id=None,
    )
    thread = threading.Thread(
        target=lambda: listener.run(count=None, timeout_s=None, stop=stop), name="listener", daemon=True
    )
    thread.start()
    assert listener.subscribed.wait(10)
    return thread


def wait_for(predicate: Any, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.mark.parametrize(
    ("reader", "card"),
    [
        ({"card": "sim"}, "0042-1337"),
        # the same card path through the Wiegand codec: the simulated D0/D1 lines carry the number
        ({"card": "wiegand", "wiegand_formats": ["H10301"]}, "1191993"),
    ],
    ids=["sim", "wiegand"],
)
def test_a_built_agent_takes_the_retained_list_and_grants_a_card_in_signed_events(
    tmp_path: Path, broker: Mosquitto, reader: dict[str, Any], card: str
) -> None:
    from edge.agent.wiring import build, run_agent
    from edge.config.load import load_config
    from edge.consent.distribution import Broker, publish_list
    from edge.demo.stack import CARD_ONLY, SiteAuthority, device_public_key, provision_terminal
    from edge.ops.notify import Notifier
    from edge.state import StateDir

    authority = SiteAuthority(tmp_path / "site", "site-1")
    now = time.time()
    message = authority.issue([authority.entry("visitor-7", [], granted_at=int(now) - 60, card=card)], now=now)
    publish_list(Broker(broker.url), "site-1", message)  # retained before the agent exists
    state_root = tmp_path / "state"
    config_path = provision_terminal(
        state_root,
        authority,
        broker_url=broker.url,
        settings={**CARD_ONLY, "metrics": {"enabled": False}, "credentials": reader},
    )
    registry = authority.registry({"t": device_public_key(state_root)}, tmp_path / "registry.json")
    events: list[Any] = []
    stop_listen = threading.Event()
    listener = collect(broker, registry, events, stop_listen)
    config, profile = load_config(config_path)
    assert config.credentials.card == reader["card"]
    wired = build(config, profile, StateDir(state_root))
    stop = threading.Event()
    agent = threading.Thread(
        target=lambda: run_agent(config, profile, wired, notifier=Notifier({}), stop=stop), name="agent"
    )
    agent.start()
    try:
        assert wait_for(lambda: any(e["kind"] == "consent_applied" for e in events)), events
        fifo = state_root / "credential.fifo"
        assert wait_for(fifo.exists)
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, f"card:{card}\ncard:5555\n".encode())
        os.close(fd)
        assert wait_for(lambda: len([e for e in events if e["kind"] == "access"]) >= 2), events
        access = [e["body"] for e in events if e["kind"] == "access"]
        assert access[0] | {"consent_version": 1} == {
            "decision": "granted",
            "modality": "card",
            "subject": "visitor-7",
            "reason": "granted",
            "door": "gate-1",
            "consent_version": 1,
        }
        assert (access[1]["decision"], access[1]["subject"], access[1]["reason"]) == (
            "denied",
            None,
            "unknown_credential",
        )
        # a new list arrives on the retained topic while the agent runs
        publish_list(Broker(broker.url), "site-1", authority.withdraw("visitor-7", now=time.time()))
        assert wait_for(lambda: any(e["kind"] == "consent_applied" and e["body"]["version"] == 2 for e in events)), (
            events
        )
        assert {e["kind"] for e in events} >= {"health", "consent_applied", "access"}
        seqs = [e["seq"] for e in events]
        assert len(set(seqs)) == len(seqs)
    finally:
        stop.set()
        agent.join(20)
        stop_listen.set()
        listener.join(10)
    assert not agent.is_alive()


def test_a_stranger_right_after_a_grant_is_denied_not_taken_for_the_same_passage() -> None:
    """Regression: the best candidate for a stranger's face is often the person just let in; the
    'still in view' shortcut must apply only to an accepted match."""
    clock = FakeClock()
    gallery = MemoryGallery()
    alice = unit(1)
    gallery.faces["alice"] = alice
    guarded = GuardedSink()
    core = GateCore(
        gallery=gallery,
        consent=MemoryConsent(consents={("alice", "face")}),
        policy=LanePolicy(PolicySection(), 0.6),
        door=DoorController(SimLines()),
        sink=guarded,
        clock=clock,
    )
    core.on_face(gallery.search(near(alice, 1)))
    clock.advance(1)
    core.on_face(gallery.search(near(alice, 2)))  # alice still in view: no second passage
    clock.advance(1)
    core.on_face(gallery.search(unit(99)))  # a stranger; the gallery's best candidate is alice
    access = [(b["decision"], b["subject"], b["reason"]) for k, b in guarded.events if k == "access"]
    assert access == [("granted", "alice", "granted"), ("denied", None, "no_match")]


def test_every_card_presentation_is_a_new_passage() -> None:
    clock = FakeClock()
    guarded = GuardedSink()
    core = GateCore(
        gallery=MemoryGallery(),
        consent=MemoryConsent(credentials={("card", "1234"): "carol"}),
        policy=LanePolicy(PolicySection(), 0.6),
        door=DoorController(SimLines()),
        sink=guarded,
        clock=clock,
    )
    for _ in range(3):
        core.on_credential(Credential("card", "1234"))
        clock.advance(0.2)
    assert [b["decision"] for k, b in guarded.events if k == "access"] == ["granted"] * 3


def test_health_reports_every_device_that_is_up_the_fingerprint_sensor_included() -> None:
    """The translation mapped the device name ``finger`` while the worker is named ``fingerprint``,
    so a health event with camera, sensor and reader up listed only face and card. Tried: all three
    up, then the sensor down."""
    guarded = GuardedSink()
    core = GateCore(
        gallery=MemoryGallery(),
        consent=MemoryConsent(),
        policy=LanePolicy(PolicySection(), 0.6),
        door=DoorController(SimLines()),
        sink=guarded,
        clock=FakeClock(),
    )
    for device in ("camera", "fingerprint", "credential"):
        core.device_ok(device)
    core.emit_health()
    core.device_failed("fingerprint", OSError("unplugged"))
    core.emit_health()
    health = [b for k, b in guarded.events if k == "health"]
    assert [h["modalities"] for h in health] == [["face", "fingerprint", "card"], ["face", "card"]]
