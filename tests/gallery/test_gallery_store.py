"""Gallery mechanics on synthetic unit vectors: enrol, search, verify, delete, re-key, keys, privacy."""

from __future__ import annotations

import logging
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge.errors import IntegrityError, StorageError, StoreDamaged
from edge.gallery.store import Gallery
from edge.state import StateDir

BACKENDS = ["numpy", "faiss", "faiss-sq8"]


def _files(state: StateDir) -> bytes:
    """Every byte the gallery left on disk (database, WAL, shared memory, journal)."""
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(str(state.gallery_db) + suffix)
        if path.exists():
            out += path.read_bytes()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_finds_subject_aggregates_templates_and_reports_margin(state, unit, backend):
    x = unit(60)
    with Gallery.open(state, backend=backend, create_key=True) as g:
        for i in range(30):
            # two templates per subject: the probe matches the second one best
            g.enrol(f"person-{i}", "face", templates=[x[2 * i], x[2 * i + 1]])
        probe = x[21] + 0.05 * unit(1)[0]
        result = g.search(probe, k=3)
        assert result.subject == "person-10"
        expected = float(max(x[20] @ probe, x[21] @ probe) / np.linalg.norm(probe))
        assert result.score == pytest.approx(expected, abs=1e-5)
        assert len(result.runners_up) == 2
        assert result.runners_up[0][0] != "person-10"
        assert result.margin == pytest.approx(result.score - result.runners_up[0][1], abs=1e-6)
        assert result.runners_up[0][1] >= result.runners_up[1][1]
        assert g.verify("person-10", probe) == pytest.approx(expected, abs=1e-5)
        assert g.verify("person-11", probe) < 0.6
        assert g.verify("nobody", probe) == -math.inf


def test_backends_agree_on_ranking(state, unit, tmp_path):
    x = unit(500)
    probes = x[:40] + 0.3 * unit(40)
    results = {}
    for backend in BACKENDS:
        st = StateDir(tmp_path / backend)
        with Gallery.open(st, backend=backend, create_key=True) as g:
            g.enrol_many([(f"s{i}", [x[i]]) for i in range(500)])
            results[backend] = [(r.subject, r.runners_up[0][0], r.score, r.margin) for r in map(g.search, probes)]
    for backend in ("faiss", "faiss-sq8"):
        assert [r[:2] for r in results[backend]] == [r[:2] for r in results["numpy"]]
        # equal up to float summation order (BLAS vs FAISS kernels)
        np.testing.assert_allclose([r[2:] for r in results[backend]], [r[2:] for r in results["numpy"]], atol=1e-5)


def test_single_subject_margin_is_infinite_and_empty_gallery_returns_none(state, unit):
    with Gallery.open(state, create_key=True) as g:
        empty = g.search(unit(1)[0])
        assert empty.subject is None
        v = unit(1)[0]
        g.enrol("only", "face", templates=[v])
        assert g.search(v).margin == math.inf


def test_templates_per_subject_cap_drops_oldest(state, unit):
    x = unit(8)
    with Gallery.open(state, create_key=True, templates_per_subject=3) as g:
        g.enrol("a", "face", templates=[x[0], x[1]])
        r = g.enrol("a", "face", templates=[x[2], x[3]])
        assert (r.templates_added, r.templates_dropped, r.templates_total) == (2, 1, 3)
        assert g.verify("a", x[0]) < 0.5  # the oldest template went
        assert g.verify("a", x[3]) == pytest.approx(1.0, abs=1e-5)
        assert len(g) == 3
    with Gallery.open(state, templates_per_subject=3) as g:
        assert len(g) == 3
        assert g.verify("a", x[0]) < 0.5


