"""Fault soak, test size: 60 s of random faults (a damaged gallery row, a broker restart, a full
disk, the sensor unplugged, the camera gone, clock steps of hours, SIGKILL) against `edge run`
while a different card is presented five times a second. (The 10-minute run is
benchmarks/soak_faults.py.) Never asserts on wall time: the bounds are counts."""

from __future__ import annotations

from pathlib import Path

from edge.testing.faultsoak import FAULTS, run_fault_soak


def test_faults_lose_no_acknowledged_event_each_is_reported_once_and_cards_keep_working(tmp_path: Path) -> None:
    lines: list[str] = []
    report = run_fault_soak(tmp_path / "soak", duration_s=60.0, seed=7, say=lines.append)
    print("\n".join(lines + report.lines()))
    assert all(report.injected[f] >= 1 for f in FAULTS), report.injected  # every kind was tried
    # the soak also counts the clean restarts it makes (after a damaged row): those are not faults
    reported = {f: report.reported[f] for f in FAULTS}
    assert reported == {f: report.injected[f] for f in FAULTS}, "each fault reported exactly once"
    assert report.committed > 100, "events did not flow"
    assert report.missing == [], "acknowledged events neither verified, queued nor announced"
    assert report.other_rejections == 0
    assert report.presented > 100
    assert report.availability >= 0.99, report.lines()[1]
    assert report.start_failures == 0, "no start-up failed: no crash loop"
    assert report.safe_mode == 0
    assert set(report.integrity.values()) == {"ok"}, report.integrity
