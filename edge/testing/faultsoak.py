"""Fault soak: ``edge run`` under random faults while a card is presented five times a second.

One provisioned terminal runs as a child process (``edge run``, as systemd runs it) with every
device simulated: the card reader on its control FIFO, the fingerprint sensor served by
``edge-fpsim`` on a pty, a replay camera with the face pipeline, a real Mosquitto, the consent
authority reissuing its list every few seconds, and a verifying subscriber (``edge-site listen``'s
``Listener``) in this process. One fault at a time, every kind once in a random order and then again, for the duration:

| fault | how | reported by |
| --- | --- | --- |
| ``damaged_row`` | one bit of one gallery template flipped by another SQLite connection, then a restart | ``gallery_damaged`` alarm (its count) |
| ``broker`` | Mosquitto stopped for 1-3 s and started again (persistent sessions) | the agent's log: ``connection ... lost`` |
| ``disk_full`` | ENOSPC at every store and state file (``$EDGE_FAULTS_FILE``) for 3-6 s | ``disk_full`` alarm (raised, cleared) |
| ``sensor`` | the simulator unplugged for 3-5 s, then plugged in again | ``device_failed`` alarm, component ``fingerprint`` |
| ``camera`` | the replay camera's frames vanish for 7-9 s | ``device_failed`` alarm, component ``camera`` |
| ``clock`` | the agent's wall clock steps 1-5 h back or forward, and back again after 3-5 s | ``clock_step`` alarms (one per step) |
| ``sigkill`` | SIGKILL, restarted 0-1 s later | ``unclean_stop`` alarm at the next start |

The wall-clock step is made inside the agent process only: a ``sitecustomize`` module on its
``PYTHONPATH`` adds the offset read from a file to ``time.time``, as an NTP step would (the
monotonic clock goes on). The system clock is never touched.

At the end (after a last clean run drains the outbox), the report counts: card presentations that
reached a reader and those answered by a verified grant (the credential path's availability);
acknowledged events (every sequence number the outbox committed) verified by the subscriber,
exactly once, apart from ranges the agent announced as lost (``outbox_dropped``,
``store_replaced``); faults injected against faults reported; start-ups that failed (a crash loop
would show here) and safe-mode entries.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.datasets import REPO_ROOT
from edge.demo.soak import Agent, integrity

FAULTS = ("damaged_row", "broker", "disk_full", "sensor", "camera", "clock", "sigkill")
ENROLLED = 40
#: Card holders in the list (one message: a list of 1000 card entries is about 210 KB)
CARDS = 1000

_CLOCK_HOOK = '''"""Soak only: the wall clock of this process is time.time() plus the offset in $EDGE_SOAK_CLOCK_FILE."""
import os
import time

_path = os.environ.get("EDGE_SOAK_CLOCK_FILE")
if _path:
    _real, _real_ns, _mono = time.time, time.time_ns, time.monotonic
    _state = {"at": -1.0, "offset": 0.0}

    def _offset():
        now = _mono()
        if now - _state["at"] > 0.05:
            _state["at"] = now
            try:
                with open(_path) as f:
                    _state["offset"] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return _state["offset"]

    time.time = lambda: _real() + _offset()
    time.time_ns = lambda: _real_ns() + int(_offset() * 1e9)
'''


@dataclass
class FaultReport:
    duration_s: float
    seed: int
    injected: Counter[str] = field(default_factory=Counter)
    reported: Counter[str] = field(default_factory=Counter)
    presented: int = 0  # presentations taken by a reader that ran on for at least a second after
    cut_short: int = 0  # taken by a reader the soak stopped or killed within the second after
    cut_short_served: int = 0
    no_reader: int = 0  # presentations while the agent was restarting (nobody to read them)
    granted: int = 0  # of ``presented``, those with a verified grant (each card is presented once)
    committed: int = 0  # the last sequence number the outbox committed
    verified: int = 0
    duplicates_refused: int = 0  # QoS 1 redeliveries the verifier refused as replays
    other_rejections: int = 0
    announced_lost: int = 0  # numbers the agent announced as lost (outbox_dropped, store_replaced)
    missing: list[int] = field(default_factory=list)  # acknowledged, not verified, not announced, not queued
    still_queued: int = 0
    start_failures: int = 0  # edge run exits we did not cause
    clean_restarts: int = 0  # SIGTERM and start, after a damaged row (not a fault of its own)
    safe_mode: int = 0
    integrity: dict[str, str] = field(default_factory=dict)

    @property
    def availability(self) -> float:
        """Verified grants per presentation at a running reader."""
        return self.granted / self.presented if self.presented else 0.0

    def lines(self) -> list[str]:
        width = max(len(f) for f in FAULTS)
        return [
            f"fault soak: {self.duration_s:.0f} s, seed {self.seed}",
            f"card decisions: {self.presented} attempted at a running reader, {self.granted} served "
            f"(verified grants): credential availability {100 * self.availability:.2f} % "
            f"(not counted: {self.cut_short} taken by a reader the soak stopped within the second after, "
            f"{self.cut_short_served} of them served; {self.no_reader} while the agent restarted)",
            f"acknowledged events: {self.committed} committed, {self.verified} verified exactly once, "
            f"{self.announced_lost} announced lost, {self.still_queued} still queued, missing {len(self.missing)}; "
            f"redeliveries refused as replays {self.duplicates_refused}, other rejections {self.other_rejections}",
            f"start-ups that failed: {self.start_failures}; safe-mode entries: {self.safe_mode}; "
            f"clean restarts by the soak: {self.clean_restarts}; "
            f"crash loops: {1 if self.start_failures >= 3 else 0}",
            "faults:   " + "  ".join(f"{f:<{width}}" for f in FAULTS),
            "injected: " + "  ".join(f"{self.injected[f]:<{width}}" for f in FAULTS),
            "reported: " + "  ".join(f"{self.reported[f]:<{width}}" for f in FAULTS),
            "stores: " + ", ".join(f"{k} {v}" for k, v in sorted(self.integrity.items())),
        ]


class _Collect:
    def __init__(self, lock: threading.Lock, out: list[Any], key: str | None = None) -> None:
        self.lock, self.out, self.key = lock, out, key

    def write(self, text: str) -> None:
        with self.lock:
            for line in text.splitlines():
                doc = json.loads(line)
                self.out.append(doc[self.key] if self.key else doc)

    def flush(self) -> None:
        pass


class SoakAgent(Agent):
    """``edge run`` with the fault switch and the clock hook in its environment."""

    def __init__(self, config: Path, work: Path, env: dict[str, str]) -> None:
        super().__init__(config, work)
        self.env = env
        self.exits = 0  # exits we did not cause
        self.ended: dict[int, float] = {}  # pid -> monotonic time we stopped or killed it

    def _ending(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ended[self.proc.pid] = time.monotonic()

    def kill(self) -> None:
        self._ending()
        super().kill()

    def stop(self) -> int:
        self._ending()
        return super().stop()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self) -> float:
        env = {**os.environ, **self.env, "NOTIFY_SOCKET": str(self.sock_path)}
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(self.config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            cwd=REPO_ROOT,
        )
        while time.monotonic() < started + 90:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                if self.proc.poll() is not None:
                    self.exits += 1
                    return self.start()  # systemd's Restart=always
                continue
            if b"READY=1" in data:
                return time.monotonic() - started
        raise RuntimeError("edge run did not report READY within 90 s")


def _card(i: int) -> str:
    return f"4{i:07d}"


def run_fault_soak(
    work: Path,
    *,
    duration_s: float = 600.0,
    seed: int = 1,
    faults: tuple[str, ...] = FAULTS,
    say: Callable[[str], None] = print,
) -> FaultReport:
    """Run the soak in ``work`` (see the module docstring); ``faults`` empty: the same run without a
    fault, the benchmark's peer."""
    import cv2
    import numpy as np

    from edge.cli.site_listen import Listener
    from edge.consent.distribution import Broker, publish_list
    from edge.demo.stack import SiteAuthority, device_public_key, provision_terminal
    from edge.fingerprint.sim.process import SimulatorProcess
    from edge.gallery.store import Gallery
    from edge.site.registry import Registry
    from edge.site.verifier import Verifier
    from edge.state import StateDir
    from edge.state_faults import write_fault_file
    from edge.testing.mosquitto import Mosquitto, free_port, give_to_broker_user
    from edge.transport.mqtt import MqttSettings
    from edge.transport.outbox import Outbox

    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    report = FaultReport(duration_s, seed)
    broker = Mosquitto(work / "broker", extra=f"persistence true\npersistence_location {work / 'broker'}/\n")
    broker.write_config()
    give_to_broker_user(broker.workdir)  # its persistence file (and log) must be writable by it: a restart
    broker.start()  # keeps what the subscriber's session still had to receive, as a production broker does
    sim = SimulatorProcess(model="r307", seed=seed)
    sim.start()
    stop = threading.Event()
    listen_stop = threading.Event()
    threads: list[threading.Thread] = []
    agent: SoakAgent | None = None
    lock = threading.Lock()
    verified: list[dict[str, Any]] = []
    reasons: list[str] = []
    counts = {"no_reader": 0}
    writes: list[tuple[int, float, int]] = []  # (card, monotonic time, agent pid) of each presentation taken
    try:
        frames = work / "frames"
        frames.mkdir(exist_ok=True)
        cv2.imwrite(str(frames / "f0.png"), np.full((480, 640, 3), 96, np.uint8))
        authority = SiteAuthority(work / "site", "soak-site")
        now = time.time()
        # a card per presentation (reused after CARDS, minutes apart), so a grant names what it answers
        cards = min(CARDS, int(duration_s * 5 * 1.3) + 200)
        roster = [authority.entry(f"c-{i:05d}", [], granted_at=int(now) - 60, card=_card(i)) for i in range(cards)]
        roster += [authority.entry(f"p-{i:03d}", ["face"], granted_at=int(now) - 60) for i in range(50)]
        publish_list(Broker(broker.url), "soak-site", authority.issue(roster, now=now))
        state_root = work / "terminal"
        config_path = provision_terminal(
            state_root,
            authority,
            broker_url=broker.url,
            settings={
                "metrics": {"port": free_port()},
                "camera": {"enabled": True, "source": str(frames), "fps": 2.0},
                "face": {"enabled": True, "liveness": "off", "variant": "int8"},
                "fingerprint": {"enabled": True, "port": sim.port},
            },
        )
        state = StateDir(state_root)
        with Gallery.open(state) as g:  # people enrolled before the soak: damaged rows come from these
            vecs = np.random.default_rng(seed).standard_normal((ENROLLED, 128)).astype(np.float32)
            for i in range(ENROLLED):
                g.enrol(f"p-{i:03d}", "face", templates=[vecs[i]])
        registry = authority.registry({"t": device_public_key(state_root)}, work / "registry.json")
        listener = Listener(
            MqttSettings.from_url(broker.url),
            Verifier(Registry.load(registry)),
            _Collect(lock, verified),  # type: ignore[arg-type]
            _Collect(lock, reasons, "reason"),  # type: ignore[arg-type]
            share=None,
            site="soak-site",
            client_id="fault-soak-listener",  # a persistent session: nothing is lost while it reconnects
        )
        threads.append(
            threading.Thread(target=lambda: listener.run(count=None, timeout_s=None, stop=listen_stop), name="listen")
        )
        threads[-1].start()
        if not listener.subscribed.wait(15):
            raise RuntimeError("the soak's subscriber did not subscribe")
        hook = work / "pyhook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(_CLOCK_HOOK)
        clock_file, fault_file = work / "clock-offset", work / "faults.json"
        clock_file.write_text("0")
        write_fault_file(fault_file)
        env = {
            "PYTHONPATH": f"{hook}{os.pathsep}{REPO_ROOT}",
            "EDGE_SOAK_CLOCK_FILE": str(clock_file),
            "EDGE_FAULTS_FILE": str(fault_file),
        }
        agent = SoakAgent(config_path, work, env)
        agent.start()
        fifo = state_root / "credential.fifo"

        def present() -> None:
            card = 0
            while not stop.wait(0.2):
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    counts["no_reader"] += 1
                    continue
                try:
                    os.write(fd, f"card:{_card(card % cards)}\n".encode())
                    writes.append((card % cards, time.monotonic(), agent.pid if agent is not None else 0))
                    card += 1
                except OSError:
                    counts["no_reader"] += 1
                finally:
                    os.close(fd)

        def lists() -> None:
            while not stop.wait(4.0):
                with contextlib.suppress(Exception):  # the broker may be down: the next one goes
                    publish_list(Broker(broker.url), "soak-site", authority.authority.reissue(now=time.time())[0])

        for target, name in ((present, "cards"), (lists, "lists")):
            threads.append(threading.Thread(target=target, name=name, daemon=True))
            threads[-1].start()

        def restart(kill: bool) -> None:
            assert agent is not None
            if kill:
                agent.kill()
            else:
                agent.stop()
            time.sleep(rng.uniform(0.0, 1.0))
            agent.start()

        damaged_rows = list(range(1, ENROLLED + 1))
        rng.shuffle(damaged_rows)
        started = time.monotonic()
        deck: list[str] = []
        while faults and time.monotonic() - started < duration_s - 12:
            time.sleep(rng.uniform(0.5, 1.5))
            if not deck:  # every kind of fault once, in a random order, then again
                deck = list(faults)
                rng.shuffle(deck)
            fault = deck.pop()
            report.injected[fault] += 1
            t = time.monotonic() - started
            if fault == "damaged_row":
                row = damaged_rows.pop()
                conn = sqlite3.connect(state.gallery_db, timeout=30)
                with conn:
                    got = conn.execute("SELECT box FROM templates WHERE id = ?", (row,)).fetchone()
                    if got is not None:
                        box = bytearray(got[0])
                        box[60] ^= 0x04
                        conn.execute("UPDATE templates SET box = ? WHERE id = ?", (bytes(box), row))
                conn.close()
                restart(kill=False)  # the gallery reads every row at start: that is where it is found
                report.clean_restarts += 1
            elif fault == "broker":
                broker.stop()
                time.sleep(rng.uniform(1.0, 3.0))
                broker.start()
            elif fault == "disk_full":
                write_fault_file(fault_file, full=["*"])
                time.sleep(rng.uniform(3.0, 6.0))
                write_fault_file(fault_file)
            elif fault == "sensor":
                sim.control.unplug()
                time.sleep(rng.uniform(3.0, 5.0))
                sim.control.replug()
            elif fault == "camera":
                frames.rename(frames.with_name("frames-gone"))
                time.sleep(rng.uniform(7.0, 9.0))
                frames.with_name("frames-gone").rename(frames)
            elif fault == "clock":
                step = rng.choice((-1, 1)) * rng.uniform(1.0, 5.0) * 3600
                clock_file.write_text(f"{step:.0f}")
                time.sleep(rng.uniform(3.0, 5.0))
                clock_file.write_text("0")
                report.injected["clock"] += 1  # two steps: away and back
            elif fault == "sigkill":
                restart(kill=True)
            say(f"  {t:6.1f} s  {fault}")
            time.sleep(rng.uniform(1.0, 1.5))  # the fault's report travels before the next one
        time.sleep(max(0.0, started + duration_s - time.monotonic()))
        stop.set()
        for t_ in threads[1:]:
            t_.join(10)
        time.sleep(2.0)
        agent.stop()
        # a clean start and stop drains what is left
        sd = StateDir(state_root)

        def figures() -> tuple[int, set[int]]:
            box = Outbox(sd.outbox_db)
            try:
                return box.last_seq(), {e.seq for e in box.pending(limit=1_000_000)}
            finally:
                box.close()

        report.committed, queued = figures()
        for _ in range(3):
            if not queued:
                break
            agent.start()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with lock:
                    if queued <= {e["seq"] for e in verified}:
                        break
                time.sleep(0.1)
            agent.stop()
            report.committed, queued = figures()
        time.sleep(2.0)
        with lock:
            events = list(verified)
            refused = list(reasons)
        seqs = [e["seq"] for e in events]
        report.verified = len(set(seqs))
        report.duplicates_refused = refused.count("replay")
        report.other_rejections = len(refused) - report.duplicates_refused
        announced: set[int] = set()
        alarms = [e["body"] for e in events if e["kind"] == "alarm"]
        for a in alarms:
            if a["code"] in ("outbox_dropped", "store_replaced") and a.get("first_seq") and a.get("last_seq"):
                announced.update(range(int(a["first_seq"]), int(a["last_seq"]) + 1))
        report.announced_lost = len(announced)
        report.still_queued = len(queued - set(seqs))
        report.missing = sorted(set(range(1, report.committed + 1)) - set(seqs) - queued - announced)
        grants = Counter(
            str(e["body"]["subject"])
            for e in events
            if e["kind"] == "access" and e["body"]["decision"] == "granted" and e["body"]["modality"] == "card"
        )
        report.no_reader = counts["no_reader"]
        attempted: Counter[str] = Counter()
        cut: Counter[str] = Counter()
        for card, at, pid in writes:
            if pid in agent.ended and agent.ended[pid] - at < 1.0:
                cut[f"c-{card:05d}"] += 1
            else:
                attempted[f"c-{card:05d}"] += 1
        for name in set(attempted) | set(cut):  # grants go to the counted presentations first
            report.granted += min(grants[name], attempted[name])
            report.cut_short_served += min(max(0, grants[name] - attempted[name]), cut[name])
        report.presented, report.cut_short = sum(attempted.values()), sum(cut.values())
        report.start_failures = agent.exits
        report.safe_mode = sum(1 for a in alarms if a["code"] == "safe_mode")
        reported = report.reported
        reported["damaged_row"] = sum(int(a.get("count", 0)) for a in alarms if a["code"] == "gallery_damaged")
        reported["disk_full"] = sum(1 for a in alarms if a["code"] == "disk_full" and a.get("state") == "raised")
        reported["sensor"] = sum(
            1
            for a in alarms
            if a["code"] == "device_failed" and a.get("component") == "fingerprint" and a.get("state") == "raised"
        )
        reported["camera"] = sum(
            1
            for a in alarms
            if a["code"] == "device_failed" and a.get("component") == "camera" and a.get("state") == "raised"
        )
        reported["clock"] = sum(1 for a in alarms if a["code"] == "clock_step")
        reported["sigkill"] = sum(1 for a in alarms if a["code"] == "unclean_stop")
        log_text = (work / "agent.log").read_text(errors="replace")
        reported["broker"] = len(re.findall(r"MQTT: connection to \S+ lost", log_text))
        for path in (sd.gallery_db, sd.consent_db, sd.audit_db, sd.outbox_db):
            report.integrity[path.name] = integrity(path)
        return report
    finally:
        stop.set()
        listen_stop.set()
        if agent is not None:
            agent.close()
        for t_ in threads:
            t_.join(30)
        with contextlib.suppress(Exception):
            sim.stop()
        broker.stop()
