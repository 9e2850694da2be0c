"""``edge demo --gates N`` (N >= 2): a site of N gates on one broker, enrol once, recognised at every
gate in the person's consent scope (issue 14, docs/sync.md).

Gates ``gate-1`` .. ``gate-N-1`` stand in the zone ``lobby``, ``gate-N`` in ``car-park``. Each is a
terminal provisioned with the installer's commands, registered with the site's own
``edge-site registry add --zones`` from its ``edge-provision export --json``, with its own
fingerprint simulator (an R503 on a pty), its own face models and a replay camera, running the
agent (``build_wired`` + ``run_agent``, the code of ``edge run``) on threads of this process.

Cast:

* ``p-anna``  face and fingerprint, the whole site; enrolled by face at gate 1; granted by face at
  every gate (gates 2..N hold the face gate 1 sealed for them).
* ``p-ben``   fingerprint, **lobby only**; enrolled on gate 1's sensor; his finger is granted at
  gate 2 (when N >= 3) and refused at gate N, where he is let in by card.
* ``p-cara``  fingerprint, the whole site; enrolled on gate 1's sensor; granted by finger at gate N
  (the sensor template read back from gate 1's module, written into gate N's).
* ``p-dan``   face, the whole site; enrolled at gate 1; granted at gate N; **withdraws**: every
  gate deletes and signs its own receipt, and ``edge-site consent status p-dan`` confirms all.
* ``p-eve``   no biometric consent; her card opens gate N.

``edge-site listen`` verifies every event of every gate, as in the one-gate demo.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.demo.run import (
    CARD_EVE,
    Demo,
    Options,
    _capture,
    _missing_parts,
    access,
    enrol_by_photos,
    enrol_on_simulator,
)
from edge.errors import EdgeError

CARD_BEN = "0099 5678"
LOBBY, CAR_PARK = "lobby", "car-park"


@dataclass
class FleetGate:
    """One terminal of the site: its state directory, simulator, models and (once started) agent."""

    number: int
    root: Path
    zone: str
    sim: Any = None
    pipeline: Any = None
    config_path: Path | None = None
    device_id: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    codes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"gate-{self.number}"


def _site_cli(*args: str) -> tuple[int, str]:
    """One ``edge-site`` command in-process: its exit code and output."""
    from edge.cli.site import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


def at_gate(events: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("device") == device]


def synced(events: list[dict[str, Any]], device: str, subject: str, modality: str) -> bool:
    return any(
        e["kind"] == "enrolment"
        and e["body"].get("subject") == subject
        and e["body"].get("modality") == modality
        and e["body"].get("reason") == "synced"
        for e in at_gate(events, device)
    )


class FleetDemo(Demo):
    def __init__(self, opts: Options) -> None:
        super().__init__(opts)
        self.gates: list[FleetGate] = []

    def describe(self, event: dict[str, Any]) -> str | None:
        text = super().describe(event)
        if text is None:
            return None
        names = {g.device_id: g.name for g in self.gates}
        where = names.get(str(event.get("device")), "?")
        if event["kind"] == "enrolment" and event["body"].get("reason") == "synced":
            text += " (synced from another gate)"
        return f"{where}: {text}"

    # ------------------------------------------------------------------ the run

    def _run(self) -> int:
        opts = self.opts
        n = opts.gates
        missing = _missing_parts(opts.models_dir)
        if missing:
            self.say("cannot run the demo: " + missing)
            return 2
        work = opts.workdir or Path(tempfile.mkdtemp(prefix="edge-demo-"))
        work.mkdir(parents=True, exist_ok=True)
        if opts.workdir is None:
            self.cleanups.append(lambda: shutil.rmtree(work, ignore_errors=True))
        from edge.datasets import datasets_root

        datasets = opts.datasets or datasets_root()
        self.site = f"demo-{secrets.token_hex(3)}"
        self.say(f"edge demo --gates {n}: site {self.site}, work dir {work}")
        self.gates = [FleetGate(k, work / f"gate-{k}", CAR_PARK if k == n else LOBBY) for k in range(1, n + 1)]
        self._start_simulators(datasets)
        broker_url = self.broker(work)

        from edge.demo import data as demo_data
        from edge.vision.pipeline import FacePipeline

        for gate in self.gates:  # one set of models per gate: an interpreter serves one thread
            gate.pipeline = FacePipeline.load(opts.models_dir, "float32", 2, liveness="int8")
        manifest = self.gates[0].pipeline.manifest
        self.say(f"face models loaded for {n} gates ({manifest.model_id}, threshold {manifest.threshold:.3f})")
        material = demo_data.load(datasets, opts.cache, self.gates[0].pipeline, faces_wanted=3)
        self.say(f"faces: {material.face_source}")
        self.say(f"fingers: {material.finger_source}")
        if len(material.faces) < 2:
            self.say("cannot run the demo: fewer than two people's photos passed the quality and match checks")
            return 2
        cast_faces = {"p-anna": material.faces[0], "p-dan": material.faces[1]}
        if len(material.faces) >= 3:
            cast_faces["p-eve"] = material.faces[2]
        for who, person in cast_faces.items():
            self.say(f"  {who} is played by photos of {person.label}")
        fingers = {"p-ben": material.fingers[0], "p-cara": material.fingers[1]}

        from edge.demo.stack import SiteAuthority

        authority = SiteAuthority(work / "site", self.site)
        camera_dir = work / "camera"
        camera_dir.mkdir()
        for i, (who, person) in enumerate(cast_faces.items()):
            assert person.gate is not None
            shutil.copy(person.gate, camera_dir / f"{i:02d}-{who}{person.gate.suffix}")
        for gate in self.gates:
            gate.sim.join()
        registry = self._provision(work, authority, broker_url, camera_dir)
        first_list = self._first_list(authority)
        from edge.consent.distribution import Broker, publish_list

        publish_list(Broker(broker_url), self.site, first_list)
        self.say(
            "consent authority: list v1 signed with the roster of all gates and published retained "
            "(anna, cara, dan: whole site; ben: lobby only; eve: card)"
        )
        self.listener(work, broker_url, registry)

        # each installer installs list v1 (`edge consent apply`); the other gates run while gate 1
        # enrols: they receive the enrolments as they happen
        (work / "consent-v1.cbor").write_bytes(first_list)
        for gate in self.gates[1:]:
            self._apply_list(gate, work / "consent-v1.cbor")
            self._start_agent(gate)
        enrolled_at = self._enrol_at(self.gates[0], first_list, cast_faces, fingers)
        self._start_agent(self.gates[0])
        self.say(f"agents running at {n} gates: camera, fingerprint sensor and card reader at each")
        self._site_scenario(authority, broker_url, cast_faces, fingers, enrolled_at, work)
        for gate in self.gates:
            self._stop_agent(gate)
        self.check("every agent stopped cleanly", all(g.codes == [0] for g in self.gates))
        return self._summary()

    # ------------------------------------------------------------------ set-up

    def _start_simulators(self, datasets: Path | None) -> None:
        from edge.fingerprint.sim.process import SimulatorProcess

        for gate in self.gates:  # the simulators read the FVC fingers from the same datasets
            sim = SimulatorProcess(model="r503", extra_args=("--datasets", str(datasets)) if datasets else ())
            errors: list[BaseException] = []
            thread = threading.Thread(target=lambda s=sim, e=errors: _capture(s.start, e), name="demo-fpsim")
            thread.start()
            gate.sim = _Starting(sim, thread, errors)
            self.cleanups.append(gate.sim.stop)

    def _provision(self, work: Path, authority: Any, broker_url: str, camera_dir: Path) -> Path:
        """Each gate provisioned and exported; the site's registry (zones, box keys) from the exports,
        and the authority's roster from the registry."""
        from edge.demo.stack import provision, provision_terminal
        from edge.site.registry import Registry

        registry = work / "registry.json"
        for gate in self.gates:
            settings: dict[str, dict[str, Any]] = {
                "camera": {"source": str(camera_dir), "fps": self.opts.fps},
                "face": {"models_dir": str(self.opts.models_dir)},
                "fingerprint": {"port": gate.sim.port},
                "policy": {"failures_before_backoff": 50},
                "metrics": {"enabled": False},
            }
            gate.config_path = provision_terminal(
                gate.root, authority, broker_url=broker_url, gate=gate.name, settings=settings
            )
            code, out = provision("export", "--json", "--state-dir", str(gate.root))
            if code != 0:
                raise EdgeError(f"edge-provision export failed at {gate.name}: {out.strip()[-300:]}")
            exported = work / f"{gate.name}.json"
            exported.write_text(out)
            gate.device_id = str(json.loads(out)["device_id"])
            code, out = _site_cli("registry", "add", "--registry", str(registry), "--zones", gate.zone, str(exported))
            if code != 0:
                raise EdgeError(f"edge-site registry add failed for {gate.name}: {out.strip()[-300:]}")
        authority.authority.set_gates(Registry.load(registry).roster(self.site))
        zones = ", ".join(f"{g.name} {g.zone}" for g in self.gates)
        self.say(f"{len(self.gates)} terminals provisioned (R503 simulator each) and registered: {zones}")
        return registry

    def _first_list(self, authority: Any) -> bytes:
        granted = int(time.time()) - 60
        entries = [
            authority.entry("p-anna", ["face", "fingerprint"], granted_at=granted),
            authority.entry("p-ben", ["fingerprint"], granted_at=granted, card=CARD_BEN, scope=[LOBBY]),
            authority.entry("p-cara", ["fingerprint"], granted_at=granted),
            authority.entry("p-dan", ["face"], granted_at=granted),
            authority.entry("p-eve", [], granted_at=granted, card=CARD_EVE),
        ]
        message: bytes = authority.issue(entries, now=time.time())
        return message

    def _apply_list(self, gate: FleetGate, path: Path) -> None:
        from edge.cli.main import main

        assert gate.config_path is not None
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["consent", "--config", str(gate.config_path), "apply", str(path)])
        if code != 0:
            raise EdgeError(f"edge consent apply failed at {gate.name}: {out.getvalue().strip()[-300:]}")

    def _start_agent(self, gate: FleetGate) -> None:
        from edge.agent.assembly import build_wired
        from edge.agent.wiring import run_agent
        from edge.config.load import load_config
        from edge.ops.notify import Notifier
        from edge.state import StateDir

        assert gate.config_path is not None
        config, profile = load_config(gate.config_path)
        wired = build_wired(config, profile, StateDir(gate.root), pipeline=gate.pipeline)
        gate.thread = threading.Thread(
            target=lambda: gate.codes.append(run_agent(config, profile, wired, notifier=Notifier({}), stop=gate.stop)),
            name=f"demo-agent-{gate.number}",
        )
        gate.thread.start()
        self.cleanups.append(lambda: self._stop_agent(gate))

    def _stop_agent(self, gate: FleetGate) -> None:
        gate.stop.set()
        if gate.thread is not None:
            gate.thread.join(30)
            gate.thread = None

    def _enrol_at(
        self, gate: FleetGate, first_list: bytes, cast_faces: dict[str, Any], fingers: dict[str, Any]
    ) -> float:
        """Gate 1's installer enrols anna and dan by face, ben and cara on the sensor; each enrolment
        is sealed for the gates in the person's scope as it is stored. Returns when it finished."""
        from edge.errors import ConsentError
        from edge.state import StateDir
        from provisioning import hooks

        ports = hooks.enrol_ports(StateDir(gate.root), pipeline=gate.pipeline)
        assert ports is not None
        sim = gate.sim
        try:
            assert ports.apply_list is not None
            ports.apply_list(first_list, time.time())  # the installer's copy of the list
            try:  # consent is checked before any frame is read
                enrol_by_photos(
                    ports, gate.pipeline, "p-eve", cast_faces["p-anna"].enrol, self.opts.step_timeout_s, share=True
                )
                self.check("enrolment of p-eve is refused at gate-1 (no consent)", False, "it was accepted")
            except ConsentError:
                self.check("enrolment of p-eve is refused at gate-1 (no consent)", True)
            for who in ("p-anna", "p-dan"):
                timeout_s = max(30.0, self.opts.step_timeout_s / 2)
                report = enrol_by_photos(ports, gate.pipeline, who, cast_faces[who].enrol, timeout_s, share=True)
                self.say(
                    f"gate-1: enrolled {who} by face ({report.stored} templates), sealed for "
                    f"{report.shared_with} other gate(s)"
                )
            for who, finger in fingers.items():
                timeout_s = max(20.0, self.opts.step_timeout_s / 2)  # slower under emulation
                report = enrol_on_simulator(ports, sim, who, finger, timeout_s, share=True)
                self.say(
                    f"gate-1: enrolled {who} on the sensor (slot {report.sensor_slot}); the module's template "
                    f"read back and sealed for {report.shared_with} other gate(s)"
                )
        finally:
            for close in reversed(ports.closers):
                close()
        return time.monotonic()

    # ------------------------------------------------------------------ the scenario

    def _site_scenario(
        self,
        authority: Any,
        broker_url: str,
        cast_faces: dict[str, Any],
        fingers: dict[str, Any],
        enrolled_at: float,
        work: Path,
    ) -> None:
        from edge.consent.distribution import Broker, publish_list

        wait = self.opts.step_timeout_s
        ev = self.events
        last = self.gates[-1]
        others = self.gates[1:]
        lobby = [g for g in others if g.zone == LOBBY]

        def everywhere(subject: str, modality: str, gates: list[FleetGate]) -> Callable[[list[Any]], bool]:
            return lambda es: all(synced(es, g.device_id, subject, modality) for g in gates)

        wanted = [("p-anna", "face", others), ("p-dan", "face", others), ("p-cara", "fingerprint", others)]
        wanted.append(("p-ben", "fingerprint", lobby))
        for subject, modality, gates in wanted:
            if not gates:
                continue
            ok = ev.wait(everywhere(subject, modality, gates), wait)
            names = ", ".join(g.name for g in gates)
            self.check(f"{subject}'s {modality} template reached {names} (sealed, stored, reported)", ok)
        self.say(f"  every synced template reported {time.monotonic() - enrolled_at:.1f} s after gate-1's enrolments")
        self.check(
            f"p-ben's fingerprint was not sent to {last.name} (his consent covers the lobby only)",
            not synced(ev.snapshot(), last.device_id, "p-ben", "fingerprint"),
        )
        for gate in self.gates:
            self.check(f"p-anna granted by face at {gate.name}", ev.wait(_granted_at(gate, "face", "p-anna"), wait))
        self.check(
            f"p-dan granted by face at {last.name}",
            ev.wait(lambda es: bool(access(at_gate(es, last.device_id), "granted", "face", "p-dan")), wait),
        )
        self._finger("p-cara", fingers["p-cara"].gate, last, granted=True)
        if lobby:
            self._finger("p-ben", fingers["p-ben"].gate, lobby[0], granted=True)
        self._finger("p-ben", fingers["p-ben"].gate, last, granted=False)
        self._card("p-ben", CARD_BEN, last)
        self._card("p-eve", CARD_EVE, last)

        self.say("consent authority: p-dan withdraws; list v2 signed and published")
        published = time.monotonic()
        publish_list(Broker(broker_url), self.site, authority.withdraw("p-dan", now=time.time()))

        def receipts(es: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
            return {
                str(e["device"]): e["body"]
                for e in es
                if e["kind"] == "deletion_receipt" and e["body"]["subject"] == "p-dan"
            }

        ok = ev.wait(lambda es: len(receipts(es)) >= len(self.gates), wait)
        took = time.monotonic() - published
        got = receipts(ev.snapshot())
        self.check(
            f"p-dan's withdrawal: a signed deletion receipt from each of the {len(self.gates)} gates",
            ok and all(got.get(g.device_id, {}).get("reason") == "withdrawn" for g in self.gates),
            f"{len(got)} receipt(s), the last verified {took:.1f} s after the list was published",
        )
        code, out = self._status("p-dan", authority, work)
        for line in out.strip().splitlines():
            self.say(f"  {line}")
        self.check("edge-site consent status p-dan: every gate confirmed the deletion (exit 0)", code == 0)
        if ok:
            seq = max(e["seq"] for e in at_gate(ev.snapshot(), last.device_id) if e["kind"] == "deletion_receipt")
            cycle_s = len(cast_faces) / max(self.opts.fps, 0.1)
            denied_after = ev.wait(
                lambda es: any(e["seq"] > seq for e in access(at_gate(es, last.device_id), "denied", "face", None)),
                wait,
            )
            time.sleep(min(2 * cycle_s, 10.0))
            late = [
                e for e in access(at_gate(ev.snapshot(), last.device_id), "granted", "face", "p-dan") if e["seq"] > seq
            ]
            self.check(f"p-dan's face is refused at {last.name} after the withdrawal", denied_after and not late)

    def _finger(self, subject: str, ref: str, gate: FleetGate, *, granted: bool) -> None:
        ev = self.events
        wait = self.opts.step_timeout_s
        before = len(ev.snapshot())
        gate.sim.control.place(ref)
        if granted:
            ok = ev.wait(lambda es: bool(access(at_gate(es, gate.device_id), "granted", "fingerprint", subject)), wait)
            gate.sim.control.lift()
            self.check(f"{subject} granted by fingerprint at {gate.name}", ok)
            return
        ok = ev.wait(lambda es: bool(access(at_gate(es[before:], gate.device_id), "denied", "fingerprint", None)), wait)
        gate.sim.control.lift()
        matched = access(at_gate(ev.snapshot(), gate.device_id), "granted", "fingerprint", subject)
        self.check(
            f"{subject}'s finger is refused at {gate.name} (out of his scope: no template there)", ok and not matched
        )

    def _card(self, subject: str, card: str, gate: FleetGate) -> None:
        from edge.agent.assembly import credential_control
        from edge.state import StateDir

        fd = os.open(credential_control(StateDir(gate.root)), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"card:{card}\n".encode())
        finally:
            os.close(fd)
        self.check(
            f"{subject} granted by card at {gate.name}",
            self.events.wait(
                lambda es: bool(access(at_gate(es, gate.device_id), "granted", "card", subject)),
                self.opts.step_timeout_s,
            ),
        )

    def _status(self, subject: str, authority: Any, work: Path) -> tuple[int, str]:
        """``edge-site consent status`` over what the listener verified, until it confirms (or time is up)."""
        deadline = time.monotonic() + self.opts.step_timeout_s
        events = work / "verified.jsonl"
        while True:
            code, out = _site_cli(
                "consent", "--dir", str(authority.authority.root), "status", subject, "--events", str(events)
            )
            if code == 0 or time.monotonic() > deadline:
                return code, out
            time.sleep(0.5)


def _granted_at(gate: FleetGate, modality: str, subject: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: bool(access(at_gate(events, gate.device_id), "granted", modality, subject))


class _Starting:
    """A fingerprint simulator starting in the background while the models load."""

    def __init__(self, sim: Any, thread: threading.Thread, errors: list[BaseException]) -> None:
        self.sim = sim
        self.thread = thread
        self.errors = errors

    def join(self) -> None:
        self.thread.join(180)
        if self.errors:
            raise self.errors[0]

    def stop(self) -> None:
        self.thread.join(120)
        self.sim.stop()

    @property
    def port(self) -> str:
        return str(self.sim.port)

    @property
    def control(self) -> Any:
        return self.sim.control


def run_fleet_demo(opts: Options) -> int:
    return FleetDemo(opts).run()
