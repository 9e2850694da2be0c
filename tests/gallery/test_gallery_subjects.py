"""The in-memory subject table: index <-> id, lookups by tag prefix, removal, bulk loads."""

from __future__ import annotations

import hashlib

from edge.gallery.subjects import SubjectTable


def _tag(subject: str) -> bytes:
    return hashlib.blake2b(subject.encode(), key=b"k" * 32, digest_size=16).digest()


def test_add_find_name_and_remove():
    t = SubjectTable()
    ids = ["alice", "Zoë", "", "bob", "person-000123"]
    indices = [t.add(s, _tag(s)) for s in ids]
    assert indices == [0, 1, 2, 3, 4]
    assert len(t) == 5
    for s, i in zip(ids, indices, strict=True):
        assert t.find(s, _tag(s)) == i
        assert t.name(i) == s
    assert t.find("carol", _tag("carol")) is None
    assert t.find("alice", _tag("bob")) is None  # right id, wrong tag: not found
    t.remove(1)
    t.remove(1)  # twice is harmless
    assert len(t) == 4
    assert t.find("Zoë", _tag("Zoë")) is None
    assert t.name(1) is None
    assert "Zoë".encode() not in t._blob  # the removed id is zeroed, not left in memory
    assert list(t) == ["alice", "", "bob", "person-000123"]
    assert t.add("Zoë", _tag("Zoë")) == 5  # indices are never reused
    assert t.find("Zoë", _tag("Zoë")) == 5


def test_tag_prefix_collisions_are_told_apart_by_the_stored_id():
    t = SubjectTable()
    same = b"\x01" * 8
    a = t.add("a", same + b"A" * 8)
    b = t.add("b", same + b"B" * 8)
    assert t.find("a", same + b"A" * 8) == a
    assert t.find("b", same + b"B" * 8) == b
    t.remove(a)
    assert t.find("a", same + b"A" * 8) is None
    assert t.find("b", same + b"B" * 8) == b


def test_bulk_add_then_reindex_matches_one_by_one():
    bulk, single = SubjectTable(), SubjectTable()
    ids = [f"s{i}" for i in range(3000)]
    for s in ids:
        bulk.add(s, _tag(s), reindex=False)
        single.add(s, _tag(s))
    bulk.reindex()
    for s in ids[::7]:
        assert bulk.find(s, _tag(s)) == single.find(s, _tag(s)) == int(s[1:])
    bulk.clear()
    assert len(bulk) == 0
    assert bulk.find("s1", _tag("s1")) is None
    bulk.reindex()  # an empty table reindexes too
    assert list(bulk) == []


def test_find_keys_resolves_many_at_once_and_reports_shared_keys():
    import numpy as np

    from edge.gallery.subjects import tag_key

    t = SubjectTable()
    ids = [f"s{i}" for i in range(50)]
    for s in ids:
        t.add(s, _tag(s), reindex=False)
    t.reindex()
    assert t.ambiguous_keys() == set()
    t.remove(3)
    keys = np.array([tag_key(_tag(s)) for s in [*ids, "nobody"]], dtype=np.int64)
    want = [*range(50), -1]
    want[3] = -1  # removed
    assert t.find_keys(keys).tolist() == want
    assert SubjectTable().find_keys(keys[:2]).tolist() == [-1, -1]
    shared = b"\x07" * 8
    t.add("x", shared + b"x" * 8)
    t.add("y", shared + b"y" * 8)
    assert t.ambiguous_keys() == {tag_key(shared + b"x" * 8)}
