"""The encrypted gallery's facade: ``Gallery``, the one object callers use.

Three modules make the gallery: ``db.py`` (the SQLite file: sealed rows, the quarantine, no key),
``index.py`` (memory: subjects, sensor slots, the protected template matrix, no file) and this
facade, which holds the key and the lock, seals and opens rows, and keeps the two in step: every
change is one SQLite transaction first, and the memory changes only after it committed. When
``enrol``/``delete_subject`` returns, the change is on disk; a crash before that leaves the
previous state.

At rest each row is a SecretBox with a fresh nonce: one *record* per (subject, modality) holding
the subject id, sensor slots, enrolment time and model id, and one row per face template. Rows
are found by an opaque keyed tag of the subject id, never the id itself. Face templates are
stored after the device-keyed protective rotation (``protect.py``); probes get the same rotation.

Damage: a row that fails authentication (or sits under another subject's tag, or is a template
whose face record is gone) is moved to the quarantine table when it is read, kept sealed for
forensics and never used; the gallery goes on with everybody else. ``damage()`` lists what is
quarantined, with the subject where a readable sibling row or the consent list names it (memory
only, never written beside the row); ``edge.gallery.damage`` audits and alarms it once.

Thread safety: one lock serialises all calls, so an enrolment thread and the matching loop may
share a gallery.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge.config.schema import GallerySection
from edge.errors import IntegrityError, StorageError, StoreDamaged
from edge.gallery.backends import BACKENDS, SearchBackend
from edge.gallery.db import SCHEMA_VERSION, GalleryDb, has_data
from edge.gallery.index import GalleryIndex
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
from edge.gallery.subjects import tag_key
from edge.modality import BIOMETRIC, Modality, in_order, parse
from edge.numeric import fixed_sum
from edge.state import StateDir

log = logging.getLogger(__name__)

MODALITIES: tuple[Modality, ...] = in_order(BIOMETRIC)
#: the marker of a matrix row that was quarantined while loading (dropped once the load is done)
_QUARANTINED = -3


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


@dataclass(frozen=True)
class Damage:
    """A quarantined gallery row: what it was, why, when, and whose.

    ``id`` is the quarantine row (0 when the file could not take the move: then the row is only
    excluded in memory and found again at the next open). ``subject`` is known from a readable
    sibling row or the consent list (``Gallery.resolve_damage``); it is never written beside the
    row. ``audit_seq`` is the audit record that reported it (None until reported)."""

    id: int
    item: str  # "record" | "template"
    modality: str
    reason: str
    at: float
    tag: bytes = field(repr=False)
    subject: str | None = field(default=None, repr=False)
    audit_seq: int | None = None


# ----------------------------------------------------------------------------- the gallery


class Gallery:
    """Enrolled subjects' templates, encrypted at rest and searchable in memory."""

    def __init__(
        self,
        state: StateDir,
        db: GalleryDb,
        key: GalleryKey,
        *,
        backend: str,
        dim: int,
        templates_per_subject: int,
        threshold: float | None,
    ) -> None:
        self._state = state
        self._db = db
        self._key = key
        self._protector = Protector.from_seed(key.protect_seed, dim)
        self._index = GalleryIndex(backend, dim)
        self.dim = dim
        self.templates_per_subject = templates_per_subject
        self.threshold = threshold
        self._lock = threading.RLock()
        self._damage: list[Damage] = []
        self._damaged_tags: set[bytes] = set()
        #: called (under the lock) when a row is quarantined while the gallery is open; set by
        #: ``edge.gallery.damage.watch_damage`` so it is audited and alarmed at once
        self.on_damage: Callable[[], None] | None = None

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
        Raises StorageError for a missing key, ``StoreDamaged`` for a file that cannot be read at
        all, IntegrityError for a wrong key. A damaged row is quarantined, not raised (``damage()``).
        """
        if backend not in BACKENDS:
            raise StorageError(f"unknown gallery backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
        if not 1 <= templates_per_subject <= 50:
            raise StorageError(f"templates_per_subject must be 1..50, got {templates_per_subject}")
        state.ensure()
        key = cls._load_or_create_key(state, create_key=create_key)
        db = GalleryDb(state.gallery_db)
        try:
            key = cls._check_key(state, db, key, dim)
            gallery = cls(
                state,
                db,
                key,
                backend=backend,
                dim=dim,
                templates_per_subject=templates_per_subject,
                threshold=threshold,
            )
            gallery._load()
        except BaseException:
            db.close()
            raise
        log.info(
            "gallery opened: %d subjects, %d templates, backend %s", len(gallery._index.subjects), len(gallery), backend
        )
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

    @classmethod
    def open_or_replace(
        cls, state: StateDir, section: GallerySection, *, dim: int = 128, threshold: float | None = None
    ) -> Gallery:
        """``open_configured``; a file that cannot be read is set aside (``edge.state_recovery``),
        the sealed rows still readable in it are copied into a fresh file, and the gallery opens on
        that (each row is authenticated as it loads; the rest are quarantined). The key stays."""
        from edge.state_recovery import set_aside, write_note

        try:
            return cls.open_configured(state, section, dim=dim, threshold=threshold)
        except StoreDamaged as exc:
            info = set_aside(state.gallery_db, "gallery", exc.detail)
        key = load_key(state.gallery_key)
        db = GalleryDb(state.gallery_db)
        try:
            db.init_meta(dim, key.key_check())
            copied = db.copy_rows_from(state.gallery_db.with_name(info.aside))
        finally:
            db.close()
        write_note(state.root, replace(info, salvaged=copied))
        log.error("fresh gallery started: %d sealed rows copied from the damaged file", copied)
        return cls.open_configured(state, section, dim=dim, threshold=threshold)

    @staticmethod
    def _load_or_create_key(state: StateDir, *, create_key: bool) -> GalleryKey:
        path = state.gallery_key
        if path.exists():
            return load_key(path)
        if has_data(state.gallery_db):
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
    def _check_key(state: StateDir, db: GalleryDb, key: GalleryKey, dim: int) -> GalleryKey:
        """Check the key against the file; finish or roll back an interrupted re-key."""
        meta = db.meta()
        pending = state.gallery_key.with_name(state.gallery_key.name + ".next")
        if not meta:
            db.init_meta(dim, key.key_check())
            destroy_file(pending)
            return key
        if int(str(meta.get("schema", -1))) != SCHEMA_VERSION:
            raise StorageError(
                f"{state.gallery_db} has schema {meta.get('schema')}, this agent reads {SCHEMA_VERSION}",
                hint="upgrade the agent, or factory-reset the gallery",
            )
        if int(str(meta.get("dim", -1))) != dim:
            raise StorageError(
                f"{state.gallery_db} holds {meta.get('dim')}-d templates but {dim}-d were asked for",
                hint="the face model changed: re-enrol with the new model after a factory reset",
            )
        check = meta.get("key_check")
        check = bytes(check) if isinstance(check, (bytes, bytearray, memoryview)) else b""
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

    def _subject_of_tag(self, tag: bytes) -> str | None:
        """The enrolled subject whose tag is ``tag`` (from the subject table), else None."""
        found = int(self._index.subjects.find_keys(np.array([tag_key(tag)], dtype=np.int64))[0])
        if found < 0:
            return None
        name = self._index.subjects.name(found)
        return name if name is not None and self._key.tag(name) == tag else None

    def _load(self) -> None:
        """Read every row into memory; quarantine the rows that fail (see the module docstring)."""
        db, key, index = self._db, self._key, self._index
        subjects = index.subjects
        bad_records: list[tuple[bytes, str, str]] = []  # (tag, modality, reason)
        bad_templates: list[tuple[int, str]] = []  # (row id, reason)
        hints: dict[bytes, str] = {}  # damaged tag -> the subject a readable row names
        dead_faces: set[bytes] = set()  # tags whose face record is quarantined: their templates follow
        faces = 0
        # Face records first, so subjects with a face record get the indices below ``faces``;
        # each subject has at most one record per modality, so no lookups are needed here.
        for modality in MODALITIES:
            for tag, box in db.record_rows(modality):
                try:
                    fields = open_record(key, box)
                    subject = str(fields["subject"])
                except (IntegrityError, ValueError, KeyError, TypeError):
                    bad_records.append((tag, modality, "authentication"))
                    if modality == "face":
                        dead_faces.add(tag)
                    continue
                if key.tag(subject) != tag or fields.get("modality") != modality:
                    bad_records.append((tag, modality, "misfiled"))  # authentic, but not this row's
                    hints[tag] = subject
                    if modality == "face":
                        dead_faces.add(tag)
                    continue
                if modality == "face":
                    subjects.add(subject, tag, reindex=False)
                elif subjects.find(subject, tag) is None:
                    subjects.add(subject, tag)
                for slot in fields.get("slots", []):
                    index.slots[int(slot)] = subject
            if modality == "face":
                faces = len(subjects)
                subjects.reindex()
        count = db.template_count()
        ids = np.empty(count, dtype=np.int64)
        owners = np.empty(count, dtype=np.int32)
        ambiguous = subjects.ambiguous_keys()
        loaded = 0

        def blocks(size: int = 1024) -> Iterator[NDArray[np.float32]]:
            """Templates decrypted straight into one reused block (512 KB at 128-d); the backend
            copies each block into its matrix before the next is read. Owners are looked up a
            block at a time, vectorised, so no array the size of the gallery is made for it. A
            quarantined template keeps its row as zeros until the load ends, so the count holds."""
            nonlocal loaded
            block = np.empty((size, self.dim), dtype=np.float32)
            keys = np.empty(size, dtype=np.int64)
            found = np.full(size, -1, dtype=np.int64)  # owners resolved in the loop (shared keys only)
            filled = 0

            def resolve() -> None:
                got = found[:filled]
                plain = got == -1
                got[plain] = subjects.find_keys(keys[:filled][plain])
                orphan = (got != _QUARANTINED) & ((got < 0) | (got >= faces))  # no such subject, or no face record
                for at in np.flatnonzero(orphan):
                    bad_templates.append((int(ids[loaded - filled + int(at)]), "orphan"))
                    block[at] = 0.0
                got[orphan] = _QUARANTINED
                owners[loaded - filled : loaded] = got
                got[:] = -1

            for row_id, tag, box in db.template_rows():
                if loaded == count:
                    raise StorageError(f"gallery load expected {count} templates, read more")
                reason: str | None = "record_damaged" if tag in dead_faces else None
                try:
                    subject = open_template_into(key, box, block[filled])
                except IntegrityError:
                    subject, reason = None, reason or "authentication"
                if reason is None and subject is not None and key.tag(subject) != tag:
                    reason = "misfiled"
                ids[loaded] = row_id
                keys[filled] = tkey = tag_key(tag)
                if reason is not None:
                    bad_templates.append((row_id, reason))
                    if subject is not None:
                        hints.setdefault(tag, subject)
                    block[filled] = 0.0
                    found[filled] = _QUARANTINED
                elif tkey in ambiguous:  # a key prefix two subjects share: resolve by id (-2: none)
                    assert subject is not None
                    owner = subjects.find(subject, tag)
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
        index.backend.add_from(count, blocks())
        index.load(ids, owners)
        index.drop_rows(owners == _QUARANTINED)
        self._quarantine(bad_records, bad_templates, hints)

    def _quarantine(
        self, records: list[tuple[bytes, str, str]], templates: list[tuple[int, str]], hints: dict[bytes, str]
    ) -> None:
        """Move the rows found damaged into the quarantine (one transaction), then list every
        quarantined row with the subject where a hint or the subject table names it."""
        now = time.time()
        fresh: list[Damage] = []
        if records or templates:
            tags = dict(self._template_tags([r for r, _ in templates]))
            try:
                ids = self._db.quarantine(records, templates, now)
            except StorageError as exc:  # a full or read-only disk: excluded in memory, found again next time
                log.error("could not move damaged gallery rows to the quarantine: %s", exc.one_line())
                ids = [0] * (len(records) + len(templates))
            items = [("record", tag, modality, reason) for tag, modality, reason in records]
            items += [("template", tags.get(row_id, b""), "face", reason) for row_id, reason in templates]
            fresh = [
                Damage(qid, item, modality, reason, now, tag)
                for qid, (item, tag, modality, reason) in zip(ids, items, strict=True)
            ]
            log.error(
                "gallery: %d damaged row(s) quarantined (never used); the gate goes on with everyone else",
                len(fresh),
            )
        known = {d.id for d in fresh if d.id}
        hints = {**{d.tag: d.subject for d in self._damage if d.subject is not None}, **hints}
        earlier = [
            Damage(q.id, q.item, q.modality, q.reason, q.at, q.tag, None, q.audit_seq)
            for q in self._db.quarantined()
            if q.id not in known
        ]
        listed = earlier + [d for d in self._damage if not d.id] + fresh
        self._damage = [replace(d, subject=hints.get(d.tag) or self._subject_of_tag(d.tag)) for d in listed]
        self._damaged_tags = {d.tag for d in self._damage}
        if fresh and self.on_damage is not None:
            try:
                self.on_damage()
            except Exception as exc:  # reported again at the next chance: the row stays unreported
                log.error("reporting gallery damage failed (%s); retried later", exc.__class__.__name__)

    def _template_tags(self, row_ids: list[int]) -> list[tuple[int, bytes]]:
        if not row_ids:
            return []
        wanted = set(row_ids)
        return [(row_id, tag) for row_id, tag, _box in self._db.template_rows() if row_id in wanted]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ damage

    def damage(self) -> list[Damage]:
        """Every quarantined row, oldest first (subjects where known)."""
        with self._lock:
            return list(self._damage)

    def resolve_damage(self, candidates: Iterable[str]) -> int:
        """Name the subject of quarantined rows whose tag one of ``candidates`` (e.g. the consent
        list's subjects) has; returns how many were newly named."""
        with self._lock:
            open_tags = {d.tag for d in self._damage if d.subject is None}
            if not open_tags:
                return 0
            named = {tag: s for s in candidates if (tag := self._key.tag(s)) in open_tags}
            self._damage = [replace(d, subject=named.get(d.tag, d.subject)) for d in self._damage]
            return len(named)

    def mark_reported(self, reported: Sequence[tuple[Damage, int]]) -> None:
        """Record that each quarantined row was audited (by that audit record) and alarmed: it is
        never reported again, across restarts too."""
        lookup = dict(reported)
        with self._lock:
            stored = [(d.id, seq) for d, seq in reported if d.id]
            if stored:
                try:
                    self._db.mark_reported(stored)
                except StorageError as exc:
                    log.warning("could not record that gallery damage was reported: %s", exc.one_line())
            self._damage = [replace(d, audit_seq=lookup[d]) if d in lookup else d for d in self._damage]

    def holds_quarantined(self, subject: str) -> bool:
        with self._lock:
            return self._key.tag(subject) in self._damaged_tags

    def quarantined_subjects(self) -> set[str]:
        with self._lock:
            return {d.subject for d in self._damage if d.subject is not None}

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """Face templates held."""
        return len(self._index)

    @property
    def backend(self) -> str:
        return self._index.backend_name

    @property
    def _backend(self) -> SearchBackend:  # the matrix, for parity checks and tests
        return self._index.backend

    def subjects(self, modality: str | None = None) -> set[str]:
        with self._lock:
            return self._index.subject_ids(modality)

    def subject_for_slot(self, slot: int) -> str | None:
        with self._lock:
            return self._index.slots.get(int(slot))

    def slots_of(self, subject: str) -> list[int]:
        """The sensor slots holding ``subject``'s fingerprint templates, in order."""
        with self._lock:
            return self._index.slots_of(subject)

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
            index = self._index.find(subject, self._key.tag(subject))
            if index is None:
                return -math.inf
            best = self._index.best_of(index, q)
            return -math.inf if best is None else best

    def _best_subjects(self, q: NDArray[np.float32], k: int) -> list[tuple[str, float]]:
        return self._index.best(q, k, self.templates_per_subject)

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
            key, index = self._key, self._index
            now = time.time()
            rows: list[tuple[str, NDArray[np.float32]]] = []
            for subject, templates in items:
                if index.find(subject, key.tag(subject)) is not None:
                    raise ValueError("enrol_many takes only subjects not yet enrolled")
                vecs = np.stack([_unit(t, self.dim) for t in templates])[-self.templates_per_subject :]
                rows.extend((subject, v) for v in self._protector.apply(vecs))
            records = {
                subject: {"subject": subject, "modality": "face", "slots": [], "enrolled_at": now, "model_id": model_id}
                for subject, _ in items
            }
            with self._db.transaction() as conn:
                conn.executemany(
                    "INSERT INTO records VALUES (?, 'face', ?)",
                    [(key.tag(s), seal_record(key, f)) for s, f in records.items()],
                )
                before = int(conn.execute("SELECT coalesce(max(id), 0) FROM templates").fetchone()[0])
                conn.executemany(
                    "INSERT INTO templates (id, tag, box) VALUES (?, ?, ?)",
                    [(before + 1 + i, key.tag(s), seal_template(key, s, v)) for i, (s, v) in enumerate(rows)],
                )
            new = {s: index.subjects.add(s, key.tag(s), reindex=False) for s in records}
            index.subjects.reindex()
            owners = np.array([new[s] for s, _ in rows], dtype=np.int32)
            vectors = np.stack([v for _, v in rows]) if rows else np.empty((0, self.dim), np.float32)
            index.add_rows(vectors, range(before + 1, before + 1 + len(rows)), owners)
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
        key, index = self._key, self._index
        if sensor_slot is not None and index.slots.get(sensor_slot, subject) != subject:
            raise StorageError(
                f"sensor slot {sensor_slot} already belongs to another enrolled subject",
                hint="erase that slot through a deletion first, or store the finger in a free slot",
            )
        tag = key.tag(subject)
        at = index.find(subject, tag)
        old = self._read_record(subject, tag, modality.value)
        fields: dict[str, Any] = dict(old) if old else {"subject": subject, "modality": modality.value, "slots": []}
        fields["enrolled_at"] = time.time()
        fields["model_id"] = model_id or fields.get("model_id", "")
        if sensor_slot is not None and sensor_slot not in fields["slots"]:
            fields["slots"] = [*fields["slots"], sensor_slot]
        protected = self._protector.apply(vecs) if len(vecs) else vecs
        existing = index.template_ids(at)
        keep_new = protected[-self.templates_per_subject :]
        overflow = len(existing) + len(keep_new) - self.templates_per_subject
        dropped = existing[: max(0, overflow)]
        new_ids: list[int] = []
        with self._db.transaction() as conn:
            self._db.put_record(conn, tag, modality.value, seal_record(key, fields))
            if dropped:
                self._db.drop_templates(conn, dropped)
            for vec in keep_new:
                new_ids.append(self._db.add_template(conn, tag, seal_template(key, subject, vec)))
        # committed: now the memory
        if at is None:
            at = index.subjects.add(subject, tag)
        if sensor_slot is not None:
            index.slots[sensor_slot] = subject
        if dropped:
            index.drop_template_ids(dropped)
        if new_ids:
            index.add_rows(keep_new, new_ids, np.full(len(new_ids), at, np.int32))
        log.info("enrolled %s: %d templates added, %d dropped", modality, len(new_ids), len(dropped))
        return EnrolResult(
            subject=subject,
            modality=modality,
            templates_added=len(new_ids),
            templates_total=index.count_of(at),
            templates_dropped=len(dropped),
            sensor_slot=sensor_slot,
            duplicate_of=duplicate[0] if duplicate else None,
            duplicate_score=duplicate[1] if duplicate else None,
        )

    def delete_subject(self, subject: str, modality: str | None = None) -> DeletionReport:
        """Remove the records and templates of ``subject`` now, and scrub the freed pages.

        ``modality``: only that modality's data (a withdrawal of face consent keeps the person's
        fingerprint, which they still consent to); None: everything the subject has. Quarantined
        rows of the subject go too (counted with the face templates where they were templates).
        The report's ``sensor_slots`` must be erased on the fingerprint sensor by the caller.
        Deleting an unknown subject is not an error (``found`` is False).
        """
        if modality is not None:
            modality = parse(modality, BIOMETRIC).value
        with self._lock:
            index = self._index
            tag = self._key.tag(subject)
            at = index.find(subject, tag)
            held = self._db.modalities_of(tag)
            targets = held if modality is None else held & {modality}
            finger = self._read_record(subject, tag, "fingerprint") if "fingerprint" in targets else None
            drop_face = modality in (None, "face")
            gone = [d for d in self._damage if d.tag == tag and (modality is None or d.modality == modality)]
            with self._db.transaction() as conn:
                n_templates = self._db.drop_subject(
                    conn, tag, targets | {d.modality for d in gone if d.item == "record"}, templates=drop_face
                )
            self._db.scrub()
            slots = tuple(sorted(int(s) for s in finger.get("slots", []))) if finger else ()
            for slot in slots:
                index.slots.pop(slot, None)
            if at is not None:
                if drop_face:
                    index.drop_rows(index.row_subject == at)
                if not held - targets:  # nothing of the subject is left
                    index.subjects.remove(at)
            if gone:
                self._damage = [d for d in self._damage if d not in gone]
                self._damaged_tags = {d.tag for d in self._damage}
            log.info("deleted a subject's data: %d face templates, %d sensor slots", n_templates, len(slots))
            return DeletionReport(
                found=bool(targets) or n_templates > 0 or bool(gone),
                face_templates=n_templates,
                sensor_slots=slots,
                modalities=tuple(sorted(targets | {d.modality for d in gone})),
            )

    def rekey(self) -> None:
        """Renew every reference: new encryption key, new tags, new protective transform.

        Crash-safe: the new key is written to ``gallery.key.next`` first, the whole file is
        re-sealed in one transaction, then the key file is replaced. ``open`` finishes or rolls
        back an interrupted re-key. Quarantined rows are dropped: they cannot be re-sealed, and
        once the old key is destroyed nobody can read them.
        """
        with self._lock:
            db = self._db
            new_key = GalleryKey.generate()
            new_protector = Protector.from_seed(new_key.protect_seed, self.dim)
            pending = self._state.gallery_key.with_name(self._state.gallery_key.name + ".next")
            store_key(pending, new_key, overwrite=True)
            records = db.all_records()
            templates = list(db.template_rows())
            with db.transaction() as conn:
                for tag, modality, box in records:
                    fields = open_record(self._key, box)
                    conn.execute("DELETE FROM records WHERE tag = ? AND modality = ?", (tag, modality))
                    db.put_record(conn, new_key.tag(str(fields["subject"])), modality, seal_record(new_key, fields))
                for row_id, _tag, box in templates:
                    subject, vec = open_template(self._key, box)
                    renewed = new_protector.apply(self._protector.invert(vec[None, :]))[0]
                    conn.execute(
                        "UPDATE templates SET tag = ?, box = ? WHERE id = ?",
                        (new_key.tag(subject), seal_template(new_key, subject, renewed), row_id),
                    )
                conn.execute("UPDATE meta SET value = ? WHERE name = 'key_check'", (new_key.key_check(),))
                dropped = db.clear_quarantine(conn)
            store_key(self._state.gallery_key, new_key, overwrite=True)
            destroy_file(pending)
            db.scrub()
            # reload memory from the renewed file
            self._key, self._protector = new_key, new_protector
            self._index.reset()
            self._load()
            log.info("gallery re-keyed: %d templates renewed, %d quarantined rows dropped", len(self), dropped)

    def crypto_erase(self, state: StateDir) -> None:
        """Tamper response: destroy the key (every record sealed under it becomes unreadable) and
        forget the templates held in memory; the database file is left as unreadable ciphertext.
        Nothing matches afterwards; the terminal needs re-provisioning and re-enrolment."""
        with self._lock:
            destroy_file(state.gallery_key)
            destroy_file(state.gallery_key.with_name(state.gallery_key.name + ".next"))
            self._index.reset()
            self._damage = []
            self._damaged_tags = set()
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

    def _read_record(self, subject: str, tag: bytes, modality: str) -> dict[str, Any] | None:
        """``subject``'s record; a record that fails authentication now is quarantined (None)."""
        box = self._db.record_box(tag, modality)
        if box is None:
            return None
        try:
            return open_record(self._key, box)
        except (IntegrityError, ValueError, KeyError, TypeError):
            self._quarantine([(tag, modality, "authentication")], [], {tag: subject})
            return None


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
