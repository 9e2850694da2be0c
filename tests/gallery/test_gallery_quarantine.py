"""A damaged gallery row is quarantined, never used, and the gallery goes on with everyone else.

Each test damages the real ``gallery.sqlite3`` the way a failing SD card or a hand edit would: one
bit of one row's ciphertext flipped, text written where a box was, an authentic box moved under
another subject's tag, and then reopens the gallery as ``edge run`` does.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import numpy as np
import pytest

from edge.gallery.db import quarantine_summary
from edge.gallery.store import Gallery
from edge.state import StateDir


def _flip(state: StateDir, table: str, where: str, args: tuple[object, ...], at: int = 40) -> None:
    """Flip one bit of one row's box, committed by another connection (as damage would be)."""
    conn = sqlite3.connect(state.gallery_db)
    (box,) = conn.execute(f"SELECT box FROM {table} WHERE {where}", args).fetchone()
    flipped = bytearray(box)
    flipped[at] ^= 0x01
    conn.execute(f"UPDATE {table} SET box = ? WHERE {where}", (bytes(flipped), *args))
    conn.commit()
    conn.close()


def _enrol_three(state: StateDir, unit: Callable[..., np.ndarray]) -> tuple[np.ndarray, Gallery]:
    x = unit(6)
    g = Gallery.open(state, create_key=True)
    g.enrol("alice", "face", templates=[x[0], x[1]])
    g.enrol("bob", "face", templates=[x[2], x[3]])
    g.enrol("bob", "fingerprint", sensor_slot=4)
    g.enrol("carol", "face", templates=[x[4]])
    g.enrol("carol", "fingerprint", sensor_slot=7)
    return x, g


def test_one_flipped_bit_in_a_template_quarantines_that_row_and_the_gate_goes_on(state, unit):
    x, g = _enrol_three(state, unit)
    g.close()
    _flip(state, "templates", "id = ?", (1,))  # alice's first template
    with Gallery.open(state) as g:
        damage = g.damage()
        assert [(d.item, d.modality, d.reason, d.subject) for d in damage] == [
            ("template", "face", "authentication", "alice")
        ]
        assert damage[0].id > 0
        assert len(g) == 4  # 5 templates enrolled, 1 set aside
        # alice still passes on her other template; nobody else lost anything
        assert g.search(x[1]).subject == "alice"
        assert g.search(x[2]).subject == "bob"
        assert g.search(x[4]).subject == "carol"
        assert g.subject_for_slot(4) == "bob"
        assert g.search(x[0]).score < 0.9, "the damaged template must never match"
    conn = sqlite3.connect(state.gallery_db)
    assert conn.execute("SELECT count(*) FROM templates").fetchone()[0] == 4
    assert conn.execute("SELECT item, reason FROM quarantine").fetchall() == [("template", "authentication")]
    conn.close()
    # the quarantine is kept, not found again: a second open lists the same row, not a new one
    with Gallery.open(state) as g:
        assert [d.id for d in g.damage()] == [damage[0].id]


def test_a_damaged_face_record_takes_its_templates_with_it_and_names_the_person(state, unit):
    x, g = _enrol_three(state, unit)
    tag = g._key.tag("bob")
    g.close()
    _flip(state, "records", "tag = ? AND modality = 'face'", (tag,))
    with Gallery.open(state) as g:
        found = sorted((d.item, d.reason, d.subject) for d in g.damage())
        # the subject comes from bob's own templates (they still open) and his fingerprint record
        assert found == [
            ("record", "authentication", "bob"),
            ("template", "record_damaged", "bob"),
            ("template", "record_damaged", "bob"),
        ]
        assert g.subjects("face") == {"alice", "carol"}
        assert g.search(x[2]).subject != "bob"
        assert g.subject_for_slot(4) == "bob", "his fingerprint record is intact and still works"
        assert g.search(x[0]).subject == "alice"


def test_text_instead_of_a_box_and_a_misfiled_box_are_quarantined_too(state, unit):
    x, g = _enrol_three(state, unit)
    g.close()
    conn = sqlite3.connect(state.gallery_db)
    conn.execute("UPDATE templates SET box = 'text, not a box' WHERE id = 5")  # carol's template
    # alice's second template moved under bob's tag: authentic ciphertext, wrong owner
    conn.execute("UPDATE templates SET tag = (SELECT tag FROM templates WHERE id = 3) WHERE id = 2")
    conn.commit()
    conn.close()
    with Gallery.open(state) as g:
        found = sorted((d.reason, d.subject) for d in g.damage())
        assert found == [("authentication", "carol"), ("misfiled", "alice")]
        assert g.search(x[0]).subject == "alice"
        assert g.search(x[2]).subject == "bob"
        assert "carol" not in g.subjects("face")


