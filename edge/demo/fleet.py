"""``edge demo --gates N`` (N >= 2): a site of N gates on one broker, enrol once (issue 14).

Every gate is provisioned with the installer's commands and runs the agent as ``edge run`` does
(camera replay of the same gate photos, card reader; no fingerprint sensor). Gates 1..N-1 stand in
the lobby, gate N in the car park. ``p-anna`` consents site-wide; ``p-dan`` consents to his face in
the lobby only and also holds a card. Both enrol once, at gate 1, which seals their templates to the
gates their consent covers. The demo checks:

- p-anna is granted by face at every gate; p-dan at every lobby gate;
- at the car-park gate nobody matches p-dan's face (his templates never went there), and his card
  still opens it;
- p-anna withdraws: every gate deletes her templates and publishes its own signed receipt, and
  ``edge-site consent status p-anna`` confirms all of them (exit 0);
- every event of every gate is verified by ``edge-site listen`` against the site registry.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edge.datasets import REPO_ROOT
from edge.demo.run import Demo, access

CARD_DAN = "0077 4455"


class FleetDemo(Demo):
    def _run(self) -> int:
        opts = self.opts
        n = opts.gates
        work = opts.workdir or Path(tempfile.mkdtemp(prefix="edge-demo-fleet-"))
        work.mkdir(parents=True, exist_ok=True)
        if opts.workdir is None:
            self.cleanups.append(lambda: shutil.rmtree(work, ignore_errors=True))
        from edge.datasets import datasets_root

        datasets = opts.datasets or datasets_root()
        self.site = f"demo-{secrets.token_hex(3)}"
        self.say(f"edge demo --gates {n}: site {self.site}, work dir {work}")
        broker_url = self.broker(work)

        from edge.demo import data as demo_data
        from edge.vision.pipeline import FacePipeline

        pipeline = FacePipeline.load(opts.models_dir, "float32", 2, liveness="int8")
        material = demo_data.load(datasets, opts.cache, pipeline, faces_wanted=2)
        if len(material.faces) < 2:
            self.say("cannot run the demo: fewer than two people's photos passed the quality and match checks")
            return 2
        cast = {"p-anna": material.faces[0], "p-dan": material.faces[1]}
        gate_dir = work / "camera"
        gate_dir.mkdir()
        for i, (who, person) in enumerate(cast.items()):
            assert person.gate is not None
            shutil.copy(person.gate, gate_dir / f"{i:02d}-{who}{person.gate.suffix}")

        from edge.consent.listformat import Gate
        from edge.crypto.keys import device_id, load_box_key, load_signing_key
        from edge.demo.stack import SiteAuthority, provision_terminal
        from edge.state import StateDir

        authority = SiteAuthority(work / "site", self.site)
        names = [f"gate-{i}" for i in range(1, n + 1)]
        zones = {name: ("car-park" if i == n else "lobby") for i, name in enumerate(names, start=1)}
        roots = {name: work / name for name in names}
        configs = {}
        for name in names:
            configs[name] = provision_terminal(
                roots[name],
                authority,
                broker_url=broker_url,
                gate=name,
                settings={
                    "camera": {"source": str(gate_dir), "fps": opts.fps},
                    "face": {"models_dir": str(opts.models_dir)},
                    "fingerprint": {"enabled": False},
                    "policy": {"failures_before_backoff": 50},
                    "metrics": {"enabled": False},
                },
            )
        ids: dict[str, str] = {}
        gates = []
        for name in names:
            state = StateDir(roots[name])
            identity = load_signing_key(state.identity_key)
            box = load_box_key(state.sync_key)
            ids[name] = device_id(identity.verify_key)
            gates.append(Gate(ids[name], bytes(identity.verify_key), bytes(box.public_key), frozenset({zones[name]})))
        authority.authority.set_gates(sorted(gates, key=lambda g: g.id))
        self.say(f"{n} terminals provisioned; the roster puts {', '.join(f'{k} in the {v}' for k, v in zones.items())}")

        now = time.time()
        granted = int(now) - 60
        anna = authority.entry("p-anna", ["face"], granted_at=granted)
        dan = authority.entry("p-dan", ["face"], granted_at=granted, card=CARD_DAN)
        from dataclasses import replace

        dan = replace(dan, scope=frozenset({"lobby"}))
        first_list = authority.issue([anna, dan], now=now)
        from edge.consent.distribution import Broker, publish_list

        publish_list(Broker(broker_url), self.site, first_list)
        self.say("consent list v1: p-anna site-wide, p-dan's face in the lobby only (and a card)")

        registry = authority.registry(
            {name: bytes(load_signing_key(StateDir(roots[name]).identity_key).verify_key) for name in names},
            work / "registry.json",
        )
        self.listener(work, broker_url, registry)
        self._enrol_at_gate_1(StateDir(roots[names[0]]), first_list, pipeline, cast)

        from edge.agent.subsystems import build_wired, credential_control
        from edge.agent.wiring import run_agent
        from edge.config.load import load_config
        from edge.ops.notify import Notifier

        stop = threading.Event()
        threads: list[threading.Thread] = []
        codes: list[int] = []
        for i, name in enumerate(names):
            config, profile = load_config(configs[name])
            # gate 1 reuses the demo's models; the others load their own (interpreters are per thread)
            wired = build_wired(config, profile, StateDir(roots[name]), pipeline=pipeline if i == 0 else None)
            thread = threading.Thread(
                target=lambda c=config, p=profile, w=wired: codes.append(
                    run_agent(c, p, w, notifier=Notifier({}), stop=stop)
                ),
                name=f"demo-agent-{name}",
            )
            thread.start()
            threads.append(thread)

        def stop_agents() -> None:
            stop.set()
            for thread in threads:
                thread.join(30)

        self.cleanups.append(stop_agents)
        self.say(f"{n} agents running")
        self._fleet_scenario(authority, broker_url, names, ids, credential_control(StateDir(roots[names[-1]])), work)
        stop_agents()
        self.check("every agent stopped cleanly", codes == [0] * n)
        return self._summary()

    def _enrol_at_gate_1(self, state: Any, first_list: bytes, pipeline: Any, cast: dict[str, Any]) -> None:
        from edge.vision.camera import ReplayCamera
        from provisioning import enrol, hooks

        ports = hooks.enrol_ports(state, "face", pipeline=pipeline)
        assert ports is not None
        assert ports.apply_list is not None
        try:
            ports.apply_list(first_list, time.time())
            for who, person in cast.items():
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
                        timeout_s=30,
                        share=ports.share_face,
                    )
                finally:
                    camera.close()
                self.say(f"enrolled {who} at gate-1; sealed copies sent to {report.shared_with} other gate(s)")
        finally:
            for close in reversed(ports.closers):
                close()

    def _fleet_scenario(
        self, authority: Any, broker_url: str, names: list[str], ids: dict[str, str], fifo: Path, work: Path
    ) -> None:
        import os

        wait = self.opts.step_timeout_s
        ev = self.events

        def at(gate: str, decision: str, modality: str, subject: str | None) -> Any:
            return lambda es: bool([e for e in access(es, decision, modality, subject) if e["device"] == ids[gate]])

        for name in names:
            self.check(
                f"p-anna (enrolled at gate-1) granted by face at {name}",
                ev.wait(at(name, "granted", "face", "p-anna"), wait),
            )
        for name in names[:-1]:
            self.check(f"p-dan granted by face at {name} (lobby)", ev.wait(at(name, "granted", "face", "p-dan"), wait))
        car_park = names[-1]
        refused = ev.wait(at(car_park, "denied", "face", None), wait)
        time.sleep(min(2 * 2 / max(self.opts.fps, 0.1), 5.0))  # two camera cycles more
        stray = [e for e in access(ev.snapshot(), "granted", "face", "p-dan") if e["device"] == ids[car_park]]
        self.check(
            f"p-dan's face is not matched at {car_park} (out of his scope: no templates there)", refused and not stray
        )
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"card:{CARD_DAN}\n".encode())
        finally:
            os.close(fd)
        self.check(
            f"p-dan still let through by card at {car_park}", ev.wait(at(car_park, "granted", "card", "p-dan"), wait)
        )

        from edge.consent.distribution import Broker, publish_list

        publish_list(Broker(broker_url), self.site, authority.withdraw("p-anna", now=time.time()))
        self.say("consent authority: p-anna withdraws; list v2 signed and published")

        def receipts(es: list[dict[str, Any]]) -> set[str]:
            return {e["device"] for e in es if e["kind"] == "deletion_receipt" and e["body"].get("subject") == "p-anna"}

        got = ev.wait(lambda es: receipts(es) == set(ids.values()), wait)
        self.check(f"p-anna's withdrawal: a signed deletion receipt from each of the {len(names)} gates", got)
        time.sleep(0.5)
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from edge.cli.site import entry; entry()",
                "consent",
                "--dir",
                str(authority.authority.root),
                "status",
                "p-anna",
                "--events",
                str(work / "verified.jsonl"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO_ROOT,
        )
        for line in proc.stdout.splitlines():
            self.say("  status | " + line)
        self.check("edge-site consent status p-anna confirms every gate (exit 0)", proc.returncode == 0)
