"""The list body codec: round trips, strict schema, and garbage never crashing the parser."""

from __future__ import annotations

from typing import Literal

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edge.consent.listformat import (
    ConsentList,
    CredentialGrant,
    Entry,
    KeyAnnouncement,
    ListFormatError,
    decode_body,
    encode_body,
)
from edge.consent.signing import ListRejected, sign_list, verify_list
from edge.crypto.keys import key_id

subjects = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,20}", fullmatch=True)
times = st.integers(0, 2**40)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    granted = draw(times)
    expires = draw(st.one_of(st.none(), st.integers(granted + 1, granted + 10**8)))
    grants = draw(
        st.lists(
            st.builds(CredentialGrant, st.sampled_from(["card", "pin", "qr"]), st.binary(min_size=32, max_size=32)),
            max_size=3,
            unique_by=lambda g: (g.kind, g.digest),
        )
    )
    return Entry(
        draw(subjects),
        frozenset(draw(st.sets(st.sampled_from(["access:main-gate", "access:gym", "canteen"]), min_size=1))),
        frozenset(draw(st.sets(st.sampled_from(["face", "fingerprint"])))),
        granted,
        expires,
        draw(st.sampled_from(["active", "withdrawn"])),
        tuple(grants),
    )


@st.composite
def lists(draw: st.DrawFn) -> ConsentList:
    items = draw(st.lists(entries(), max_size=6, unique_by=lambda e: e.subject))
    digests = [(g.kind, g.digest) for e in items for g in e.credentials]
    if len(digests) != len(set(digests)):
        items = [Entry(e.subject, e.purposes, e.modalities, e.granted_at, e.expires_at, e.status) for e in items]
    issued = draw(times)
    kinds: list[Literal["snapshot", "delta"]] = ["snapshot", "delta"]
    kind = draw(st.sampled_from(kinds))
    version = draw(st.integers(2, 2**40))
    taken = {e.subject for e in items}
    return ConsentList(
        site=draw(st.from_regex(r"[a-z][a-z0-9\-]{0,10}", fullmatch=True)),
        kind=kind,
        version=version,
        issued_at=issued,
        valid_until=issued + draw(st.integers(1, 10**7)),
        entries=tuple(items),
        base=draw(st.integers(0, version - 1)) if kind == "delta" else None,
        remove=tuple(sorted(set(draw(st.lists(subjects, max_size=3))) - taken)) if kind == "delta" else (),
        keys=draw(
            st.one_of(
                st.just(KeyAnnouncement()),
                st.builds(
                    KeyAnnouncement,
                    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=2, unique=True).map(tuple),
                    st.lists(st.binary(min_size=8, max_size=8), max_size=2, unique=True).map(tuple),
                ),
            )
        ),
    )


def _normal(lst: ConsentList) -> ConsentList:
    return ConsentList(
        lst.site,
        lst.kind,
        lst.version,
        lst.issued_at,
        lst.valid_until,
        tuple(
            Entry(
                e.subject,
                e.purposes,
                e.modalities,
                e.granted_at,
                e.expires_at,
                e.status,
                tuple(sorted(e.credentials, key=lambda g: (g.kind, g.digest))),
            )
            for e in sorted(lst.entries, key=lambda e: e.subject)
        ),
        lst.base,
        lst.remove,
        lst.keys,
    )


