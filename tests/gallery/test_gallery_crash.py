"""SIGKILL a child process in the middle of enrolment and deletion loops; the store must stay whole.

The child prints ``ack <i>`` only after ``enrol``/``delete_subject`` returned, i.e. after commit.
After the kill: every acknowledged change is there, nothing is half-written (each face subject has
all its templates and a record), and the store opens and searches normally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge.gallery.store import Gallery
from edge.state import StateDir

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = 3

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from pathlib import Path
    from edge.gallery.store import Gallery
    from edge.state import StateDir

    mode, root, start, stop = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    def vectors(i):
        x = np.random.default_rng(i).standard_normal((3, 128)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    with Gallery.open(StateDir(root), create_key=True) as g:
        print("ready", flush=True)
        for i in range(start, stop):
            if mode == "enrol":
                g.enrol(f"s{i}", "face", templates=list(vectors(i)))
                g.enrol(f"s{i}", "fingerprint", sensor_slot=i)
            else:
                g.delete_subject(f"s{i}")
            print(f"ack {i}", flush=True)
    """
)


def vectors(i: int) -> np.ndarray:
    x = np.random.default_rng(i).standard_normal((TEMPLATES, 128)).astype(np.float32)
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def run_and_kill(mode: str, state: StateDir, start: int, stop: int, acks_before_kill: int) -> list[int]:
    """Run the child loop, SIGKILL it after ``acks_before_kill`` acks; return the acked indices."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(state.root), str(start), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        for line in proc.stdout:
            acked.append(int(line.split()[1]))
            if len(acked) >= acks_before_kill:
                proc.send_signal(signal.SIGKILL)  # mid-loop: the next change is in flight
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the child finished before it was killed"
    return acked


def check_consistent(g: Gallery, in_flight: int) -> None:
    """Every subject is whole: face record with all its templates, and its sensor slot (the
    subject in flight may lack the slot: its face and finger are two separate enrolments)."""
    assert g.subjects("face") == g.subjects()
    assert g.subjects("face") - g.subjects("fingerprint") <= {f"s{in_flight}"}
    assert len(g) == TEMPLATES * len(g.subjects())
    for subject in g.subjects():
        i = int(subject[1:])
        if i != in_flight:
            assert g.subject_for_slot(i) == subject
        for v in vectors(i):
            result = g.search(v)
            assert result.subject == subject
            assert result.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kill_after", [3, 17])
def test_sigkill_during_enrolment_loses_nothing_acknowledged(tmp_path, kill_after):
    state = StateDir(tmp_path / "state")
    acked = run_and_kill("enrol", state, 0, 10_000, kill_after)
    with Gallery.open(state) as g:
        check_consistent(g, max(acked) + 1)
        present = {int(s[1:]) for s in g.subjects()}
        assert set(acked) <= present
        # at most the one change in flight may have committed without its ack
        assert present - set(acked) <= {max(acked) + 1}
        # the store keeps working: enrol more after the crash
        g.enrol("s9999", "face", templates=list(vectors(9999)))
        g.enrol("s9999", "fingerprint", sensor_slot=9999)
        check_consistent(g, max(acked) + 1)


@pytest.mark.parametrize("kill_after", [2, 11])
def test_sigkill_during_deletion_loses_nothing_acknowledged(tmp_path, kill_after):
    state = StateDir(tmp_path / "state")
    with Gallery.open(state, create_key=True) as g:
        for i in range(30):
            g.enrol(f"s{i}", "face", templates=list(vectors(i)))
            g.enrol(f"s{i}", "fingerprint", sensor_slot=i)
    acked = run_and_kill("delete", state, 0, 30, kill_after)
    with Gallery.open(state) as g:
        check_consistent(g, max(acked) + 1)
        present = {int(s[1:]) for s in g.subjects()}
        assert not present & set(acked), "an acknowledged deletion came back"
        # at most the deletion in flight may be done without its ack; the rest are intact
        assert set(range(30)) - set(acked) - present <= {max(acked) + 1}
        for i in acked:
            for v in vectors(i):
                assert g.search(v).subject != f"s{i}"
            assert g.subject_for_slot(i) is None
