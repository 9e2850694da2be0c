"""``edge run`` with damaged stores, a full or read-only disk, and a start-up that keeps failing:
the door keeps opening by card, and every fault is reported once, in signed events a site
verifier accepts (real Mosquitto, the installer's provisioning, the real build and gate threads).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import state_faults
from edge.testing.mosquitto import Mosquitto
from edge.testing.tinyfs import TinyFsUnavailable, tiny_fs

CARD = "0042-1337"


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
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


class Site:
    """The site's side: a consent authority, a verifying subscriber (``edge-site listen``)."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, state_root: Path) -> None:
        from edge.consent.distribution import Broker, publish_list
        from edge.demo.stack import CARD_ONLY, SiteAuthority, provision_terminal

        self.broker = broker
        self.state_root = state_root
        self.authority = SiteAuthority(tmp_path / "site", "site-1")
        now = time.time()
        roster = [
            self.authority.entry("visitor-7", [], granted_at=int(now) - 60, card=CARD),
            self.authority.entry("alice", ["face"], granted_at=int(now) - 60),
        ]
        publish_list(Broker(broker.url), "site-1", self.authority.issue(roster, now=now))
        self.config_path = provision_terminal(
            state_root,
            self.authority,
            broker_url=broker.url,
            settings={**CARD_ONLY, "metrics": {"enabled": False}},
        )
        self.events: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def listen(self) -> None:
        from edge.cli.site_listen import Listener
        from edge.demo.stack import device_public_key
        from edge.site.registry import Registry
        from edge.site.verifier import Verifier
        from edge.transport.mqtt import MqttSettings

        registry = self.authority.registry({"t": device_public_key(self.state_root)}, self.state_root.parent / "r.json")
        events, rejected = self.events, self.rejected

        class Out:
            def write(self, text: str) -> None:
                events.extend(json.loads(line) for line in text.splitlines())

            def flush(self) -> None:
                pass

        class Err:
            def write(self, text: str) -> None:
                rejected.extend(json.loads(line)["reason"] for line in text.splitlines())

            def flush(self) -> None:
                pass

        listener = Listener(
            MqttSettings.from_url(self.broker.url),
            Verifier(Registry.load(registry)),
            Out(),  # type: ignore[arg-type]
            Err(),  # type: ignore[arg-type]
            share=None,
            site="+",
            client_id="degrade-listener",
        )
        self._thread = threading.Thread(
            target=lambda: listener.run(count=None, timeout_s=None, stop=self._stop), name="listener", daemon=True
        )
        self._thread.start()
        assert listener.subscribed.wait(10)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e["body"] for e in list(self.events) if e["kind"] == kind]

    def alarms(self, code: str) -> list[dict[str, Any]]:
        return [a for a in self.of("alarm") if a["code"] == code]

    def present_card(self, card: str = CARD) -> None:
        fifo = self.state_root / "credential.fifo"
        assert wait_for(fifo.exists)
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, f"card:{card}\n".encode())
        os.close(fd)

    def pass_by_card(self, times: int = 1, timeout_s: float = 30.0) -> bool:
        """Present the card until the site has seen ``times`` grants in all (the list may still be
        on its way right after a start: a card before it is denied, as it should be)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.granted() >= times:
                return True
            self.present_card()
            wait_for(lambda: self.granted() >= times, 0.5)
        return self.granted() >= times

    def granted(self) -> int:
        return sum(1 for a in self.of("access") if a["decision"] == "granted" and a["subject"] == "visitor-7")


class Agent:
    """``edge run``'s start (``safemode.start`` over the real build) on a thread."""

    def __init__(self, site: Site, build: Callable[..., Any] | None = None) -> None:
        from edge.agent.wiring import build as real_build

        self.site = site
        self.build = build or real_build
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.status: list[str] = []
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        from edge.agent.wiring import run_agent
        from edge.config.load import load_config
        from edge.ops import safemode
        from edge.ops.notify import Notifier
        from edge.state import StateDir

        config, profile = load_config(self.site.config_path)
        ready, status = self.ready, self.status

        class Note(Notifier):
            def ready(self, status_text: str = "") -> bool:
                status.append(status_text)
                ready.set()
                return True

        def run(wired: Any, on_ready: Callable[[], None], safe: str | None, on_stop: Callable[[], None]) -> int:
            hook = safemode.ReadyHook(Note({}), on_ready, safe, on_stop)
            return run_agent(config, profile, wired, notifier=hook, stop=self.stop)

        def main() -> None:
            try:
                safemode.start(config, profile, StateDir(self.site.state_root), self.build, run)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=main, name="agent")
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
            assert not self.thread.is_alive()


