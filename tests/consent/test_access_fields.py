"""Access rules carried in the signed list for the gate (issue 15): schedules in the site's time
zone, and the panel number sealed so only the site's gates read it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cbor2
import pytest

from edge.consent.authority import Authority, RosterError
from edge.consent.ledger import ListRejected
from edge.consent.listformat import ConsentList, ListFormatError, Window, decode_body, encode_body
from edge.credentials.panel_number import PanelNumberError, open_panel_number, seal_panel_number
from tests.consent.consent_helpers import PURPOSE, T0, Device, entry

KEY = bytes(range(32))
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def test_a_sealed_panel_number_opens_only_for_its_subject_with_the_site_key() -> None:
    sealed = seal_panel_number(KEY, "p-1", 4_123_456)
    assert open_panel_number(KEY, "p-1", sealed) == 4_123_456
    assert b"4123456" not in sealed
    assert (4_123_456).to_bytes(4, "big") not in sealed
    assert seal_panel_number(KEY, "p-1", 4_123_456) == sealed  # re-issuing an unchanged roster changes nothing
    with pytest.raises(PanelNumberError):  # copied to another person's entry
        open_panel_number(KEY, "p-2", sealed)
    with pytest.raises(PanelNumberError):  # another site's key
        open_panel_number(bytes(32), "p-1", sealed)
    damaged = bytearray(sealed)
    damaged[-1] ^= 1
    with pytest.raises(PanelNumberError):
        open_panel_number(KEY, "p-1", bytes(damaged))


def test_schedules_and_the_time_zone_round_trip_and_bad_ones_are_named() -> None:
    weekdays = Window(frozenset(range(5)), 8 * 60, 18 * 60)
    e = entry("p-1", ("face",), schedule=[weekdays], panel=seal_panel_number(KEY, "p-1", 7))
    lst = ConsentList("site-a", "snapshot", 3, 1000, 2000, (e,), timezone="Asia/Shanghai")
    decoded = decode_body(encode_body(lst))
    assert decoded.entries == (e,)
    assert decoded.timezone == "Asia/Shanghai"
    body = cbor2.loads(encode_body(lst))
    mutations: tuple[tuple[Callable[[Any], object], str], ...] = (
        (lambda b: b["entries"][0]["schedule"][0].update({"from": 600, "to": 600}), "start before it ends"),
        (lambda b: b["entries"][0]["schedule"][0].update(to=1441), "start before it ends"),
        (lambda b: b["entries"][0]["schedule"][0].update(days=[7]), "weekdays"),
        (lambda b: b["entries"][0]["schedule"][0].update(days=[2, 1]), "weekdays"),
        (lambda b: b["entries"][0].update(schedule=[]), "1 to 32"),
        (lambda b: b["entries"][0].update(panel=b"short"), "sealed panel number"),
        (lambda b: b.update(timezone="../../etc/passwd"), "IANA"),
    )
    for mutate, reason in mutations:
        copy = cbor2.loads(cbor2.dumps(body))
        mutate(copy)
        with pytest.raises(ListFormatError, match=reason):
            decode_body(cbor2.dumps(copy, canonical=True))


def test_the_ledger_judges_the_schedule_in_the_lists_zone_and_opens_the_panel_number(
    authority: Authority, device: Device, tmp_path: Path
) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "subject,purposes,modalities,schedule,panel\n"
        f"p-1,{PURPOSE},face,mon-fri 08:00-18:00; sat 09:00-12:30,4123456\n"
        f"p-2,{PURPOSE},face,,\n"
    )
    authority.set_timezone("Asia/Shanghai")
    message, _ = authority.issue(authority.read_roster(roster, now=T0), now=T0)
    assert b"4123456" not in message
    device.ledger.apply(message, T0)
    ledger = device.ledger
    assert ledger.timezone == "Asia/Shanghai"
    assert ledger.in_schedule("p-1", _at("2027-01-06T08:00"))  # a Wednesday, 08:00 Shanghai time
    assert not ledger.in_schedule("p-1", _at("2027-01-06T07:59"))
    assert not ledger.in_schedule("p-1", _at("2027-01-06T18:00"))
    assert ledger.in_schedule("p-1", _at("2027-01-09T12:29"))  # Saturday
    assert not ledger.in_schedule("p-1", _at("2027-01-09T12:30"))
    assert not ledger.in_schedule("p-1", _at("2027-01-10T10:00"))  # Sunday
    assert ledger.in_schedule("p-2", _at("2027-01-10T03:00"))  # no schedule: always
    assert ledger.panel_number("p-1") == 4123456
    assert ledger.panel_number("p-2") is None
    # the same roster issued again keeps every entry as it was: nothing changes on the device
    message, _ = authority.issue(authority.read_roster(roster, now=T0), now=T0 + 1)
    assert device.ledger.apply(message, T0 + 1).affected == frozenset()


def test_roster_schedules_and_panel_numbers_are_checked_where_they_stand(authority: Authority, tmp_path: Path) -> None:
    for bad, what in (
        ("every day", "schedule windows look like"),
        ("mon-fry 08:00-18:00", "schedule days"),
        ("mon 18:00-08:00", "starts before it ends"),
        ("mon 08:61-09:00", "starts before it ends"),
    ):
        roster = tmp_path / "r.csv"
        roster.write_text(f"subject,purposes,modalities,schedule\np-1,{PURPOSE},face,{bad}\n")
        with pytest.raises(RosterError, match=what):
            authority.read_roster(roster, now=T0)
    roster = tmp_path / "r.csv"
    roster.write_text(f"subject,purposes,modalities,panel\np-1,{PURPOSE},face,12ab\n")
    with pytest.raises(RosterError, match="panel is the number"):
        authority.read_roster(roster, now=T0)
    with pytest.raises(Exception, match="unknown time zone"):
        authority.set_timezone("Mars/Olympus")


def test_a_list_naming_a_zone_the_device_does_not_know_is_refused(authority: Authority, device: Device) -> None:
    state = authority.load_state()
    state.timezone = "Mars/Olympus"  # written into state by hand, past set_timezone's check
    authority.save_state(state)
    message, _ = authority.issue({"p-1": entry("p-1", ("face",))}, now=T0)
    with pytest.raises(ListRejected, match="time zone"):
        device.ledger.apply(message, T0)
