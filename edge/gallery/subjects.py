"""The gallery's subject table in memory: subject index <-> subject id, in a few flat arrays.

A dict and a list of Python strings cost about 136 bytes a subject (measured with tracemalloc:
13.6 MB for 100k subjects, a quarter of their 51 MB template matrix). Here the ids are UTF-8
bytes in one ``bytearray`` with end offsets, and lookups go through the first 8 bytes of each
subject's keyed tag, kept sorted: about 33 bytes a subject plus the id itself. A lookup is a
binary search and a comparison of the stored id, so a tag-prefix collision cannot mix subjects.

Indices are never reused: a removed subject's index stays dead (its stored id is zeroed), so the
template rows' subject indices stay valid.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray


def tag_key(tag: bytes) -> int:
    """The lookup key of a subject tag: its first 8 bytes as an int64."""
    return int.from_bytes(tag[:8], "little", signed=True)


class SubjectTable:
    __slots__ = ("_alive", "_blob", "_ends", "_keys", "_live", "_sorted_index", "_sorted_keys")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._blob = bytearray()  # every subject id, UTF-8, back to back
        self._ends = array("q")  # by index: end offset of its id in _blob
        self._alive = bytearray()  # by index: 1 while enrolled
        self._keys = array("q")  # by index: tag prefix
        # the lookup index: arrays, since bisect on them costs 1.2 us a lookup, np.searchsorted 3.6 us
        self._sorted_keys = array("q")
        self._sorted_index = array("q")
        self._live = 0

    def __len__(self) -> int:
        """Subjects enrolled (removed ones excluded)."""
        return self._live

    def add(self, subject: str, tag: bytes, *, reindex: bool = True) -> int:
        """A new index for ``subject`` (which must not be present). With ``reindex=False`` the
        lookup index is left stale for speed (bulk loads); call :meth:`reindex` before lookups."""
        index = len(self._ends)
        self._blob += subject.encode()
        self._ends.append(len(self._blob))
        self._alive.append(1)
        key = tag_key(tag)
        self._keys.append(key)
        self._live += 1
        if reindex:
            at = bisect.bisect_right(self._sorted_keys, key)
            self._sorted_keys.insert(at, key)
            self._sorted_index.insert(at, index)
        return index

    def reindex(self) -> None:
        keys = np.frombuffer(self._keys, dtype=np.int64) if len(self._keys) else np.empty(0, np.int64)
        order = np.argsort(keys, kind="stable")
        self._sorted_index = array("q", order.astype(np.int64).tobytes())
        self._sorted_keys = array("q", keys[order].tobytes())

    def find(self, subject: str, tag: bytes) -> int | None:
        """The index of an enrolled ``subject`` whose tag is ``tag``, else None."""
        key = tag_key(tag)
        keys = self._sorted_keys
        at = bisect.bisect_left(keys, key)
        name = subject.encode()
        while at < len(keys) and keys[at] == key:
            index = self._sorted_index[at]
            if self._alive[index] and self._raw(index) == name:
                return index
            at += 1
        return None

    def ambiguous_keys(self) -> set[int]:
        """Lookup keys shared by more than one subject (in practice none: 64-bit prefixes of keyed
        hashes); rows with these keys must go through :meth:`find`."""
        keys = np.frombuffer(self._sorted_keys, dtype=np.int64) if len(self._sorted_keys) else np.empty(0, np.int64)
        return {int(k) for k in keys[1:][keys[1:] == keys[:-1]]}

    def find_keys(self, keys: NDArray[np.int64]) -> NDArray[np.int64]:
        """Indices of the live subjects with these lookup keys, -1 where none; vectorised, for
        keys not in :meth:`ambiguous_keys` (for those the answer is one of the candidates)."""
        out = np.full(len(keys), -1, dtype=np.int64)
        if not len(self._sorted_keys):
            return out
        sorted_keys = np.frombuffer(self._sorted_keys, dtype=np.int64)
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        hit = sorted_keys[at] == keys
        out[hit] = np.frombuffer(self._sorted_index, dtype=np.int64)[at[hit]]
        alive = np.frombuffer(self._alive, dtype=np.uint8)
        out[hit] = np.where(alive[out[hit]] == 1, out[hit], -1)
        return out

    def name(self, index: int) -> str | None:
        """The subject id at ``index``; None once removed."""
        return self._raw(index).decode() if self._alive[index] else None

    def remove(self, index: int) -> None:
        if self._alive[index]:
            self._alive[index] = 0
            self._live -= 1
            start = self._ends[index - 1] if index else 0
            self._blob[start : self._ends[index]] = bytes(self._ends[index] - start)  # no id left behind

    def __iter__(self) -> Iterator[str]:
        """Enrolled subject ids, in index order."""
        for index, alive in enumerate(self._alive):
            if alive:
                yield self._raw(index).decode()

    def _raw(self, index: int) -> bytes:
        start = self._ends[index - 1] if index else 0
        return bytes(self._blob[start : self._ends[index]])
