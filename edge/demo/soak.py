"""SIGKILL soak: ``edge run`` killed at random moments while events flow and consent lists arrive.

One provisioned terminal (card reader on its control FIFO; camera and sensor off so the run
measures the stores, not the models), a real Mosquitto, the consent authority publishing a fresh
list every ``list_every_s``, a writer presenting a card several times a second, and a verifying
subscriber (``edge-site listen``'s ``Listener``) in this process. The agent runs as a child process
(``edge run``, the systemd command) and gets SIGKILL at random moments.

What is checked at the end, after a last clean run drains the outbox:

* no acknowledged event lost: every sequence number the outbox ever committed (1..last) was
  verified by the subscriber (the outbox commit is the device's acknowledgement to the gate);
* no store corrupt: ``PRAGMA integrity_check`` on every SQLite store, the audit log's hash chain
  verifies, the ledger holds the last list it acknowledged;
* back at work: seconds from each restart to READY and to the first new verified decision.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.datasets import REPO_ROOT

CARD = "4242 0001"


@dataclass
class SoakReport:
    duration_s: float
    kills: int
    lists_published: int
    events_committed: int
    events_verified: int
    missing_seqs: list[int]
    duplicates: int
    rejected: int  # rejections other than a QoS 1 redelivery of an event already verified
    redelivered: int = 0  # at-least-once redeliveries, refused by the verifier as replays (expected)
    still_queued: list[int] = field(default_factory=list)  # durable in the outbox, delivered by the next run
    ready_s: list[float] = field(default_factory=list)
    first_decision_s: list[float] = field(default_factory=list)
    integrity: dict[str, str] = field(default_factory=dict)
    audit_ok: bool = False
    ledger_version: int | None = None
    last_list_version: int = 0

    def lines(self) -> list[str]:
        def stats(values: list[float]) -> str:
            if not values:
                return "n=0"
            v = sorted(values)
            return f"n={len(v)} median={v[len(v) // 2]:.2f} s max={v[-1]:.2f} s"

        return [
            f"soak: {self.duration_s:.0f} s, {self.kills} SIGKILLs, {self.lists_published} consent lists published",
            f"events committed by the outbox: {self.events_committed}; verified by the subscriber: "
            f"{self.events_verified} (missing {len(self.missing_seqs)}, still queued in the outbox "
            f"{len(self.still_queued)}, duplicates {self.duplicates}, "
            f"redeliveries refused as replays {self.redelivered}, other rejections {self.rejected})",
            f"restart -> READY:            {stats(self.ready_s)}",
            f"restart -> first decision:   {stats(self.first_decision_s)}",
            f"stores: {', '.join(f'{k} {v}' for k, v in sorted(self.integrity.items()))}; "
            f"audit chain {'verifies' if self.audit_ok else 'BROKEN'}; ledger at v{self.ledger_version} "
            f"(last published v{self.last_list_version})",
        ]


class Agent:
    """``edge run`` as a child process with a notify socket of its own."""

    def __init__(self, config: Path, work: Path) -> None:
        self.config = config
        self.work = work
        self.sock_path = work / "notify.sock"
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.1)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (work / "agent.log").open("ab")

    def start(self) -> float:
        """Spawn; return the seconds until READY=1."""
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path), "PYTHONPATH": str(REPO_ROOT)}
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(self.config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            cwd=REPO_ROOT,
        )
        deadline = started + 60
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"edge run exited with {self.proc.returncode}; see {self.work / 'agent.log'}"
                    ) from None
                continue
            if b"READY=1" in data:
                return time.monotonic() - started
        raise RuntimeError("edge run did not report READY within 60 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def close(self) -> None:
        self.kill()
        self.sock.close()
        self.log.close()


def present_cards(fifo: Path, stop: threading.Event, interval_s: float) -> None:
    """A card at the reader every ``interval_s``; while the agent is down nobody reads (ENXIO)."""
    while not stop.wait(interval_s):
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, f"card:{CARD}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def integrity(path: Path) -> str:
    if not path.exists():
        return "absent"
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "ok" if rows == [("ok",)] else f"CORRUPT: {rows[:3]}"


def run_soak(
    work: Path,
    *,
    duration_s: float = 60.0,
    kills: int = 5,
    list_every_s: float = 4.0,
    card_every_s: float = 0.2,
    seed: int = 1,
    say: Any = print,
) -> SoakReport:
    from edge.cli.site_listen import Listener
    from edge.consent.distribution import Broker, publish_list
    from edge.demo.stack import CARD_ONLY, SiteAuthority, device_public_key, provision_terminal
    from edge.site.registry import Registry
    from edge.site.verifier import Verifier
    from edge.testing.mosquitto import Mosquitto, free_port
    from edge.transport.mqtt import MqttSettings

    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(work / "broker")
    broker.start()
    stop = threading.Event()  # cards and consent lists
    listen_stop = threading.Event()  # the subscriber runs until every event is accounted for
    threads: list[threading.Thread] = []
    agent: Agent | None = None
    verified: list[dict[str, Any]] = []
    lock = threading.Lock()
    try:
        authority = SiteAuthority(work / "site", "soak-site")
        roster = [authority.entry("p-card", [], granted_at=int(time.time()) - 60, card=CARD)]
        roster += [authority.entry(f"p-{i:03d}", ["face"], granted_at=int(time.time()) - 60) for i in range(50)]
        publish_list(Broker(broker.url), "soak-site", authority.issue(roster, now=time.time()))
        lists = 1
        state_root = work / "terminal"
        config_path = provision_terminal(
            state_root,
            authority,
            broker_url=broker.url,
            settings={**CARD_ONLY, "metrics": {"port": free_port()}},
        )
        registry = authority.registry({"t": device_public_key(state_root)}, work / "registry.json")

        class Collect:
            def write(self, text: str) -> None:
                with lock:
                    verified.extend(json.loads(line) for line in text.splitlines())

            def flush(self) -> None:
                pass

        reasons: list[str] = []

        class Rejects:
            def write(self, text: str) -> None:
                with lock:
                    reasons.extend(json.loads(line)["reason"] for line in text.splitlines())

            def flush(self) -> None:
                pass

        listener = Listener(
            MqttSettings.from_url(broker.url),
            Verifier(Registry.load(registry)),
            Collect(),  # type: ignore[arg-type]
            Rejects(),  # type: ignore[arg-type]
            share=None,
            site="soak-site",
            client_id="soak-listener",  # a persistent session: nothing is lost while it reconnects
        )
        threads.append(
            threading.Thread(
                target=lambda: listener.run(count=None, timeout_s=None, stop=listen_stop), name="soak-listen"
            )
        )
        threads[-1].start()
        if not listener.subscribed.wait(15):
            raise RuntimeError("the soak's subscriber did not subscribe")
        agent = Agent(config_path, work)
        report = SoakReport(duration_s, 0, 0, 0, 0, [], 0, 0)
        report.ready_s.append(agent.start())
        fifo = state_root / "credential.fifo"
        threads.append(
            threading.Thread(target=present_cards, args=(fifo, stop, card_every_s), name="soak-cards", daemon=True)
        )
        threads[-1].start()

        def publisher() -> None:
            nonlocal lists
            while not stop.wait(list_every_s):
                publish_list(Broker(broker.url), "soak-site", authority.authority.reissue(now=time.time())[0])
                lists += 1

        threads.append(threading.Thread(target=publisher, name="soak-lists", daemon=True))
        threads[-1].start()

        def last_access_seq() -> int:
            with lock:
                return max((e["seq"] for e in verified if e["kind"] == "access"), default=0)

        started = time.monotonic()
        kill_times = sorted(rng.uniform(0.1, 0.9) * duration_s for _ in range(kills))
        for at in kill_times:
            time.sleep(max(0.0, started + at - time.monotonic()))
            agent.kill()
            report.kills += 1
            say(f"  SIGKILL {report.kills} at {time.monotonic() - started:.1f} s")
            time.sleep(rng.uniform(0.0, 1.0))
            before = last_access_seq()
            spawned = time.monotonic()
            report.ready_s.append(agent.start())
            deadline = spawned + 30
            while last_access_seq() <= before and time.monotonic() < deadline:
                time.sleep(0.02)
            report.first_decision_s.append(time.monotonic() - spawned)
        time.sleep(max(0.0, started + duration_s - time.monotonic()))
        stop.set()  # cards and lists stop; the agent drains its outbox and stops cleanly
        for t in threads[1:]:
            t.join(30)
        time.sleep(2.0)
        agent.stop()
        from edge.state import StateDir
        from edge.transport.outbox import Outbox

        sd = StateDir(state_root)

        def outbox_figures() -> tuple[int, int]:
            outbox = Outbox(sd.outbox_db)
            try:
                return outbox.last_seq(), outbox.depth()
            finally:
                outbox.close()

        def queued_seqs() -> set[int]:
            outbox = Outbox(sd.outbox_db)
            try:
                return {entry.seq for entry in outbox.pending(limit=1_000_000)}
            finally:
                outbox.close()

        def verified_all(last: int, timeout_s: float) -> bool:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                with lock:
                    if set(range(1, last + 1)) <= {e["seq"] for e in verified}:
                        return True
                time.sleep(0.1)
            return False

        report.events_committed, pending = outbox_figures()
        for _ in range(3):
            if not pending:
                break
            # still queued at the clean stop (broker slow to acknowledge): the next run delivers them
            agent.start()
            verified_all(report.events_committed, 15.0)
            agent.stop()
            report.events_committed, pending = outbox_figures()
        verified_all(report.events_committed, 10.0)  # the subscriber may lag behind the broker a little
        with lock:
            seqs = [e["seq"] for e in verified]
        report.events_verified = len(set(seqs))
        report.duplicates = len(seqs) - len(set(seqs))
        with lock:
            report.redelivered = reasons.count("replay")
            report.rejected = len(reasons) - report.redelivered
        # An event is lost only if it is neither verified nor still durably queued: each drain run
        # itself emits events (health at start, stop-time alarms) that its clean stop may leave in
        # the outbox for the next start, which is the outbox doing its job.
        queued = queued_seqs()
        report.still_queued = sorted(queued - set(seqs))
        report.missing_seqs = sorted(set(range(1, report.events_committed + 1)) - set(seqs) - queued)
        report.lists_published = lists
        report.last_list_version = authority.authority.load_state().version
        for path in (sd.gallery_db, sd.consent_db, sd.audit_db, sd.outbox_db):
            report.integrity[path.name] = integrity(path)
        report.audit_ok, report.ledger_version = _audit_and_ledger(sd)
        return report
    finally:
        stop.set()
        listen_stop.set()
        if agent is not None:
            agent.close()
        for t in threads:
            t.join(30)
        broker.stop()


def _audit_and_ledger(state: Any) -> tuple[bool, int | None]:
    from edge.audit.log import AuditLog
    from edge.consent.ledger import ConsentLedger
    from edge.crypto.keys import load_signing_key

    key = load_signing_key(state.identity_key)
    audit = AuditLog.open(state.audit_db, key)
    try:
        try:
            audit.verify()
            ok = True
        except Exception:
            ok = False
        ledger = ConsentLedger.open(state, "soak-site", grace_period_s=86400.0, audit=audit)
        try:
            return ok, ledger.version
        finally:
            ledger.close()
    finally:
        audit.close()