def test_fingerprint_slots_map_to_subjects_and_conflicts_are_refused(state):
    with Gallery.open(state, create_key=True) as g:
        g.enrol("alice", "fingerprint", sensor_slot=3)
        g.enrol("alice", "fingerprint", sensor_slot=4)
        assert g.subject_for_slot(3) == g.subject_for_slot(4) == "alice"
        assert g.subject_for_slot(5) is None
        with pytest.raises(StorageError, match="slot 3 already belongs") as err:
            g.enrol("bob", "fingerprint", sensor_slot=3)
        assert "alice" not in str(err.value)
        assert "bob" not in str(err.value)
        assert g.subjects("fingerprint") == {"alice"}
        assert g.subjects("face") == set()
    with Gallery.open(state) as g:  # slots survive a restart
        assert g.subject_for_slot(4) == "alice"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g, v: g.enrol("x", "face"), "at least one template"),
        (lambda g, v: g.enrol("x", "face", templates=[v[:64]]), "64 dimensions"),
        (lambda g, v: g.enrol("x", "face", templates=[np.zeros(128)]), "zero or not finite"),
        (lambda g, v: g.enrol("x", "face", templates=[np.full(128, np.nan)]), "zero or not finite"),
        (lambda g, v: g.enrol("x", "fingerprint"), "needs the sensor slot"),
        (lambda g, v: g.enrol("x", "fingerprint", sensor_slot=1, templates=[v]), "stay in the sensor"),
        (lambda g, v: g.enrol("x", "iris", templates=[v]), "unknown modality"),
        (lambda g, v: g.search(v[:10]), "10 dimensions"),
    ],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(state, unit, call, message):
    v = unit(1)[0]
    with Gallery.open(state, create_key=True) as g:
        g.enrol("keep", "face", templates=[v])
        with pytest.raises(ValueError, match=message):
            call(g, v)
        assert g.subjects() == {"keep"}
        assert len(g) == 1
    with Gallery.open(state) as g:
        assert g.subjects() == {"keep"}


def test_duplicate_enrolment_is_flagged(state, unit):
    x = unit(3)
    with Gallery.open(state, create_key=True, threshold=0.8) as g:
        g.enrol("first", "face", templates=[x[0]])
        again = g.enrol("second", "face", templates=[x[0] + 0.1 * x[1]])
        assert again.duplicate_of == "first"
        assert again.duplicate_score is not None
        assert again.duplicate_score >= 0.8
        assert "first" not in repr(again)
        # re-enrolling a subject is not a duplicate of itself, and a new face is not flagged
        g.delete_subject("second")
        assert g.enrol("first", "face", templates=[x[0]]).duplicate_of is None
        assert g.enrol("third", "face", templates=[x[2]]).duplicate_of is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleted_subject_is_never_returned(state, unit, backend):
    x = unit(40)
    rng = np.random.default_rng(7)
    with Gallery.open(state, backend=backend, create_key=True) as g:
        for i in range(20):
            g.enrol(f"s{i}", "face", templates=[x[2 * i], x[2 * i + 1]])
        g.enrol("s3", "fingerprint", sensor_slot=9)
        deleted: set[str] = set()
        for i in rng.permutation(20)[:12]:
            report = g.delete_subject(f"s{i}")
            assert report.found
            assert report.face_templates == 2
            assert report.sensor_slots == ((9,) if i == 3 else ())
            deleted.add(f"s{i}")
            for probe in x:
                result = g.search(probe, k=5)
                returned = {result.subject, *(s for s, _ in result.runners_up)}
                assert not returned & deleted
        assert g.subject_for_slot(9) is None
        assert g.subjects() == {f"s{i}" for i in range(20)} - deleted
        assert len(g) == 2 * (20 - len(deleted))
        for probe in x:  # remaining subjects still found exactly
            r = g.search(probe)
            assert r.subject not in deleted
    with Gallery.open(state, backend=backend) as g:
        assert g.subjects() == {f"s{i}" for i in range(20)} - deleted
        assert all(g.search(p).subject not in deleted for p in x)


def test_deletion_report_is_a_plain_mapping_without_template_bytes(state, unit):
    with Gallery.open(state, create_key=True) as g:
        g.enrol("s", "face", templates=[unit(1)[0]])
        g.enrol("s", "fingerprint", sensor_slot=12)
        report = g.delete_subject("s")
        assert dict(report) == {
            "found": True,
            "face_templates": 1,
            "sensor_slots": [12],
            "modalities": ["face", "fingerprint"],
        }
        assert all(isinstance(v, (bool, int, list)) for v in report.values())
        assert g.delete_subject("s").as_dict()["found"] is False


