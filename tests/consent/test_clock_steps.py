"""The clock stepping by hours (an NTP correction, a Pi whose RTC battery died): consent is judged
on the device's clock, documented in docs/operations.md, and a clock that reads before the list's
issue time makes biometrics fail closed and deletes nothing, instead of purging everyone granted
"in the future". Each step is one ``clock_step`` alarm."""

from __future__ import annotations

from edge.consent.authority import Authority
from edge.consent.enforce import Enforcer
from edge.consent.teststores import MemoryStore
from edge.events.sink import MemorySink
from provisioning import checks
from tests.consent.consent_helpers import PURPOSE, T0, Device, entry

HOUR = 3600.0


def _rig(device: Device) -> tuple[Enforcer, MemoryStore, MemorySink]:
    face = MemoryStore("gallery", "face")
    sink = MemorySink()
    return Enforcer(device.ledger, [face], sink, device.audit, purpose=PURPOSE), face, sink


def _alarms(sink: MemorySink) -> list[tuple[object, object, object]]:
    return [(a["code"], a.get("state"), a.get("count")) for a in sink.of_kind("alarm")]


def test_a_clock_stepped_back_before_the_list_fails_biometrics_closed_and_deletes_nothing(
    authority: Authority, device: Device
) -> None:
    enforcer, face, sink = _rig(device)
    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    enforcer.apply(message, T0)
    face.add("p-001", b"t")
    enforcer.tick(T0 + 1)
    assert device.ledger.allows("p-001", "face", PURPOSE, T0 + 1)
    back = T0 + 2 - 5 * HOUR  # the RTC lost five hours: the list now looks issued in the future
    enforcer.tick(back)
    assert device.ledger.clock_behind(back)
    assert device.ledger.is_stale(back), "biometrics fail closed"
    assert not device.ledger.allows("p-001", "face", PURPOSE, back)
    enforcer.tick(back + 1)
    assert face.subjects() == {"p-001"}, "a wrong clock must not purge anyone"
    assert [r.kind for r in device.audit.records()].count("deletion") == 0
    enforcer.tick(T0 + 4)  # NTP puts it right
    assert not device.ledger.is_stale(T0 + 4)
    assert device.ledger.allows("p-001", "face", PURPOSE, T0 + 4)
    assert face.subjects() == {"p-001"}
    codes = _alarms(sink)
    steps = [int(str(c[2])) for c in codes if c[0] == "clock_step"]
    assert len(steps) == 2, "one alarm for the step back, one for the correction"
    assert all(abs(step - 5 * HOUR) <= 5 for step in steps), steps  # seconds of real time pass meanwhile
    assert ("clock_behind", "raised", None) in codes
    assert ("clock_behind", "cleared", None) in codes
    assert [c for c in codes if c[0] == "consent_stale"] == [
        ("consent_stale", "raised", None),
        ("consent_stale", "cleared", None),
    ]


def test_a_clock_stepped_forward_is_judged_as_the_new_time_expiries_included(
    authority: Authority, device: Device
) -> None:
    enforcer, face, sink = _rig(device)
    message, _ = authority.issue(
        {"p-001": entry("p-001", expires_at=int(T0 + 2 * HOUR)), "p-002": entry("p-002")}, now=T0
    )
    enforcer.apply(message, T0)
    face.add("p-001", b"t")
    face.add("p-002", b"t")
    enforcer.tick(T0 + 1)
    enforcer.tick(T0 + 3 * HOUR)  # the clock jumps three hours: p-001's consent has ended on this clock
    assert face.subjects() == {"p-002"}
    (deletion,) = [r.details for r in device.audit.records() if r.kind == "deletion"]
    assert (deletion["subject"], deletion["reason"]) == ("p-001", "expired")
    assert [c[0] for c in _alarms(sink)].count("clock_step") == 1
    assert not device.ledger.is_stale(T0 + 3 * HOUR), "hours within the validity: the list is still fresh"


def test_a_small_drift_is_no_step(authority: Authority, device: Device) -> None:
    enforcer, _face, sink = _rig(device)
    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    enforcer.apply(message, T0)
    for i in range(5):
        enforcer.tick(T0 + i + 0.5 * i)  # NTP slews by half a second a tick: not a step
    assert [c for c in _alarms(sink) if c[0] == "clock_step"] == []


def test_selftest_says_the_clock_is_before_the_lists_issue_time(authority: Authority, device: Device) -> None:
    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    device.ledger.apply(message, T0)
    result = checks.clock(device.state, timedatectl=None, now=lambda: T0 - 5 * HOUR)
    assert result.status == "fail"
    assert "5.0 h before consent list v1 was issued" in result.detail
    assert "NTP" in result.fix
    assert checks.clock(device.state, timedatectl=None, now=lambda: T0 + 60).status == "unknown"
