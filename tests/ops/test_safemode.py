"""The start-attempt record: what counts as "the same way", a start that died, an orderly stop,
and leaving safe mode after a fix (unit level; the agent-level run is test_degrade_agent.py)."""

from __future__ import annotations

from pathlib import Path

from edge.errors import HardwareError, ModelError
from edge.ops import safemode
from edge.state import StateDir


def _state(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.ensure()
    return state


def test_the_same_failure_counts_up_another_starts_again_and_a_start_that_died_counts(tmp_path: Path) -> None:
    state = _state(tmp_path)
    a = safemode.StartAttempts(state)
    a.begin()
    assert a.failed(ModelError("face.tflite does not match")) == 1
    b = safemode.StartAttempts(state)
    b.begin()
    assert b.failed(ModelError("face.tflite does not match")) == 2
    c = safemode.StartAttempts(state)
    c.begin()
    assert c.failed(HardwareError("no camera")) == 1, "another failure is another count"
    d = safemode.StartAttempts(state)
    d.begin()  # this process is SIGKILLed during start-up: no failure is recorded by it
    e = safemode.StartAttempts(state)
    e.begin()
    assert e.record.signature == safemode.DIED
    assert e.record.failures == 1
    f = safemode.StartAttempts(state)
    f.begin()  # e died too, without recording anything
    assert f.record.failures == 2
    g = safemode.StartAttempts(state)
    g.begin()
    assert g.record.failures == 3
    assert g.exhausted, "dying three times during start-up is a crash loop too"


def test_ready_clears_failures_and_an_orderly_stop_leaves_no_record(tmp_path: Path) -> None:
    state = _state(tmp_path)
    a = safemode.StartAttempts(state)
    a.begin()
    a.failed(ModelError("x"))
    b = safemode.StartAttempts(state)
    b.begin()
    b.succeeded()
    assert safemode.load(state).running
    assert safemode.describe(state) is None
    b.stopped()
    assert not state.start_attempts.exists()


def test_safe_mode_is_described_with_the_fix_and_left_after_a_normal_start(tmp_path: Path) -> None:
    state = _state(tmp_path)
    for _ in range(3):
        a = safemode.StartAttempts(state)
        a.begin()
        a.failed(ModelError("face.tflite does not match", hint="rebuild with `edge models build`"))
    a.entered_safe_mode()
    what, fix = safemode.describe(state) or ("", "")
    assert what.startswith("SAFE MODE since")
    assert "start-up failed 3 times: ModelError: face.tflite does not match" in what
    assert fix.startswith("rebuild with `edge models build`; then restart the agent")
    fixed = safemode.StartAttempts(state)  # after the fix, the next start is a normal one
    fixed.begin()
    fixed.record.safe_mode = False
    fixed.succeeded()
    assert safemode.describe(state) is None