def test_deleting_one_modality_keeps_the_other_across_a_reopen(state, unit):
    """Face consent withdrawn, fingerprint consent kept: the templates go, the sensor slot stays."""
    x = unit(3)
    with Gallery.open(state, create_key=True) as g:
        g.enrol("s", "face", templates=[x[0], x[1]])
        g.enrol("s", "fingerprint", sensor_slot=5)
        g.enrol("t", "face", templates=[x[2]])
        face = g.delete_subject("s", "face")
        assert dict(face) == {"found": True, "face_templates": 2, "sensor_slots": [], "modalities": ["face"]}
        assert g.subjects("face") == {"t"}
        assert g.subject_for_slot(5) == "s"
        assert g.search(x[0]).subject == "t"  # only t's template is left to match
        assert g.delete_subject("s", "face").found is False  # nothing of that modality left
    with Gallery.open(state) as g:
        assert g.subjects("face") == {"t"}
        assert g.subject_for_slot(5) == "s"
        finger = g.delete_subject("s", "fingerprint")
        assert dict(finger) == {"found": True, "face_templates": 0, "sensor_slots": [5], "modalities": ["fingerprint"]}
        assert g.subjects() == {"t"}
        assert g.subject_for_slot(5) is None
        assert len(g) == 1
        with pytest.raises(ValueError, match="unknown modality"):
            g.delete_subject("t", "iris")
    with Gallery.open(state) as g:
        assert g.subjects() == {"t"}


def test_database_holds_no_plaintext_templates_or_subject_ids(state, unit):
    x = unit(30)
    subjects = [f"pseudonym-{i:04d}" for i in range(30)]
    with Gallery.open(state, create_key=True) as g:
        for s, v in zip(subjects, x, strict=True):
            g.enrol(s, "face", templates=[v], model_id="facenet-test")
        g.enrol(subjects[0], "fingerprint", sensor_slot=1)
        protected = g._protector.apply(x)  # the rotated form is a template too
        on_disk = _files(state)  # while open: database and WAL
    on_disk += _files(state)
    assert len(on_disk) > 10_000
    # every 8-byte window of the files, at every offset
    windows = {on_disk[i : i + 8] for i in range(len(on_disk) - 7)}
    for v in np.concatenate([x, protected]):
        for dtype in ("<f4", "<f8", ">f4", "<f2"):
            raw = v.astype(dtype).tobytes()
            chunks = [raw[i : i + 8] for i in range(0, len(raw) - 7, 8)]
            assert not any(c in windows for c in chunks), f"{dtype} template bytes found in the gallery files"
    for s in subjects:
        assert s.encode() not in on_disk
    assert b"facenet-test" not in on_disk


def test_deleted_ciphertext_does_not_linger_in_the_files(state, unit):
    x = unit(20)
    with Gallery.open(state, create_key=True) as g:
        for i in range(20):
            g.enrol(f"s{i}", "face", templates=[x[i]])
        conn = sqlite3.connect(state.gallery_db)
        tag = g._key.tag("s5")
        boxes = [bytes(b) for (b,) in conn.execute("SELECT box FROM templates WHERE tag = ?", (tag,))]
        boxes += [bytes(b) for (b,) in conn.execute("SELECT box FROM records WHERE tag = ?", (tag,))]
        conn.close()
        assert len(boxes) == 2
        assert all(b[24:56] in _files(state) for b in boxes)
        g.delete_subject("s5")
        after = _files(state)
        for b in boxes:
            assert b[24:56] not in after, "deleted ciphertext still in the database or WAL"
            assert tag not in after


def test_wrong_key_gives_a_clear_error(state, unit, tmp_path):
    with Gallery.open(state, create_key=True) as g:
        g.enrol("s", "face", templates=[unit(1)[0]])
    other = StateDir(tmp_path / "other")
    Gallery.open(other, create_key=True).close()
    state.gallery_key.write_bytes(other.gallery_key.read_bytes())  # a key from another device
    with pytest.raises(IntegrityError, match="does not unlock") as err:
        Gallery.open(state)
    assert "factory-reset" in err.value.hint


def test_missing_key_is_a_clear_error_and_is_never_silently_replaced(state, unit):
    with pytest.raises(StorageError, match=r"gallery\.key is missing") as err:
        Gallery.open(state)
    assert "edge-provision init" in err.value.hint
    with Gallery.open(state, create_key=True) as g:
        g.enrol("s", "face", templates=[unit(1)[0]])
    state.gallery_key.unlink()
    with pytest.raises(StorageError, match="cannot be read"):
        Gallery.open(state, create_key=True)  # a new key would orphan the enrolled people
    assert not state.gallery_key.exists()


