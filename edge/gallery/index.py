"""The gallery in memory: who is enrolled, which sensor slot is whose, and the template matrix.

Nothing here reads a file or holds a key. The subject table (``subjects.py``) maps subject
indices to ids, the matrix rows live in a search backend (``backends.py``) beside two arrays
naming each row's subject index and template row id, and a dict maps fingerprint sensor slots
to subjects. The ``Gallery`` facade (``store.py``) changes this only after its transaction has
committed, and holds the lock.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from edge.gallery.backends import SearchBackend, best_subjects, make_backend
from edge.gallery.subjects import SubjectTable
from edge.numeric import dot_rows


class GalleryIndex:
    def __init__(self, backend: str, dim: int) -> None:
        self.backend_name = backend
        self.dim = dim
        self.backend: SearchBackend = make_backend(backend, dim)
        # Kept small on purpose (about 33 bytes plus the id per subject, see subjects.py): record
        # fields stay sealed in the file and are read back when a subject changes.
        self.subjects = SubjectTable()  # subject index <-> subject id
        self.slots: dict[int, str] = {}  # fingerprint sensor slot -> subject
        self.row_subject = np.empty(0, dtype=np.int32)  # subject index of each matrix row
        self.row_template = np.empty(0, dtype=np.int64)  # template row id of each matrix row

    def reset(self) -> None:
        """Empty everything (before a reload)."""
        self.backend = make_backend(self.backend_name, self.dim)
        self.subjects.clear()
        self.slots.clear()
        self.row_subject = np.empty(0, dtype=np.int32)
        self.row_template = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.backend)

    # ------------------------------------------------------------------ subjects and slots

    def find(self, subject: str, tag: bytes) -> int | None:
        return self.subjects.find(subject, tag)

    def name(self, index: int) -> str:
        return str(self.subjects.name(index))

    def subject_ids(self, modality: str | None = None) -> set[str]:
        if modality is None:
            return set(self.subjects)
        if modality == "fingerprint":
            return set(self.slots.values())
        return {self.name(int(i)) for i in np.unique(self.row_subject)}

    def slots_of(self, subject: str) -> list[int]:
        return sorted(slot for slot, who in self.slots.items() if who == subject)

    def template_ids(self, index: int | None) -> list[int]:
        """The template row ids of subject ``index``, oldest first."""
        if index is None:
            return []
        ids: list[int] = self.row_template[self.row_subject == index].tolist()
        return ids

    def count_of(self, index: int) -> int:
        return int(np.count_nonzero(self.row_subject == index))

    # ------------------------------------------------------------------ the matrix

    def load(self, rows: NDArray[np.int64], owners: NDArray[np.int32]) -> None:
        """Take the row ids and owners of a matrix the backend was just filled with (``add_from``)."""
        self.row_template = rows
        self.row_subject = owners

    def add_rows(self, vectors: NDArray[np.float32], ids: Iterable[int], owners: NDArray[np.int32]) -> None:
        row_ids = np.fromiter(ids, dtype=np.int64)
        if not len(row_ids):
            return
        self.backend.add(vectors)
        self.row_template = np.concatenate([self.row_template, row_ids])
        self.row_subject = np.concatenate([self.row_subject, owners.astype(np.int32)])

    def drop_rows(self, drop: NDArray[np.bool_]) -> None:
        if not drop.any():
            return
        keep = ~drop
        self.backend.keep(keep)
        self.row_subject = self.row_subject[keep]
        self.row_template = self.row_template[keep]

    def drop_template_ids(self, ids: Iterable[int]) -> None:
        self.drop_rows(np.isin(self.row_template, np.fromiter(ids, dtype=np.int64)))

    def best(self, q: NDArray[np.float32], k: int, per_subject: int) -> list[tuple[str, float]]:
        """The best ``k`` subjects for a protected probe (max score over each subject's rows)."""
        found = best_subjects(self.backend, q, self.row_subject, k, per_subject)
        return [(self.name(owner), score) for owner, score in found]

    def best_of(self, index: int, q: NDArray[np.float32]) -> float | None:
        """Subject ``index``'s best score for a protected probe; None without templates."""
        rows = np.flatnonzero(self.row_subject == index).astype(np.int64)
        if not len(rows):
            return None
        return float(np.max(dot_rows(self.backend.rows(rows), q)))
