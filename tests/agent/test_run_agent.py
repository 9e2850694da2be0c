"""The agent's lifecycle: READY, WATCHDOG and STOPPING to a real notify socket; SIGTERM stops `edge run`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.agent.wired import Wired
from edge.agent.wiring import run_agent
from edge.config.load import load_profile, shipped_profiles
from edge.config.schema import AgentConfig
from edge.door import DoorController, SimLines
from edge.events.sink import MemorySink
from edge.ops.notify import Notifier
from edge.testing.mosquitto import free_port
from tests.agent.doubles import SUBJECT_ON_SENSOR, MemoryConsent, MemoryGallery, RepeatingSensor

REPO = Path(__file__).parents[2]


def receive(sock: socket.socket, until: bytes, timeout: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(512))
        except TimeoutError:
            break
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} in {got}")


@pytest.fixture
def notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    return sock


def test_run_agent_notifies_feeds_the_watchdog_grants_and_stops(notify_socket: socket.socket, tmp_path: Path) -> None:
    config = AgentConfig.model_validate(
        {"device": {"site": "s1", "gate": "g1", "state_dir": str(tmp_path)}, "metrics": {"enabled": False}}
    )
    profile = load_profile(shipped_profiles()["sim"])
    gallery = MemoryGallery()
    gallery.slots[5] = SUBJECT_ON_SENSOR
    sink = MemorySink()
    lines = SimLines()
    wired = Wired(
        gallery=gallery,
        consent=MemoryConsent(consents={(SUBJECT_ON_SENSOR, "fingerprint")}),
        sink=sink,
        fingerprint=RepeatingSensor,
        door=DoorController(lines),
    )
    notifier = Notifier(
        {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    )
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(run_agent(config, profile, wired, notifier=notifier, stop=stop)), name="agent"
    )
    thread.start()
    try:
        assert receive(notify_socket, b"READY=1")[-1].startswith(b"READY=1\nSTATUS=gate g1 running (fingerprint)")
        receive(notify_socket, b"WATCHDOG=1")
        deadline = time.monotonic() + 10
        while not sink.of_kind("access") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.of_kind("access")[0]["subject"] == SUBJECT_ON_SENSOR
        assert any(state for _, state in lines.history), "the door never opened"
    finally:
        stop.set()
        thread.join(10)
        notifier.close()
        notify_socket.close()
    assert codes == [0]
    assert not lines.energised
    assert sink.of_kind("health")[0]["modalities"] == []  # the first health event precedes the devices


def test_edge_run_stops_cleanly_on_sigterm_and_logs_no_subject(notify_socket: socket.socket, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = tmp_path / "edge.toml"
    config.write_text(
        f'version = 1\n[device]\nsite = "s1"\ngate = "g1"\nprofile = "sim"\nstate_dir = "{state}"\n'
        f"[camera]\nenabled = false\n[metrics]\nport = {free_port()}\n"
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.getsockname(),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(config), "--wiring", "tests.agent.doubles:build_wired"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        receive(notify_socket, b"READY=1", timeout=30)
        time.sleep(0.5)  # let a few fingers through the gate
        proc.send_signal(signal.SIGTERM)
        receive(notify_socket, b"STOPPING=1")
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        notify_socket.close()
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines()]
    messages = [r["msg"] for r in records]
    assert "access granted by fingerprint (granted)" in messages
    assert "stopping" in messages
    assert SUBJECT_ON_SENSOR not in stderr


def test_edge_run_on_an_unprovisioned_state_dir_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from edge.cli.main import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sigterm = signal.getsignal(signal.SIGTERM)

    state = tmp_path / "state"
    config = tmp_path / "edge.toml"
    config.write_text(f'version = 1\n[device]\nsite = "s1"\nstate_dir = "{state}"\n[metrics]\nenabled = false\n')
    try:
        assert main(["run", "--config", str(config)]) == 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "holds no device identity" in err
    assert "edge-provision init" in err
    assert signal.getsignal(signal.SIGTERM) is sigterm  # the command gives the signal handlers back
