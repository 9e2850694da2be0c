"""The encrypted gallery: SQLite at rest, one contiguous protected matrix in memory.

At rest (``gallery.sqlite3``, WAL, ``synchronous=FULL``, ``secure_delete``, incremental
auto-vacuum), each row is a SecretBox with a fresh nonce: one *record* per (subject, modality)
holding the subject id, sensor slots, enrolment time and model id, and one row per face template.
Rows are found by an opaque keyed tag of the subject id, never the id itself. Face templates are
stored after the device-keyed protective rotation (``protect.py``); probes get the same rotation.

Every change is one SQLite transaction: when ``enrol``/``delete_subject`` returns, it is on disk,
and a crash before that leaves the previous state. The in-memory matrix changes only after commit.

Thread safety: one lock serialises all calls, so an enrolment thread and the matching loop may
share a gallery.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge.config.schema import GallerySection
from edge.errors import IntegrityError, StorageError
from edge.gallery.backends import BACKENDS, SearchBackend, best_subjects, make_backend
from edge.gallery.protect import Protector
from edge.gallery.sealed import (
    GalleryKey,
    destroy_file,
    load_key,
    open_record,
    open_template,
    open_template_into,
    seal_record,
    seal_template,
    store_key,
)
from edge.gallery.subjects import SubjectTable, tag_key
from edge.modality import BIOMETRIC, Modality, in_order, parse
from edge.numeric import dot_rows, fixed_sum
from edge.state import StateDir

log = logging.getLogger(__name__)

MODALITIES: tuple[Modality, ...] = in_order(BIOMETRIC)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    tag BLOB NOT NULL, modality TEXT NOT NULL, box BLOB NOT NULL, PRIMARY KEY (tag, modality)
);
CREATE TABLE IF NOT EXISTS templates (id INTEGER PRIMARY KEY, tag BLOB NOT NULL, box BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS templates_tag ON templates (tag);
"""


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EnrolResult:
    subject: str = field(repr=False)
    modality: Modality
    templates_added: int
    templates_total: int
    #: templates dropped because the subject already held ``templates_per_subject`` (oldest go first)
    templates_dropped: int = 0
    sensor_slot: int | None = None
    #: another subject whose face matched a new template at or above the gallery's threshold
    duplicate_of: str | None = field(default=None, repr=False)
    duplicate_score: float | None = None


@dataclass(frozen=True)
class SearchResult:
    """The best subject for a probe. ``margin`` = best score - best score of any other subject
    (``inf`` when no other subject is enrolled). ``subject`` is None for an empty gallery."""

    subject: str | None = field(repr=False)
    score: float
    margin: float
    #: the next subjects and their scores, best first (``k - 1`` of them at most)
    runners_up: tuple[tuple[str, float], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class DeletionReport(Mapping[str, object]):
    """What a deletion removed. A Mapping of plain counts and slot numbers, never template bytes.

    ``sensor_slots`` must still be erased on the fingerprint sensor by the caller.
    """

    found: bool
    face_templates: int
    sensor_slots: tuple[int, ...]
    modalities: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "found": self.found,
            "face_templates": self.face_templates,
            "sensor_slots": list(self.sensor_slots),
            "modalities": list(self.modalities),
        }

    def __getitem__(self, key: str) -> object:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("found", "face_templates", "sensor_slots", "modalities"))

    def __len__(self) -> int:
        return 4


# ----------------------------------------------------------------------------- the gallery


