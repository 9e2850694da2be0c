"""The protective transform and the sealed-record codecs, tested with bytes and arrays alone."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import IntegrityError
from edge.gallery.protect import Protector
from edge.gallery.sealed import (
    GalleryKey,
    open_record,
    open_template,
    open_template_into,
    seal_record,
    seal_template,
)


def test_protector_is_orthogonal_deterministic_and_key_dependent():
    a = Protector.from_seed(b"a" * 32, 128)
    assert np.allclose(a.matrix @ a.matrix.T, np.eye(128), atol=1e-5)
    assert np.array_equal(a.matrix, Protector.from_seed(b"a" * 32, 128).matrix)
    b = Protector.from_seed(b"b" * 32, 128)
    assert np.abs(a.matrix - b.matrix).max() > 0.1
    v = np.random.default_rng(0).standard_normal((5, 128)).astype(np.float32)
    assert np.allclose(a.invert(a.apply(v)), v, atol=1e-5)
    assert np.allclose(a.apply_one(v[0]), a.apply(v[:1])[0], atol=1e-6)
    # inner products survive; the vectors themselves do not
    assert np.allclose(a.apply(v) @ a.apply(v).T, v @ v.T, atol=1e-4)
    assert not np.allclose(a.apply(v), v, atol=0.1)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Protector.from_seed(b"short", 128)


def test_sealed_template_round_trip_and_tamper_detection():
    key = GalleryKey(b"k" * 32)
    v = np.asarray(np.arange(128) / 100, dtype=np.float32)
    box = seal_template(key, "subject-1", v)
    assert seal_template(key, "subject-1", v) != box  # fresh nonce every time
    subject, back = open_template(key, box)
    assert subject == "subject-1"
    assert np.array_equal(back, v)
    for i in (0, 30, len(box) - 1):
        bad = bytearray(box)
        bad[i] ^= 0x80
        with pytest.raises(IntegrityError, match="failed authentication"):
            open_template(key, bytes(bad))
    with pytest.raises(IntegrityError):
        open_template(GalleryKey(b"o" * 32), box)
    with pytest.raises(IntegrityError, match="unknown layout"):
        open_template(key, seal_record(key, {"subject": "x"}))


def test_sealed_record_round_trip_and_key_repr():
    key = GalleryKey(b"k" * 32)
    fields = {"subject": "s", "modality": "fingerprint", "slots": [3], "enrolled_at": 1.0, "model_id": "m"}
    assert open_record(key, seal_record(key, fields)) == fields
    assert "k" * 8 not in repr(key)
    assert key.tag("s") != GalleryKey(b"o" * 32).tag("s")
    assert len(key.tag("s")) == 16
    assert key.matches(key.key_check())
    assert not GalleryKey(b"o" * 32).matches(key.key_check())


def test_tags_are_libsodium_keyed_blake2b_so_existing_files_still_open():
    import nacl.hash
    from nacl.encoding import RawEncoder

    key = GalleryKey(bytes(range(32)))
    for subject in ("", "s", "person-000123", "Zoë " * 200):
        want = nacl.hash.blake2b(subject.encode(), key=key._tag_key, digest_size=16, encoder=RawEncoder)
        assert key.tag(subject) == want


def test_boxes_sealed_with_secretbox_open_through_the_direct_binding():
    key = GalleryKey(b"k" * 32)
    box = bytes(key.box.encrypt(b"plain"))
    assert key.open_box(box) == b"plain"
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_record(key, box[:-1] + bytes([box[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_record(key, box[:30])  # shorter than nonce + MAC


def test_template_opens_into_a_given_row_like_open_template():
    key = GalleryKey(b"k" * 32)
    v = np.random.default_rng(1).standard_normal(128).astype(np.float32)
    box = seal_template(key, "subject-é", v)
    block = np.full((3, 128), np.nan, dtype=np.float32)
    assert open_template_into(key, box, block[1]) == "subject-é"
    assert np.array_equal(block[1], open_template(key, box)[1])
    assert np.isnan(block[[0, 2]]).all()  # nothing else written
    with pytest.raises(IntegrityError, match="has 128 dimensions, expected 64"):
        open_template_into(key, box, np.empty(64, dtype=np.float32))
    for plain in (b"T1\x05\x00ab", b"T1\x01\x00a\x02\x00" + b"\0" * 7):
        with pytest.raises(IntegrityError, match="truncated"):
            open_template_into(key, bytes(key.box.encrypt(plain)), np.empty(2, dtype=np.float32))