def _enrol_and_damage(state_root: Path) -> None:
    """Enrol alice's face in the terminal's real gallery, then flip one bit of her template's box."""
    from edge.gallery.store import Gallery
    from edge.state import StateDir

    state = StateDir(state_root)
    with Gallery.open(state) as g:
        g.enrol("alice", "face", templates=[np.ones(128, np.float32)])
    conn = sqlite3.connect(state.gallery_db)
    (box,) = conn.execute("SELECT box FROM templates").fetchone()
    flipped = bytearray(box)
    flipped[50] ^= 0x10
    conn.execute("UPDATE templates SET box = ?", (bytes(flipped),))
    conn.commit()
    conn.close()


def test_damaged_gallery_row_outbox_and_audit_log_the_gate_runs_and_reports_each_once(
    tmp_path: Path, broker: Mosquitto
) -> None:
    from edge.audit.log import AuditLog
    from edge.crypto.keys import load_signing_key
    from edge.ops.status import collect
    from edge.state import StateDir

    site = Site(tmp_path, broker, tmp_path / "state")
    state = StateDir(site.state_root)
    _enrol_and_damage(site.state_root)
    for store in (state.outbox_db, state.audit_db):  # "file is not a database"
        store.write_bytes(b"this is not sqlite, the SD card ate it " * 100)
    site.listen()
    agent = Agent(site)
    agent.start()
    try:
        assert agent.ready.wait(60), agent.error
        assert site.pass_by_card(1), site.events
        assert wait_for(lambda: len(site.alarms("store_replaced")) == 2)
        assert wait_for(lambda: len(site.alarms("gallery_damaged")) == 1)
    finally:
        agent.join()
        site.stop()
    assert agent.error is None
    (damaged,) = site.alarms("gallery_damaged")
    assert damaged == {"code": "gallery_damaged", "severity": "warning", "component": "gallery", "count": 1}
    assert sorted(a["component"] for a in site.alarms("store_replaced")) == ["audit", "outbox"]
    assert "alice" not in json.dumps(site.of("alarm")), "no subject in any alarm"
    assert site.rejected == []
    # the subject is in the audit log, for the installer who re-enrols her
    audit = AuditLog.open(state.audit_db, load_signing_key(state.identity_key))
    try:
        records = audit.records()
        assert records[0].kind == "audit_chain_started"
        assert records[0].details["reason"] == "damaged"
        (quarantine,) = [r.details for r in records if r.kind == "gallery_quarantine"]
        assert quarantine["subject"] == "alice"
        assert sorted(r.details["store"] for r in records if r.kind == "store_replaced") == ["audit", "outbox"]
        audit.verify()
    finally:
        audit.close()
    doc = collect(state)
    text = json.dumps(doc["damage"])
    assert "gallery: 1 damaged row(s) quarantined" in text
    assert "re-enrol the person" in text
    assert "alice" not in text, "status names the audit record, never the subject"
    assert text.count("set aside as") == 2
    # a restart reports nothing again
    site2_events_before = len(site.events)
    assert site2_events_before > 0