def test_key_file_open_to_others_or_truncated_is_refused(state):
    Gallery.open(state, create_key=True).close()
    assert state.gallery_key.stat().st_mode & 0o777 == 0o600
    state.gallery_key.chmod(0o644)
    with pytest.raises(StorageError, match="readable by others"):
        Gallery.open(state)
    state.gallery_key.chmod(0o600)
    state.gallery_key.write_bytes(b"short")
    with pytest.raises(StorageError, match="not a gallery key"):
        Gallery.open(state)


def test_garbage_database_file_is_a_storage_error(state):
    Gallery.open(state, create_key=True).close()
    state.gallery_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreDamaged, match=r"gallery .* is damaged \(file is not a database\)") as err:
        Gallery.open(state)
    assert "set" in err.value.hint
    assert "aside" in err.value.hint


def test_dimension_change_is_refused(state, unit):
    Gallery.open(state, create_key=True).close()
    with pytest.raises(StorageError, match="128-d templates but 512-d"):
        Gallery.open(state, dim=512)


def test_rekey_renews_every_reference_and_keeps_decisions(state, unit):
    x = unit(40)
    with Gallery.open(state, create_key=True) as g:
        for i in range(20):
            g.enrol(f"s{i}", "face", templates=[x[i]])
        g.enrol("s1", "fingerprint", sensor_slot=2)
        before = [(r.subject, round(r.score, 5)) for r in map(g.search, x)]
        old_key = state.gallery_key.read_bytes()
        old_matrix = g._backend.vectors().copy()
        old_files = _files(state)
        g.rekey()
        assert state.gallery_key.read_bytes() != old_key
        assert not state.gallery_key.with_name("gallery.key.next").exists()
        assert [(r.subject, round(r.score, 5)) for r in map(g.search, x)] == before
        # the stored references are new: unrelated to the old ones
        new_matrix = g._backend.vectors()
        assert np.abs(np.einsum("ij,ij->i", old_matrix, new_matrix)).max() < 0.5
        new_files = _files(state)
        conn = sqlite3.connect(state.gallery_db)
        for (box,) in conn.execute("SELECT box FROM templates"):
            assert bytes(box)[24:56] not in old_files
        conn.close()
        del new_files
    with Gallery.open(state) as g:
        assert [(r.subject, round(r.score, 5)) for r in map(g.search, x)] == before
        assert g.subject_for_slot(2) == "s1"


def test_interrupted_rekey_is_finished_or_rolled_back_on_open(state, unit):
    from edge.gallery.sealed import GalleryKey, store_key

    v = unit(1)[0]
    with Gallery.open(state, create_key=True) as g:
        g.enrol("s", "face", templates=[v])
    pending = state.gallery_key.with_name("gallery.key.next")
    # crash after writing the next key but before the transaction: the old key stays
    store_key(pending, GalleryKey.generate())
    with Gallery.open(state) as g:
        assert g.search(v).subject == "s"
    assert not pending.exists()
    # crash after the transaction committed but before the key file was replaced
    with Gallery.open(state) as g:
        g.rekey()
    new_key = state.gallery_key.read_bytes()
    state.gallery_key.write_bytes(b"\x01" * 32)  # stands in for the old key left in place
    store_key(pending, GalleryKey(new_key))
    with Gallery.open(state) as g:
        assert g.search(v).subject == "s"
    assert state.gallery_key.read_bytes() == new_key
    assert not pending.exists()


def test_factory_reset_crypto_erases(state, unit):
    with Gallery.open(state, create_key=True) as g:
        g.enrol("s", "face", templates=[unit(1)[0]])
    Gallery.factory_reset(state)
    assert not state.gallery_key.exists()
    assert not state.gallery_db.exists()
    Gallery.factory_reset(state)  # repeating is harmless
    with Gallery.open(state, create_key=True) as g:
        assert g.subjects() == set()


