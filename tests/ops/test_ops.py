"""sd_notify over a real UNIX datagram socket, the redaction filter, the loopback metrics endpoint."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.ops.logs import Redactor, setup_logging
from edge.ops.metrics import Metrics
from edge.ops.notify import Notifier


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_ready_watchdog_stopping_arrive_as_datagrams(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval_s == 10.0  # half of WatchdogSec
    assert notifier.ready("gate running")
    assert sock.recv(256) == b"READY=1\nSTATUS=gate running"
    assert notifier.watchdog()
    assert sock.recv(256) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(256) == b"STOPPING=1"
    notifier.close()


def test_abstract_socket_name_is_sent_with_a_leading_nul() -> None:
    name = f"gate-edge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(64) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_outside_systemd_notify_is_a_noop_and_watchdog_for_another_pid_is_ignored() -> None:
    assert not Notifier({}).ready()
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None
    assert not other.ready()  # the socket is missing: a warning, never an exception


def _log_through() -> tuple[io.StringIO, Redactor, logging.Logger]:
    stream = io.StringIO()
    redactor = setup_logging("debug", stream=stream)
    return stream, redactor, logging.getLogger("edge.test.redaction")


def test_no_secret_subject_or_biometric_bytes_reach_a_log_line() -> None:
    stream, redactor, log = _log_through()
    subject = "subj-7f3a9c"
    password = "hunter2-broker-pw"
    redactor.protect(subject)
    redactor.protect(password, "secret")
    embedding = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    template = bytes(range(256)) * 2
    key_hex = "ab" * 32
    log.info("matched %s with %s", subject, embedding)
    log.info("template %s stored for %s", template, subject)
    log.warning("broker password was %s and key %s", password, key_hex)
    log.info("features %s", [float(x) for x in embedding])
    log.info("decision", extra={"subject_ref": subject, "broker_password": password, "private_key": key_hex})
    try:
        raise ValueError(f"bad record of {subject}")
    except ValueError:
        log.exception("store failed")
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 6
    for needle in (subject, password, key_hex, template.hex()[:32], repr(float(embedding[0]))[:8]):
        assert needle not in text, f"{needle[:12]}... leaked into the logs"
    assert "<subject>" in lines[0]["msg"]
    assert "<array (128,) redacted>" in lines[0]["msg"]
    assert "<512 bytes redacted>" in lines[1]["msg"]
    assert "<128 floats redacted>" in lines[3]["msg"]
    assert lines[4]["broker_password"] == "********"
    assert lines[4]["subject_ref"] == "<subject>"
    assert "<subject>" in lines[5]["exc"]


def test_log_lines_are_json_with_level_and_logger() -> None:
    stream, _, log = _log_through()
    log.info("door released for %.1f s", 3.0)
    doc = json.loads(stream.getvalue().splitlines()[-1])
    assert doc["msg"] == "door released for 3.0 s"
    assert doc["level"] == "info"
    assert doc["logger"] == "edge.test.redaction"


def test_metrics_endpoint_serves_on_loopback_and_stops() -> None:
    metrics = Metrics()
    metrics.decisions.labels(modality="face", outcome="granted").inc()
    metrics.device_up.labels(device="camera").set(0)
    port = metrics.serve("127.0.0.1", 0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    assert 'gate_access_decisions_total{modality="face",outcome="granted"} 1.0' in body
    assert 'gate_device_up{device="camera"} 0.0' in body
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_metrics_refuse_a_non_loopback_bind() -> None:
    with pytest.raises(ConfigError) as info:
        Metrics().serve("0.0.0.0", 0)
    assert info.value.problems[0].key_path == "metrics.bind"


def test_metrics_port_in_use_is_a_clear_error() -> None:
    from edge.errors import TransportError

    first = Metrics()
    port = first.serve("127.0.0.1", 0)
    try:
        with pytest.raises(TransportError, match="cannot serve metrics") as info:
            Metrics().serve("127.0.0.1", port)
        assert "metrics.port" in info.value.hint
    finally:
        first.close()


def test_subject_ids_are_scrubbed_as_words_among_a_whole_gallery() -> None:
    redactor = Redactor()
    redactor.protect_all(f"subj-{i:06d}" for i in range(100_000))
    assert redactor.scrub("granted subj-004242.") == "granted <subject>."
    assert redactor.scrub("(subj-000001, subj-099999)") == "(<subject>, <subject>)"
    assert redactor.scrub("subject=subj-000007") == "subject=<subject>"
    assert redactor.scrub("subj-1000000 is not enrolled") == "subj-1000000 is not enrolled"
