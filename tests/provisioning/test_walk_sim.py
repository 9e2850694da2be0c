"""The installer's whole walk against the simulators and a real Mosquitto: init, trust, profile,
broker, selftest, enrol (face from replayed photos, fingerprint through the simulated R503's enrol
workflow), run (`edge run` as systemd starts it) and factory-reset. Each step is checked by what it
changed on disk, permissions included, and by what the sensor and the broker saw."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from edge.datasets import REPO_ROOT, datasets_root
from edge.testing.mosquitto import Mosquitto
from tests.provisioning.conftest import Run

# The demo and the walk need every subsystem; a build without one cannot run them at all.
for _module in ("edge.gallery.store", "edge.vision.pipeline", "edge.fingerprint.sim.process"):
    pytest.importorskip(_module, reason=f"{_module} is not in this build")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fpsim() -> Iterator[Any]:
    from edge.fingerprint.sim.process import SimulatorProcess  # type: ignore[import-not-found,unused-ignore]

    sim = SimulatorProcess(model="r503")
    sim.start()
    yield sim
    print(f"edge-fpsim stderr:\n{sim.stop()}")  # shown by pytest when the test failed


@pytest.fixture(scope="module")
def pipeline() -> Any:
    from edge.vision.pipeline import FacePipeline  # type: ignore[import-not-found,unused-ignore]

    # with the liveness check the installer's config has by default: photos it calls attacks are not cast
    return FacePipeline.load(REPO_ROOT / "models", "float32", 2, liveness="int8")


def test_installer_walk_on_simulators(
    provision: Run,
    state_dir: Path,
    tmp_path: Path,
    mosquitto: Mosquitto,
    fpsim: Any,
    pipeline: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edge.demo import data as demo_data
    from edge.demo.stack import SiteAuthority

    faces = demo_data.choose_photos(
        demo_data.candidate_faces(datasets_root(), REPO_ROOT / ".cache" / "demo")[0], pipeline, 1
    )
    assert faces, "no usable photo pair"
    person = faces[0]
    finger = demo_data.candidate_fingers(datasets_root())[0][0]
    authority = SiteAuthority(tmp_path / "site", "walk-site")

    # init: identity and gallery key, 0600 in a 0700 directory
    assert provision("init", "--site", "walk-site", "--gate", "walk-1").code == 0
    assert mode(state_dir) == 0o700
    for name in ("identity.key", "gallery.key", "edge.toml"):
        assert mode(state_dir / name) == 0o600, name

    # trust: authority key pinned (0644 public), credential key installed 0600
    pub = authority.public_key_files()[0]
    result = provision("trust", "--consent-key", str(pub), "--credential-key", str(authority.credential_key_path))
    assert result.code == 0, result.err
    cred = state_dir / "trust" / "consent-credential.key"
    assert cred.read_bytes() == authority.authority.credential_key()
    assert mode(cred) == 0o600
    assert authority.authority.credential_key().hex() not in result.out
    bad = provision("trust", "--credential-key", "abcd")
    assert bad.code == 1
    assert "64 hex" in bad.err

    # profile + the installer's device settings (camera folder, simulator pty), broker with a live test
    assert provision("profile", "sim").code == 0
    camera_dir = tmp_path / "camera"
    camera_dir.mkdir()
    for photo in person.enrol:
        shutil.copy(photo, camera_dir / photo.name)
    from edge.state import StateDir
    from provisioning.files import read_settings, save_settings, section

    sd = StateDir(state_dir)
    doc = read_settings(sd)
    section(doc, "camera")["source"] = str(camera_dir)
    section(doc, "camera")["fps"] = 0.0
    section(doc, "fingerprint")["port"] = fpsim.port
    section(doc, "face")["models_dir"] = str(REPO_ROOT / "models")
    section(doc, "metrics")["enabled"] = False
    save_settings(sd, doc)
    assert provision("broker", "--url", mosquitto.url).code == 0
    assert tomllib.loads((state_dir / "edge.toml").read_text())["mqtt"]["url"] == mosquitto.url

    # selftest: every device check passes on the simulators
    result = provision("selftest", "--json")
    checks = {c["name"]: c for c in result.json()["checks"]}
    for name in ("storage", "settings", "trust", "broker", "camera", "fingerprint", "models"):
        assert checks[name]["status"] == "pass", checks[name]
    assert "face detected" in checks["camera"]["detail"]
    assert "0/" in checks["fingerprint"]["detail"]  # an empty library

    # consent list in force (as `edge consent apply` installs it), then enrolment
    now = time.time()
    message = authority.issue(
        [
            authority.entry("p-face", ["face"], granted_at=int(now) - 60),
            authority.entry("p-finger", ["fingerprint"], granted_at=int(now) - 60),
            authority.entry("p-none", [], granted_at=int(now) - 60, card="77"),
        ],
        now=now,
    )
    list_file = tmp_path / "v1.cose"
    list_file.write_bytes(message)
    from edge.cli.main import main as edge_main

    assert edge_main(["consent", "--config", str(state_dir / "edge.toml"), "apply", str(list_file)]) == 0
    refused = provision("enrol", "p-none", "--modality", "face")
    assert refused.code == 1
    assert "no active consent" in refused.err
    assert not (state_dir / "gallery.sqlite3").exists() or b"p-none" not in (state_dir / "gallery.sqlite3").read_bytes()
    result = provision("enrol", "p-face", "--modality", "face", "--frames", "3", "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["stored"] == 3
    assert report["modality"] == "face"
    assert b"p-face" not in (state_dir / "gallery.sqlite3").read_bytes()  # subject ids are sealed too

    refs = iter(finger.enrol)
    echo = click.echo

    def drive(message: object = None, *args: Any, **kwargs: Any) -> None:
        text = str(message).strip().lower()
        if text.startswith("lift"):
            fpsim.control.lift()
        elif text.startswith("place"):
            fpsim.control.place(next(refs, finger.enrol[-1]))
        echo(message, *args, **kwargs)

    monkeypatch.setattr(click, "echo", drive)
    result = provision("enrol", "p-finger", "--modality", "fingerprint", "--captures", "2")
    monkeypatch.setattr(click, "echo", echo)
    fpsim.control.lift()
    assert result.code == 0, result.out + result.err
    assert "sensor slot" in result.out
    assert fpsim.control.status()["templates"] == 1

    # run: `edge run` as systemd starts it; a finger at the gate, a signed grant on the broker
    events: list[dict[str, Any]] = []
    stop_listen = threading.Event()
    listener_thread = _listen(mosquitto, authority, state_dir, tmp_path, events, stop_listen)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(state_dir / "edge.toml")],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def seen() -> tuple[bool, bool, bool]:
        """(the finger's grant, the face's grant, enrolment and health events) among those verified"""
        now = list(events)  # appended by the listener's thread
        grants = [e["body"] for e in now if e["kind"] == "access" and e["body"]["decision"] == "granted"]
        return (
            any(g["subject"] == "p-finger" and g["modality"] == "fingerprint" for g in grants),
            any(g["subject"] == "p-face" and g["modality"] == "face" for g in grants),
            {"enrolment", "health"} <= {e["kind"] for e in now},
        )

    try:
        fpsim.control.place(finger.gate)
        # wait for every event asserted below, not only the finger's: the camera's grant and the
        # queued enrolment events may arrive after it on a busy machine (it failed so once)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(seen()):
            time.sleep(0.1)
        fpsim.control.lift()
        finger_granted, face_granted, kinds_seen = seen()
        assert finger_granted, events
        assert face_granted, events
        assert kinds_seen, events
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
        stop_listen.set()
        listener_thread.join(10)
    assert agent.returncode == 0, stderr[-2000:]
    assert "p-face" not in stderr
    assert "p-finger" not in stderr
    for name in ("outbox.sqlite3", "consent.sqlite3", "audit.sqlite3", "gallery.sqlite3"):
        assert (state_dir / name).exists(), name

    # factory reset: the sensor's library is erased too, keys shredded, an empty 0700 dir left
    result = provision("factory-reset", "--yes", "--json")
    assert result.code == 0, result.out + result.err
    assert result.json()["erased"]["sensor library"] == "erased (1 templates)"
    assert fpsim.control.status()["templates"] == 0
    assert mode(state_dir) == 0o700
    assert sorted(p.name for p in state_dir.rglob("*")) == ["trust"]


def _listen(
    broker: Mosquitto,
    authority: Any,
    state_dir: Path,
    tmp_path: Path,
    events: list[dict[str, Any]],
    stop: threading.Event,
) -> threading.Thread:
    from edge.cli.site_listen import Listener
    from edge.demo.stack import device_public_key
    from edge.site.registry import Registry
    from edge.site.verifier import Verifier
    from edge.transport.mqtt import MqttSettings

    registry = authority.registry({"t": device_public_key(state_dir)}, tmp_path / "registry.json")

    class Out:
        def write(self, text: str) -> None:
            events.extend(json.loads(line) for line in text.splitlines())

        def flush(self) -> None:
            pass

    listener = Listener(
        MqttSettings.from_url(broker.url),
        Verifier(Registry.load(registry)),
        Out(),  # type: ignore[arg-type]
        None,
        share=None,
        site="walk-site",
        client_id=None,
    )
    thread = threading.Thread(target=lambda: listener.run(count=None, timeout_s=None, stop=stop), name="walk-listen")
    thread.start()
    assert listener.subscribed.wait(10)
    return thread