def test_logs_and_errors_never_name_subjects(state, unit, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "subject-7f3a-secret"
    with Gallery.open(state, create_key=True, threshold=0.5) as g:
        v = unit(1)[0]
        g.enrol(secret, "face", templates=[v])
        g.enrol(secret, "fingerprint", sensor_slot=1)
        g.enrol("other", "face", templates=[v])
        g.search(v)
        with pytest.raises(StorageError) as err:
            g.enrol("third", "fingerprint", sensor_slot=1)
        assert secret not in str(err.value)
        assert secret not in err.value.hint
        g.rekey()
        g.delete_subject(secret)
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_closed_gallery_refuses_changes(state, unit):
    g = Gallery.open(state, create_key=True)
    g.close()
    with pytest.raises(StorageError, match="closed"):
        g.enrol("s", "face", templates=[unit(1)[0]])
    g.close()  # closing twice is harmless


def test_unknown_backend_is_a_clear_error(state):
    with pytest.raises(StorageError, match="unknown gallery backend 'annoy'"):
        Gallery.open(state, backend="annoy", create_key=True)


def test_open_configured_uses_the_gallery_section(state, unit):
    from edge.config.schema import GallerySection

    x = unit(4)
    section = GallerySection(backend="faiss-sq8", templates_per_subject=2)
    with Gallery.open_configured(state, section, create_key=True, threshold=0.9) as g:
        assert g.backend == "faiss-sq8"
        r = g.enrol("a", "face", templates=list(x[:3]))
        assert (r.templates_added, r.templates_total) == (2, 2)
        assert g.threshold == 0.9


@pytest.mark.parametrize(
    ("backend", "coarse_keys"), [*((b, False) for b in BACKENDS), ("numpy", True)], ids=[*BACKENDS, "shared-keys"]
)
def test_reopen_builds_the_same_matrix_row_order_and_results(state, unit, backend, coarse_keys, monkeypatch):
    """The load decrypts in 1024-row blocks: 2,600 templates cover full blocks, a partial one and
    rows freed by deletions and the per-subject cap. ``shared-keys`` cuts the subject lookup key to
    one byte, so most subjects share a key and the load must tell them apart by id."""
    if coarse_keys:
        from edge.gallery import store, subjects

        monkeypatch.setattr(subjects, "tag_key", lambda tag: tag[0])
        monkeypatch.setattr(store, "tag_key", lambda tag: tag[0])
    x = unit(2600)
    probes = x[::97] + 0.2 * unit(27)
    with Gallery.open(state, backend=backend, create_key=True, templates_per_subject=3) as g:
        g.enrol_many([(f"s{i}", [x[2 * i], x[2 * i + 1]]) for i in range(1200)])
        g.delete_subject("s7")
        g.enrol("s8", "face", templates=[x[2400], x[2401]])  # s8 keeps 3: its oldest goes
        g.enrol("late", "face", templates=list(x[2402:2600]))
        before = (
            g._backend.vectors().copy(),
            g._index.row_template.copy(),
            [g._index.subjects.name(int(i)) for i in g._index.row_subject],
        )
        results = [g.search(p, k=3) for p in probes]
    with Gallery.open(state, backend=backend, templates_per_subject=3) as g:
        assert len(g) == len(before[0]) == 2 * 1200 - 2 - 1 + 2 + 3
        np.testing.assert_array_equal(g._backend.vectors(), before[0])
        np.testing.assert_array_equal(g._index.row_template, before[1])
        assert [g._index.subjects.name(int(i)) for i in g._index.row_subject] == before[2]
        assert [g.search(p, k=3) for p in probes] == results


def test_numpy_search_top2_and_margin_match_a_plain_row_major_reference(state, unit):
    """Subject scores are the max over each subject's rows of a plain ``X @ q`` on the protected
    matrix; the backend's transposed one-thread product must give the same subjects and margin."""
    x = unit(900)
    with Gallery.open(state, create_key=True, templates_per_subject=3) as g:
        g.enrol_many([(f"s{i}", [x[3 * i], x[3 * i + 1], x[3 * i + 2]]) for i in range(300)])
        matrix = np.ascontiguousarray(g._backend.vectors())
        owners = g._index.row_subject.copy()
        for probe in x[::45] + 0.3 * unit(20):
            q = g._protector.apply_one((probe / np.linalg.norm(probe)).astype(np.float32))
            best = np.full(owners.max() + 1, -np.inf)
            np.maximum.at(best, owners, (matrix @ q).astype(np.float64))
            first, second = np.argsort(-best, kind="stable")[:2]
            result = g.search(probe, k=2)
            assert result.subject == g._index.subjects.name(int(first))
            assert result.runners_up[0][0] == g._index.subjects.name(int(second))
            assert result.score == pytest.approx(best[first], abs=2e-6)
            assert result.margin == pytest.approx(best[first] - best[second], abs=4e-6)