class Gallery:
    """Enrolled subjects' templates, encrypted at rest and searchable in memory."""

    def __init__(
        self,
        state: StateDir,
        conn: sqlite3.Connection,
        key: GalleryKey,
        *,
        backend: str,
        dim: int,
        templates_per_subject: int,
        threshold: float | None,
    ) -> None:
        self._state = state
        self._conn: sqlite3.Connection | None = conn
        self._key = key
        self._protector = Protector.from_seed(key.protect_seed, dim)
        self._backend_name = backend
        self._backend: SearchBackend = make_backend(backend, dim)
        self.dim = dim
        self.templates_per_subject = templates_per_subject
        self.threshold = threshold
        self._lock = threading.RLock()
        # Kept small on purpose (about 33 bytes plus the id per subject, see subjects.py): record
        # fields stay sealed in the file and are read back when a subject changes.
        self._subjects = SubjectTable()  # subject index <-> subject id
        self._slots: dict[int, str] = {}  # fingerprint sensor slot -> subject
        self._row_subject = np.empty(0, dtype=np.int32)  # subject index of each matrix row
        self._row_template = np.empty(0, dtype=np.int64)  # template row id of each matrix row

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(
        cls,
        state: StateDir,
        *,
        backend: str = "numpy",
        dim: int = 128,
        create_key: bool = False,
        templates_per_subject: int = 5,
        threshold: float | None = None,
    ) -> Gallery:
        """Open (or with ``create_key`` create) the gallery in ``state``.

        ``threshold`` is the face match threshold used to flag duplicate enrolments (None: no check).
        Raises StorageError for a missing key or an unusable file, IntegrityError for a wrong key.
        """
        if backend not in BACKENDS:
            raise StorageError(f"unknown gallery backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
        if not 1 <= templates_per_subject <= 50:
            raise StorageError(f"templates_per_subject must be 1..50, got {templates_per_subject}")
        state.ensure()
        key = cls._load_or_create_key(state, create_key=create_key)
        conn = _connect(state.gallery_db)
        try:
            key = cls._check_key(state, conn, key, dim)
            gallery = cls(
                state,
                conn,
                key,
                backend=backend,
                dim=dim,
                templates_per_subject=templates_per_subject,
                threshold=threshold,
            )
            gallery._load()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StorageError(
                f"{state.gallery_db} could not be read ({exc.__class__.__name__})",
                hint="check the SD card; restore the file or factory-reset the gallery and re-enrol",
            ) from None
        except BaseException:
            conn.close()
            raise
        log.info("gallery opened: %d subjects, %d templates, backend %s", len(gallery._subjects), len(gallery), backend)
        return gallery

    @classmethod
    def open_configured(
        cls,
        state: StateDir,
        section: GallerySection,
        *,
        dim: int = 128,
        threshold: float | None = None,
        create_key: bool = False,
    ) -> Gallery:
        """``open`` with the ``[gallery]`` config section (backend, templates per subject)."""
        return cls.open(
            state,
            backend=section.backend,
            dim=dim,
            create_key=create_key,
            templates_per_subject=section.templates_per_subject,
            threshold=threshold,
        )

    @staticmethod
    def _load_or_create_key(state: StateDir, *, create_key: bool) -> GalleryKey:
        path = state.gallery_key
        if path.exists():
            return load_key(path)
        if _has_data(state.gallery_db):
            raise StorageError(
                f"{path} is missing, so the gallery in {state.gallery_db} cannot be read",
                hint="restore gallery.key from the device backup; otherwise run a factory reset and re-enrol",
            )
        if not create_key:
            raise StorageError(f"{path} is missing", hint="run `edge-provision init` to create the gallery key")
        key = GalleryKey.generate()
        store_key(path, key)
        log.info("gallery key created")
        return key

    @staticmethod
    def _check_key(state: StateDir, conn: sqlite3.Connection, key: GalleryKey, dim: int) -> GalleryKey:
        """Check the key against the file; finish or roll back an interrupted re-key."""
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        pending = state.gallery_key.with_name(state.gallery_key.name + ".next")
        if not meta:
            with _transaction(conn):
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                conn.execute("INSERT INTO meta VALUES ('dim', ?)", (dim,))
                conn.execute("INSERT INTO meta VALUES ('key_check', ?)", (key.key_check(),))
            destroy_file(pending)
            return key
        if int(meta.get("schema", -1)) != SCHEMA_VERSION:
            raise StorageError(
                f"{state.gallery_db} has schema {meta.get('schema')}, this agent reads {SCHEMA_VERSION}",
                hint="upgrade the agent, or factory-reset the gallery",
            )
        if int(meta["dim"]) != dim:
            raise StorageError(
                f"{state.gallery_db} holds {meta['dim']}-d templates but {dim}-d were asked for",
                hint="the face model changed: re-enrol with the new model after a factory reset",
            )
        check = bytes(meta["key_check"])
        if pending.exists():
            next_key = load_key(pending)
            if next_key.matches(check):  # the re-key committed; the rename did not happen
                store_key(state.gallery_key, next_key, overwrite=True)
                destroy_file(pending)
                log.warning("finished an interrupted gallery re-key")
                return next_key
            destroy_file(pending)  # the re-key did not commit: the old key stays
            log.warning("rolled back an interrupted gallery re-key")
        if not key.matches(check):
            raise IntegrityError(
                f"{state.gallery_key} does not unlock {state.gallery_db} (wrong or replaced key)",
                hint="restore the gallery.key that belongs to this gallery; otherwise factory-reset and re-enrol",
            )
        return key

    def _load(self) -> None:
        conn = self._need_conn()
        faces = 0
        # Face records first, so subjects with a face record get the indices below ``faces``;
        # each subject has at most one record per modality, so no lookups are needed here.
        for modality in MODALITIES:
            rows = conn.execute(
                "SELECT CAST(tag AS BLOB), CAST(box AS BLOB) FROM records WHERE modality = ?", (modality,)
            )
            for tag, box in rows:
                fields = open_record(self._key, bytes(box))
                subject = str(fields["subject"])
                if self._key.tag(subject) != tag or fields.get("modality") != modality:
                    raise IntegrityError("a gallery record is stored under another subject's tag (file altered)")
                if modality == "face":
                    self._subjects.add(subject, tag, reindex=False)
                elif self._subjects.find(subject, tag) is None:
                    self._subjects.add(subject, tag)
                for slot in fields.get("slots", []):
                    self._slots[int(slot)] = subject
            if modality == "face":
                faces = len(self._subjects)
                self._subjects.reindex()
        count = int(conn.execute("SELECT count(*) FROM templates").fetchone()[0])
        ids = np.empty(count, dtype=np.int64)
        owners = np.empty(count, dtype=np.int32)
        ambiguous = self._subjects.ambiguous_keys()
        loaded = 0

        def blocks(size: int = 1024) -> Iterator[NDArray[np.float32]]:
            """Templates decrypted straight into one reused block (512 KB at 128-d); the backend
            copies each block into its matrix before the next is read. Owners are looked up a
            block at a time, vectorised, so no array the size of the gallery is made for it."""
            nonlocal loaded
            block = np.empty((size, self.dim), dtype=np.float32)
            keys = np.empty(size, dtype=np.int64)
            found = np.full(size, -1, dtype=np.int64)  # owners resolved in the loop (shared keys only)
            filled = 0

            def resolve() -> None:
                got = found[:filled]
                plain = got == -1
                got[plain] = self._subjects.find_keys(keys[:filled][plain])
                if got.min() < 0 or got.max() >= faces:  # no such subject, or no face record
                    raise IntegrityError("a gallery template has no matching subject record (file altered)")
                owners[loaded - filled : loaded] = got
                got[:] = -1

            rows = conn.execute("SELECT id, CAST(tag AS BLOB), CAST(box AS BLOB) FROM templates ORDER BY id")
            for row_id, tag, box in rows:
                if loaded == count:
                    raise StorageError(f"gallery load expected {count} templates, read more")
                subject = open_template_into(self._key, bytes(box), block[filled])
                if self._key.tag(subject) != tag:
                    raise IntegrityError("a gallery template has no matching subject record (file altered)")
                ids[loaded] = row_id
                keys[filled] = key = tag_key(tag)
                if key in ambiguous:  # a key prefix two subjects share: resolve by id (-2: none)
                    owner = self._subjects.find(subject, tag)
                    found[filled] = -2 if owner is None else owner
                loaded += 1
                filled += 1
                if filled == size:
                    resolve()
                    yield block
                    filled = 0
            if filled:
                resolve()
                yield block[:filled]

        # decrypted block by block straight into the backend: the matrix exists once in memory
        self._backend.add_from(count, blocks())
        self._row_template = ids
        self._row_subject = owners

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._conn.close()
                    self._conn = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """Face templates held."""
        return len(self._backend)

    @property
    def backend(self) -> str:
        return self._backend_name

    def subjects(self, modality: str | None = None) -> set[str]:
        with self._lock:
            if modality is None:
                return set(self._subjects)
            if modality == "fingerprint":
                return set(self._slots.values())
            return {str(self._subjects.name(int(i))) for i in np.unique(self._row_subject)}

    def subject_for_slot(self, slot: int) -> str | None:
        with self._lock:
            return self._slots.get(int(slot))

    def slots_of(self, subject: str) -> list[int]:
        """The sensor slots holding ``subject``'s fingerprint templates, in order."""
        with self._lock:
            return sorted(slot for slot, who in self._slots.items() if who == subject)

    def search(self, probe: NDArray[np.floating[Any]], k: int = 2) -> SearchResult:
        """The best ``k`` subjects for a face probe (max score over each subject's templates)."""
        if k < 1:
            raise ValueError("k must be at least 1")
        unit = _unit(probe, self.dim)
        with self._lock:
            q = self._protector.apply_one(unit)
            found = self._best_subjects(q, k)
        if not found:
            return SearchResult(None, -math.inf, math.inf)
        subject, score = found[0]
        margin = score - found[1][1] if len(found) > 1 else math.inf
        return SearchResult(subject, score, margin, tuple(found[1:]))

    def verify(self, subject: str, probe: NDArray[np.floating[Any]]) -> float:
        """1:1: the best score of ``probe`` against the subject's face templates (-inf if none)."""
        unit = _unit(probe, self.dim)
        with self._lock:
            q = self._protector.apply_one(unit)
            index = self._subjects.find(subject, self._key.tag(subject))
            if index is None:
                return -math.inf
            rows = np.flatnonzero(self._row_subject == index).astype(np.int64)
            if not len(rows):
                return -math.inf
            return float(np.max(dot_rows(self._backend.rows(rows), q)))

    def _best_subjects(self, q: NDArray[np.float32], k: int) -> list[tuple[str, float]]:
        found = best_subjects(self._backend, q, self._row_subject, k, self.templates_per_subject)
        return [(str(self._subjects.name(owner)), score) for owner, score in found]

    # ------------------------------------------------------------------ changes

    def enrol(
        self,
        subject: str,
        modality: str,
        *,
        templates: Sequence[NDArray[np.floating[Any]]] = (),
        sensor_slot: int | None = None,
        model_id: str = "",
    ) -> EnrolResult:
        """Add face templates, or a fingerprint sensor slot, for ``subject``; durable on return.

        A subject keeps at most ``templates_per_subject`` face templates: the oldest go first.
        """
        if not subject:
            raise ValueError("subject id must not be empty")
        kind = parse(modality, BIOMETRIC)
        if kind is Modality.face:
            if not templates:
                raise ValueError("face enrolment needs at least one template")
            if sensor_slot is not None:
                raise ValueError("a face enrolment takes no sensor slot")
            vecs = np.stack([_unit(t, self.dim) for t in templates])
        else:
            if sensor_slot is None or sensor_slot < 0:
                raise ValueError("a fingerprint enrolment needs the sensor slot (>= 0) the sensor stored it in")
            if len(templates):
                raise ValueError("fingerprint templates stay in the sensor; pass only sensor_slot")
            vecs = np.empty((0, self.dim), np.float32)
        with self._lock:
            duplicate: tuple[str, float] | None = None
            if kind is Modality.face and self.threshold is not None:
                duplicate = self._duplicate(subject, vecs)
            return self._enrol_locked(subject, kind, vecs, sensor_slot, model_id, duplicate)

    def enrol_many(
        self, items: Sequence[tuple[str, Sequence[NDArray[np.floating[Any]]]]], *, model_id: str = ""
    ) -> int:
        """Bulk face enrolment in one transaction (migration, benchmarks); no duplicate check.

        Each item is (subject, templates) for a subject not yet enrolled. Returns templates added.
        """
        with self._lock:
            conn = self._need_conn()
            now = time.time()
            rows: list[tuple[str, NDArray[np.float32]]] = []
            for subject, templates in items:
                if self._subjects.find(subject, self._key.tag(subject)) is not None:
                    raise ValueError("enrol_many takes only subjects not yet enrolled")
                vecs = np.stack([_unit(t, self.dim) for t in templates])[-self.templates_per_subject :]
                rows.extend((subject, v) for v in self._protector.apply(vecs))
            records = {
                subject: {"subject": subject, "modality": "face", "slots": [], "enrolled_at": now, "model_id": model_id}
                for subject, _ in items
            }
            with _transaction(conn):
                conn.executemany(
                    "INSERT INTO records VALUES (?, 'face', ?)",
                    [(self._key.tag(s), seal_record(self._key, f)) for s, f in records.items()],
                )
                before = conn.execute("SELECT coalesce(max(id), 0) FROM templates").fetchone()[0]
                conn.executemany(
                    "INSERT INTO templates (id, tag, box) VALUES (?, ?, ?)",
                    [
                        (before + 1 + i, self._key.tag(s), seal_template(self._key, s, v))
                        for i, (s, v) in enumerate(rows)
                    ],
                )
            ids = np.arange(before + 1, before + 1 + len(rows), dtype=np.int64)
            new = {s: self._subjects.add(s, self._key.tag(s), reindex=False) for s in records}
            self._subjects.reindex()
            owners = np.array([new[s] for s, _ in rows], dtype=np.int32)
            self._backend.add(np.stack([v for _, v in rows]) if rows else np.empty((0, self.dim), np.float32))
            self._row_template = np.concatenate([self._row_template, ids])
            self._row_subject = np.concatenate([self._row_subject, owners])
            return len(rows)

    def _duplicate(self, subject: str, vecs: NDArray[np.float32]) -> tuple[str, float] | None:
        assert self.threshold is not None
        best: tuple[str, float] | None = None
        for q in self._protector.apply(vecs):
            for other, score in self._best_subjects(q, 2):
                if other != subject and score >= self.threshold and (best is None or score > best[1]):
                    best = (other, score)
        return best

    def _enrol_locked(
        self,
        subject: str,
        modality: Modality,
        vecs: NDArray[np.float32],
        sensor_slot: int | None,
        model_id: str,
        duplicate: tuple[str, float] | None,
    ) -> EnrolResult:
        conn = self._need_conn()
        if sensor_slot is not None and self._slots.get(sensor_slot, subject) != subject:
            raise StorageError(
                f"sensor slot {sensor_slot} already belongs to another enrolled subject",
                hint="erase that slot through a deletion first, or store the finger in a free slot",
            )
        tag = self._key.tag(subject)
        index = self._subjects.find(subject, tag)
        old = self._read_record(tag, modality.value)
        fields: dict[str, Any] = dict(old) if old else {"subject": subject, "modality": modality.value, "slots": []}
        fields["enrolled_at"] = time.time()
        fields["model_id"] = model_id or fields.get("model_id", "")
        if sensor_slot is not None and sensor_slot not in fields["slots"]:
            fields["slots"] = [*fields["slots"], sensor_slot]
        protected = self._protector.apply(vecs) if len(vecs) else vecs
        existing = self._row_template[self._row_subject == index].tolist() if index is not None else []
        keep_new = protected[-self.templates_per_subject :]
        overflow = len(existing) + len(keep_new) - self.templates_per_subject
        dropped = existing[: max(0, overflow)]
        new_ids: list[int] = []
        with _transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (tag, modality.value, seal_record(self._key, fields))
            )
            if dropped:
                conn.executemany("DELETE FROM templates WHERE id = ?", [(i,) for i in dropped])
            for vec in keep_new:
                cur = conn.execute(
                    "INSERT INTO templates (tag, box) VALUES (?, ?)", (tag, seal_template(self._key, subject, vec))
                )
                assert cur.lastrowid is not None
                new_ids.append(int(cur.lastrowid))
        # committed: now the memory
        if index is None:
            index = self._subjects.add(subject, tag)
        if sensor_slot is not None:
            self._slots[sensor_slot] = subject
        if dropped:
            self._drop_rows(np.isin(self._row_template, np.array(dropped, dtype=np.int64)))
        if new_ids:
            self._backend.add(keep_new)
            self._row_template = np.concatenate([self._row_template, np.array(new_ids, dtype=np.int64)])
            self._row_subject = np.concatenate([self._row_subject, np.full(len(new_ids), index, np.int32)])
        log.info("enrolled %s: %d templates added, %d dropped", modality, len(new_ids), len(dropped))
        return EnrolResult(
            subject=subject,
            modality=modality,
            templates_added=len(new_ids),
            templates_total=int(np.count_nonzero(self._row_subject == index)),
            templates_dropped=len(dropped),
            sensor_slot=sensor_slot,
            duplicate_of=duplicate[0] if duplicate else None,
            duplicate_score=duplicate[1] if duplicate else None,
        )

    def delete_subject(self, subject: str, modality: str | None = None) -> DeletionReport:
        """Remove the records and templates of ``subject`` now, and scrub the freed pages.

        ``modality``: only that modality's data (a withdrawal of face consent keeps the person's
        fingerprint, which they still consent to); None: everything the subject has.
        The report's ``sensor_slots`` must be erased on the fingerprint sensor by the caller.
        Deleting an unknown subject is not an error (``found`` is False).
        """
        if modality is not None:
            modality = parse(modality, BIOMETRIC).value
        with self._lock:
            conn = self._need_conn()
            tag = self._key.tag(subject)
            index = self._subjects.find(subject, tag)
            held = {m for (m,) in conn.execute("SELECT modality FROM records WHERE tag = ?", (tag,))}
            targets = held if modality is None else held & {modality}
            finger = self._read_record(tag, "fingerprint") if "fingerprint" in targets else None
            drop_face = modality in (None, "face")
            with _transaction(conn):
                n_templates = conn.execute("DELETE FROM templates WHERE tag = ?", (tag,)).rowcount if drop_face else 0
                conn.executemany("DELETE FROM records WHERE tag = ? AND modality = ?", [(tag, m) for m in targets])
            self._scrub(conn)
            slots = tuple(sorted(int(s) for s in finger.get("slots", []))) if finger else ()
            for slot in slots:
                self._slots.pop(slot, None)
            if index is not None:
                if drop_face:
                    self._drop_rows(self._row_subject == index)
                if not held - targets:  # nothing of the subject is left
                    self._subjects.remove(index)
            log.info("deleted a subject's data: %d face templates, %d sensor slots", n_templates, len(slots))
            return DeletionReport(
                found=bool(targets) or n_templates > 0,
                face_templates=n_templates,
                sensor_slots=slots,
                modalities=tuple(sorted(targets)),
            )

    def rekey(self) -> None:
        """Renew every reference: new encryption key, new tags, new protective transform.

        Crash-safe: the new key is written to ``gallery.key.next`` first, the whole file is
        re-sealed in one transaction, then the key file is replaced. ``open`` finishes or rolls
        back an interrupted re-key.
        """
        with self._lock:
            conn = self._need_conn()
            new_key = GalleryKey.generate()
            new_protector = Protector.from_seed(new_key.protect_seed, self.dim)
            pending = self._state.gallery_key.with_name(self._state.gallery_key.name + ".next")
            store_key(pending, new_key, overwrite=True)
            with _transaction(conn):
                for tag, modality, box in conn.execute("SELECT tag, modality, box FROM records").fetchall():
                    fields = open_record(self._key, bytes(box))
                    conn.execute("DELETE FROM records WHERE tag = ? AND modality = ?", (tag, modality))
                    conn.execute(
                        "INSERT INTO records VALUES (?, ?, ?)",
                        (new_key.tag(str(fields["subject"])), modality, seal_record(new_key, fields)),
                    )
                for row_id, box in conn.execute("SELECT id, box FROM templates").fetchall():
                    subject, vec = open_template(self._key, bytes(box))
                    renewed = new_protector.apply(self._protector.invert(vec[None, :]))[0]
                    conn.execute(
                        "UPDATE templates SET tag = ?, box = ? WHERE id = ?",
                        (new_key.tag(subject), seal_template(new_key, subject, renewed), row_id),
                    )
                conn.execute("UPDATE meta SET value = ? WHERE name = 'key_check'", (new_key.key_check(),))
            store_key(self._state.gallery_key, new_key, overwrite=True)
            destroy_file(pending)
            self._scrub(conn)
            # reload memory from the renewed file
            self._key, self._protector = new_key, new_protector
            self._backend = make_backend(self._backend_name, self.dim)
            self._subjects.clear()
            self._slots.clear()
            self._load()
            log.info("gallery re-keyed: %d templates renewed", len(self))

    def crypto_erase(self, state: StateDir) -> None:
        """Tamper response: destroy the key (every record sealed under it becomes unreadable) and
        forget the templates held in memory; the database file is left as unreadable ciphertext.
        Nothing matches afterwards; the terminal needs re-provisioning and re-enrolment."""
        with self._lock:
            destroy_file(state.gallery_key)
            destroy_file(state.gallery_key.with_name(state.gallery_key.name + ".next"))
            self._backend = make_backend(self._backend_name, self.dim)
            self._subjects.clear()
            self._slots.clear()
            self._row_template = self._row_template[:0]
            self._row_subject = self._row_subject[:0]
        log.warning("tamper: gallery key destroyed, templates forgotten")

    @staticmethod
    def factory_reset(state: StateDir) -> None:
        """Crypto-erase: destroy the key first (everything sealed under it is now unreadable),
        then remove the database files. Safe to repeat after an interruption."""
        destroy_file(state.gallery_key)
        destroy_file(state.gallery_key.with_name(state.gallery_key.name + ".next"))
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = Path(str(state.gallery_db) + suffix)
            path.unlink(missing_ok=True)
        log.warning("gallery factory reset: key destroyed, store removed")

    # ------------------------------------------------------------------ internals

    def _need_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the gallery is closed")
        return self._conn

    def _read_record(self, tag: bytes, modality: str) -> dict[str, Any] | None:
        row = (
            self._need_conn()
            .execute("SELECT CAST(box AS BLOB) FROM records WHERE tag = ? AND modality = ?", (tag, modality))
            .fetchone()
        )
        return open_record(self._key, bytes(row[0])) if row else None

    def _drop_rows(self, drop: NDArray[np.bool_]) -> None:
        if not drop.any():
            return
        keep = ~drop
        self._backend.keep(keep)
        self._row_subject = self._row_subject[keep]
        self._row_template = self._row_template[keep]

    @staticmethod
    def _scrub(conn: sqlite3.Connection) -> None:
        """Return freed pages to the file system and empty the WAL so no old ciphertext lingers.

        ``secure_delete`` has already zeroed the freed content inside the pages."""
        conn.execute("PRAGMA incremental_vacuum")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def factory_reset(state: StateDir) -> None:
    Gallery.factory_reset(state)


# ----------------------------------------------------------------------------- helpers


def _unit(vector: NDArray[np.floating[Any]], dim: int) -> NDArray[np.float32]:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim:
        raise ValueError(f"template has {v.shape[0]} dimensions, the gallery holds {dim}")
    v64 = v.astype(np.float64)  # no overflow or underflow for any float32 input
    norm2 = float(fixed_sum(v64 * v64))  # the same bits on every CPU (edge.numeric)
    if not 0.0 < norm2 < math.inf:  # false for NaN too
        raise ValueError("template is zero or not finite")
    unit: NDArray[np.float32] = (v64 * (1.0 / math.sqrt(norm2))).astype(np.float32)
    return unit


def _has_data(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective only on a new file
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
        # 512 KiB page cache (default 2 MB): the load is one sequential scan, and a change touches a
        # few B-tree pages; measured -1.7 MB of peak RSS opening 100k templates, no slower
        conn.execute("PRAGMA cache_size = -512")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"{path} is not a usable gallery database ({exc})",
            hint="check the SD card; restore the file or factory-reset the gallery and re-enrol",
        ) from None
    return conn


class _transaction:  # noqa: N801 - used like a function
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