def test_a_template_without_a_face_record_is_an_orphan(state, unit):
    _x, g = _enrol_three(state, unit)
    g.close()
    conn = sqlite3.connect(state.gallery_db)
    conn.execute("DELETE FROM records WHERE modality = 'face' AND tag = (SELECT tag FROM templates WHERE id = 5)")
    conn.commit()
    conn.close()
    with Gallery.open(state) as g:
        assert [(d.reason, d.subject) for d in g.damage()] == [("orphan", "carol")]
        assert g.subjects("face") == {"alice", "bob"}


def test_a_damaged_fingerprint_record_is_named_through_the_consent_list(state, unit):
    _x, g = _enrol_three(state, unit)
    g.delete_subject("carol", "face")  # carol keeps only her fingerprint record: no sibling names her
    tag = g._key.tag("carol")
    g.close()
    _flip(state, "records", "tag = ? AND modality = 'fingerprint'", (tag,))
    with Gallery.open(state) as g:
        (d,) = g.damage()
        assert (d.item, d.modality, d.subject) == ("record", "fingerprint", None)
        assert g.subject_for_slot(7) is None, "a slot whose record is damaged maps to nobody"
        assert g.resolve_damage(["alice", "bob", "dave"]) == 0
        assert g.resolve_damage(["alice", "bob", "carol", "dave"]) == 1
        assert [x.subject for x in g.damage()] == ["carol"]
        assert g.quarantined_subjects() == {"carol"}


def test_reported_damage_is_not_reported_again_after_a_restart(state, unit):
    _x, g = _enrol_three(state, unit)
    g.close()
    _flip(state, "templates", "id = ?", (3,))
    with Gallery.open(state) as g:
        (d,) = g.damage()
        assert d.audit_seq is None
        g.mark_reported([(d, 17)])
    with Gallery.open(state) as g:
        assert [(x.id, x.audit_seq) for x in g.damage()] == [(d.id, 17)]
    summary = quarantine_summary(state.gallery_db)  # what `edge status` reads, without the key
    assert [(q.item, q.modality, q.reason, q.audit_seq) for q in summary] == [
        ("template", "face", "authentication", 17)
    ]


def test_deleting_a_person_deletes_their_quarantined_rows(state, unit):
    _x, g = _enrol_three(state, unit)
    tag = g._key.tag("bob")
    g.close()
    _flip(state, "records", "tag = ? AND modality = 'face'", (tag,))
    with Gallery.open(state) as g:
        assert g.holds_quarantined("bob")
        report = g.delete_subject("bob", "face")
        assert report.found
        assert report.modalities == ("face",)
        assert report.face_templates == 2, "his two quarantined templates went with the record"
        assert not g.holds_quarantined("bob")
        assert g.subject_for_slot(4) == "bob", "a face withdrawal keeps his fingerprint"
    conn = sqlite3.connect(state.gallery_db)
    assert conn.execute("SELECT count(*) FROM quarantine WHERE tag = ?", (tag,)).fetchone()[0] == 0
    conn.close()


def test_rekey_drops_the_quarantine(state, unit):
    x, g = _enrol_three(state, unit)
    g.close()
    _flip(state, "templates", "id = ?", (5,))
    with Gallery.open(state) as g:
        assert len(g.damage()) == 1
        g.rekey()
        assert g.damage() == []
        assert g.search(x[0]).subject == "alice"
    assert quarantine_summary(state.gallery_db) == []


def test_a_record_damaged_while_running_is_quarantined_at_its_next_read(state, unit):
    x, g = _enrol_three(state, unit)
    _flip(state, "records", "tag = ? AND modality = 'face'", (g._key.tag("alice"),))
    # an enrolment reads the record back: it is set aside and a fresh record written
    g.enrol("alice", "face", templates=[x[5]])
    assert [(d.item, d.subject) for d in g.damage()] == [("record", "alice")]
    g.close()


def test_quarantine_logs_never_name_the_subject(state, unit, caplog):
    caplog.set_level(logging.DEBUG)
    _x, g = _enrol_three(state, unit)
    g.close()
    _flip(state, "templates", "id = ?", (1,))
    with Gallery.open(state) as g:
        assert g.damage()[0].subject == "alice"
        assert "alice" not in repr(g.damage())
    assert any("quarantined" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert "alice" not in record.getMessage()


@pytest.mark.parametrize("backend", ["numpy", "faiss", "faiss-sq8"])
def test_every_backend_drops_the_quarantined_rows(tmp_path, unit, backend):
    state = StateDir(tmp_path / backend)
    x = unit(40)
    with Gallery.open(state, create_key=True, backend=backend) as g:
        for i in range(40):
            g.enrol(f"s{i}", "face", templates=[x[i]])
    for row in (3, 17, 40):
        _flip(state, "templates", "id = ?", (row,))
    with Gallery.open(state, backend=backend) as g:
        assert sorted(d.subject or "" for d in g.damage()) == ["s16", "s2", "s39"]
        assert len(g) == 37
        for i in range(40):
            hit = g.search(x[i])
            if i in (2, 16, 39):
                assert hit.subject != f"s{i}"
            else:
                assert hit.subject == f"s{i}"
                assert hit.score > 0.99
