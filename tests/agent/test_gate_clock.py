"""The gate's back-off, door pulses and debouncing run on the monotonic clock: a wall-clock step of
hours changes none of them (docs/operations.md, "Clock steps")."""

from __future__ import annotations

from tests.agent.test_gate_core import ALICE, Lane


def test_a_wall_clock_step_neither_ends_nor_extends_a_back_off() -> None:
    lane = Lane(failures_before_backoff=3, backoff_s=30.0, backoff_growth=1.0)
    lane.consent.consents.add((ALICE, "face"))
    for attempt in range(3):
        lane.face(500 + attempt)
        lane.clock.advance(2.5)
    lane.face(0)
    assert lane.access()[-1]["reason"] == "backoff"
    lane.clock._wall -= 5 * 3600  # the wall clock steps back five hours; monotonic time goes on
    lane.clock.advance(1.0)
    lane.face(0)
    assert lane.access()[-1]["reason"] == "backoff", "a step back must not end the back-off early"
    lane.clock._wall += 10 * 3600  # and forward ten hours
    lane.face(0)
    assert lane.access()[-1]["reason"] == "backoff", "nor a step forward"
    lane.clock.advance(30.0)
    lane.face(0)
    assert lane.access()[-1]["decision"] == "granted"