@settings(max_examples=40, deadline=None)
@given(lists())
def test_encode_decode_round_trip(lst: ConsentList) -> None:
    data = encode_body(lst)
    decoded = decode_body(data)
    assert _normal(decoded) == _normal(lst)
    assert encode_body(decoded) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_bodies_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(ListFormatError) as info:
        decode_body(data)
    assert info.value.reason


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=12), kids, max_size=8),
        max_leaves=20,
    )
)
def test_well_formed_cbor_of_any_shape_is_refused_not_crashing(value: object) -> None:
    with pytest.raises(ListFormatError):
        decode_body(cbor2.dumps(value))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.update(format=3), "unsupported list format"),
        (lambda b: b.update(extra=1), "unknown key"),
        (lambda b: b["entries"][0].update(subject="Jane Doe"), "pseudonymous"),
        (lambda b: b["entries"][0].update(modalities=["iris"]), "unknown modality"),
        (lambda b: b["entries"][0].update(status="maybe"), "neither active nor withdrawn"),
        (lambda b: b["entries"][0].update(granted_at=True), "unsigned integer"),
        (lambda b: b["entries"][0].update(expires_at=1), "expires before"),
        (lambda b: b["entries"].append(dict(b["entries"][0])), "repeat a subject"),
        (lambda b: b["entries"][0].update(credentials=[{"kind": "card", "digest": b"short"}]), "32 bytes"),
        (lambda b: b.update(valid_until=b["issued_at"]), "valid_until"),
        (lambda b: b.update(version=0), "at least 1"),
        (lambda b: b.update(base=1), "snapshot carries delta fields"),
        # a scope needs format 2: a format-1 list carrying one is refused, not half-understood
        (lambda b: b["entries"][0].update(scope=["lobby"]), "unknown key"),
        (lambda b: b.update(format=2) or b["entries"][0].update(scope=[]), "scope is empty"),
        (lambda b: b.update(format=2) or b["entries"][0].update(scope=["Lobby"]), "neither zone nor gate"),
        (lambda b: b.update(format=2) or b["entries"][0].update(scope=["car-park", "lobby", "lobby"]), "sorted"),
        (
            lambda b: b.update(format=2) or b["entries"][0].update(scope=[f"z{i:02d}" for i in range(65)]),
            "too long",
        ),
    ],
)
def test_schema_violations_are_named(mutate, reason: str) -> None:
    lst = ConsentList(
        "site-a",
        "snapshot",
        3,
        1000,
        2000,
        (Entry("p-1", frozenset({"access:main-gate"}), frozenset({"face"}), 100, None, "active"),),
    )
    body = cbor2.loads(encode_body(lst))
    mutate(body)
    with pytest.raises(ListFormatError, match=reason):
        decode_body(cbor2.dumps(body, canonical=True))


def test_the_authority_encodes_canonically() -> None:
    lst = ConsentList(
        "site-a",
        "snapshot",
        3,
        1000,
        2000,
        (Entry("p-1", frozenset({"b:x", "a:y"}), frozenset({"fingerprint", "face"}), 100, None, "active"),),
    )
    data = encode_body(lst)
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data
    # a body whose content is out of order is refused even though CBOR would carry it
    body = cbor2.loads(data)
    body["entries"][0]["purposes"].reverse()
    with pytest.raises(ListFormatError, match="sorted"):
        decode_body(cbor2.dumps(body, canonical=True))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_signed_list_parser_never_crashes_on_garbage(data: bytes) -> None:
    key = SigningKey(b"\x02" * 32)
    with pytest.raises(ListRejected):
        verify_list(data, {key_id(key.verify_key): key.verify_key})


def test_a_list_signed_for_events_is_not_a_list() -> None:
    from edge.crypto.cose import sign1

    key = SigningKey(b"\x03" * 32)
    kid = key_id(key.verify_key)
    body = encode_body(ConsentList("site-a", "snapshot", 1, 1000, 2000, ()))
    as_event = sign1(key, kid, body, b"sites/site-a/gates/g/events")
    with pytest.raises(ListRejected, match="bad-signature"):
        verify_list(as_event, {kid: key.verify_key})
    proper = sign_list(key, ConsentList("site-a", "snapshot", 1, 1000, 2000, ()))
    assert verify_list(proper, {kid: key.verify_key})[1] == kid


def test_a_scoped_entry_travels_in_format_2_and_an_unscoped_list_stays_format_1() -> None:
    """Terminals older than scopes accept format 1 only: the authority writes 2 only when it must."""
    plain = Entry("p-1", frozenset({"access:main-gate"}), frozenset({"face"}), 100, None, "active")
    scoped = Entry(
        "p-2",
        frozenset({"access:main-gate"}),
        frozenset({"face"}),
        100,
        None,
        "active",
        (),
        frozenset({"lobby", "gw-0123456789abcdef"}),
    )
    one = ConsentList("site-a", "snapshot", 3, 1000, 2000, (plain,))
    two = ConsentList("site-a", "snapshot", 3, 1000, 2000, (plain, scoped))
    assert cbor2.loads(encode_body(one))["format"] == 1
    body = cbor2.loads(encode_body(two))
    assert body["format"] == 2
    assert "scope" not in body["entries"][0]
    assert body["entries"][1]["scope"] == ["gw-0123456789abcdef", "lobby"]
    decoded = decode_body(encode_body(two))
    assert decoded.entries == (plain, scoped)