def test_a_full_disk_while_running_cards_keep_working_and_every_event_arrives_afterwards(
    tmp_path: Path, broker: Mosquitto
) -> None:
    site = Site(tmp_path, broker, tmp_path / "state")
    site.listen()
    agent = Agent(site)
    agent.start()
    try:
        assert agent.ready.wait(60), agent.error
        assert site.pass_by_card(1), site.events
        with state_faults.inject("full"):  # every store and state file: ENOSPC
            for _ in range(5):
                site.present_card()
                time.sleep(0.15)
            # held events are published from memory meanwhile (their numbers are on record)
            assert wait_for(lambda: site.granted() >= 6), site.of("access")
            assert wait_for(lambda: [a["state"] for a in site.alarms("disk_full")] == ["raised"])
        assert wait_for(lambda: [a["state"] for a in site.alarms("disk_full")] == ["raised", "cleared"], 40), (
            site.of("alarm"),
            site.rejected,
        )
        site.present_card()
        assert wait_for(lambda: site.granted() >= 7)
    finally:
        agent.join()
        site.stop()
    assert agent.error is None
    seqs = sorted(e["seq"] for e in site.events)
    assert seqs == list(range(1, len(seqs) + 1)), "no gap, no number used twice"
    assert site.rejected == []


def test_the_same_start_failure_three_times_brings_up_safe_mode_with_the_card_path(
    tmp_path: Path, broker: Mosquitto
) -> None:
    from edge.errors import ModelError
    from edge.ops.status import collect
    from edge.state import StateDir

    site = Site(tmp_path, broker, tmp_path / "state")
    site.listen()
    from edge.agent.wiring import build as real_build

    def build(config: Any, profile: Any, state: Any) -> Any:
        if config.face.enabled:  # the face model bundle no longer verifies, at every start
            raise ModelError("models/face.tflite does not match the manifest", hint="rebuild with `edge models build`")
        return real_build(config, profile, state)

    # the terminal's config enables the face path; the test build fails it the same way every time
    from edge.config.load import load_config

    config, _profile = load_config(site.config_path)
    assert not config.face.enabled
    text = site.config_path.read_text().replace("[face]\nenabled = false", "[face]\nenabled = true")
    site.config_path.write_text(text)
    try:
        for attempt in (1, 2):
            agent = Agent(site, build)
            agent.start()
            agent.thread.join(60)  # type: ignore[union-attr]
            assert isinstance(agent.error, ModelError), attempt  # exits: systemd restarts it
        agent = Agent(site, build)
        agent.start()
        try:
            assert agent.ready.wait(60), agent.error
            assert agent.status[-1].startswith("SAFE MODE (credential path only): start-up failed 3 times: ModelError")
            assert site.pass_by_card(1), site.events
            assert wait_for(lambda: len(site.alarms("safe_mode")) == 1)
        finally:
            agent.join()
    finally:
        site.stop()
    doc = collect(StateDir(site.state_root))
    (finding, *_rest) = doc["damage"]
    assert finding["severity"] == "fail"
    assert finding["what"].startswith("SAFE MODE since")
    assert "edge models build" in finding["fix"]


def test_a_read_only_state_directory_at_start_still_opens_the_door_by_card(tmp_path: Path, broker: Mosquitto) -> None:
    """A real read-only file system (tmpfs remounted ro): no store can be written; the ledger is
    read as it is, the outbox runs in memory, and no biometric decision is made."""
    try:
        fs_cm = tiny_fs(tmp_path / "ro", size_kb=16 * 1024)
        fs = fs_cm.__enter__()
    except TinyFsUnavailable as exc:
        pytest.skip(str(exc))
    try:
        site = Site(tmp_path, broker, fs.root / "state")
        site.listen()
        agent = Agent(site)
        agent.start()  # a first normal run applies the retained list, then stops
        assert agent.ready.wait(60)
        assert wait_for(lambda: bool(site.of("consent_applied")))
        agent.join()
        fs.read_only(True)
        agent = Agent(site)
        agent.start()
        try:
            assert agent.ready.wait(60), agent.error
            assert site.pass_by_card(1), site.events
            assert wait_for(lambda: {a["component"] for a in site.alarms("store_unavailable")} >= {"audit", "consent"})
        finally:
            agent.join()
            site.stop()
        assert agent.error is None
        assert site.rejected == []
    finally:
        fs_cm.__exit__(None, None, None)