def test_a_place_is_covered_by_its_zones_its_own_id_or_a_whole_site_entry() -> None:
    from edge.consent.listformat import Place

    gate = Place("gw-0123456789abcdef", frozenset({"lobby"}))
    assert gate.covers(None)
    assert gate.covers(frozenset({"lobby", "car-park"}))
    assert gate.covers(frozenset({"gw-0123456789abcdef"}))
    assert not gate.covers(frozenset({"car-park"}))
    assert not gate.covers(frozenset({"gw-fedcba9876543210"}))
    # a ledger that does not know its gate: only whole-site consent applies (fails closed)
    assert Place().covers(None)
    assert not Place().covers(frozenset({"lobby"}))
    entry = Entry(
        "p-2", frozenset({"access:main-gate"}), frozenset({"face"}), 100, None, "active", (), frozenset({"car-park"})
    )
    assert entry.allows("face", "access:main-gate", 500)  # no place given: the site tools' view
    assert not entry.allows("face", "access:main-gate", 500, gate)
    assert entry.allows("face", "access:main-gate", 500, Place("gw-0123456789abcdef", frozenset({"car-park"})))


def _gate(seed: int, zones: set[str]) -> object:
    from nacl.signing import SigningKey

    from edge.consent.listformat import Gate
    from edge.crypto.keys import device_id

    public = SigningKey(bytes([seed]) * 32).verify_key
    return Gate(device_id(public), bytes(public), bytes([seed + 1]) * 32, frozenset(zones))


def test_the_gate_roster_travels_in_format_2_and_each_id_must_belong_to_its_key() -> None:
    gates = tuple(sorted((_gate(1, {"lobby"}), _gate(3, set())), key=lambda g: g.id))  # type: ignore[attr-defined]
    lst = ConsentList("site-a", "snapshot", 3, 1000, 2000, (), gates=gates)  # type: ignore[arg-type]
    body = cbor2.loads(encode_body(lst))
    assert body["format"] == 2
    assert decode_body(encode_body(lst)).gates == gates
    # another key under a gate's id: a forged roster row cannot claim a registered gate's id
    body["gates"][0]["public_key"] = bytes(32)
    with pytest.raises(ListFormatError, match="does not belong"):
        decode_body(cbor2.dumps(body, canonical=True))
    body = cbor2.loads(encode_body(lst))
    body["format"] = 1
    with pytest.raises(ListFormatError, match="format 2"):
        decode_body(cbor2.dumps(body, canonical=True))
    body = cbor2.loads(encode_body(lst))
    body["gates"] = list(reversed(body["gates"]))
    with pytest.raises(ListFormatError, match="sorted"):
        decode_body(cbor2.dumps(body, canonical=True))
    body = cbor2.loads(encode_body(lst))
    body["gates"][0]["zones"] = ["Lobby"]
    with pytest.raises(ListFormatError, match="zone"):
        decode_body(cbor2.dumps(body, canonical=True))


def test_a_gates_anti_passback_area_and_direction_travel_in_the_roster() -> None:
    from dataclasses import replace

    from edge.consent.listformat import Passback

    gate = replace(_gate(5, {"car-park"}), passback=Passback("car-park", "in"))  # type: ignore[type-var]
    lst = ConsentList("site-a", "snapshot", 3, 1000, 2000, (), gates=(gate,))  # type: ignore[arg-type]
    assert decode_body(encode_body(lst)).gates == (gate,)
    body = cbor2.loads(encode_body(lst))
    body["gates"][0]["passback"]["direction"] = "sideways"
    with pytest.raises(ListFormatError, match="neither in nor out"):
        decode_body(cbor2.dumps(body, canonical=True))
