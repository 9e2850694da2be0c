"""The face pipeline: detect, select, re-detect on a crop, align, assess quality, embed.

Frames and chips exist only in memory for the duration of one call; nothing is written anywhere,
and the only data that leaves :meth:`FacePipeline.process` about the face is the normalised
embedding, the box and the quality verdict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edge.errors import ModelError
from edge.models.bundle import Manifest, verify_bundle
from edge.vision.align import TEMPLATE5_150, align
from edge.vision.detect import BlazeFace, Detection
from edge.vision.mesh import FaceMesh, dlib5
from edge.vision.pad import PadModel
from edge.vision.quality import Quality, QualityLimits, assess
from edge.vision.runtime import Interpreter, load_interpreter

log = logging.getLogger(__name__)

Rule = Literal["gate", "center"]
Variant = Literal["float32", "int8"]
Alignment = Literal["mesh5", "blazeface4", "both"]
ALIGNMENTS = ("mesh5", "blazeface4", "both")
#: Changes with any change to detection, selection or re-detection that alters embeddings (cache keys).
FRONT_END = "short-first-2"
#: Faces smaller than this (pixels in its 128-pixel input) the short-range model may miss (it found LFW faces
#: down to 16 px on a plain background: benchmarks note in docs/face.md).
SHORT_RANGE_MIN_PX = 20.0
#: best_frames' reason for a frame the liveness check called an attack (enrolment refuses on it)
ATTACK_REASON = "presentation attack (a photo or screen, not a live face)"
#: Re-detect only when the crop gives the face at least this much more resolution than the frame did.
REDETECT_GAIN = 1.5


@dataclass(frozen=True)
class ModelInfo:
    """What a matcher needs to know about the embeddings this pipeline produces."""

    model_id: str
    variant: str
    threshold: float  # cosine similarity >= threshold means the same person (LFW dev calibration)
    #: the same decision for a fast probe embedding (see FacePipeline.probe) against a template
    probe_threshold: float
    #: a fast probe whose best score lies within this of probe_threshold is re-embedded accurately
    escalation_band: float
    metric: str
    embedding_dim: int
    threshold_note: str
    bundle: Manifest = field(repr=False)


@dataclass
class FaceResult:
    embedding: np.ndarray  # float32 (128,), L2-normalised
    quality: Quality
    box: tuple[float, float, float, float]
    score: float
    faces: int  # faces found in the frame
    timings: dict[str, float]  # milliseconds per stage
    escalated: bool = False  # probe(): the fast embedding was uncertain and the accurate one replaced it
    #: liveness verdict (False when the pipeline has no liveness check): an attack is never embedded,
    #: its ``embedding`` is empty and must not be searched
    attack: bool = False
    #: the passive live score in [0, 1] (None without a liveness check); stays on this device, in
    #: memory, for the temporal check across frames (edge.vision.liveness); never published or logged
    live_score: float | None = field(default=None, repr=False)
    #: FaceMesh landmarks (468 x 3, frame pixels) for the active liveness challenge, only when the
    #: pipeline was asked for them (``want_points``); in memory on the camera thread only
    points: np.ndarray | None = field(default=None, repr=False)


def select_face(faces: Sequence[Detection], frame_shape: tuple[int, ...], rule: Rule) -> Detection:
    """The face to use when a frame holds several.

    ``gate``: among faces at least 60% the side of the largest, the one nearest the frame centre
    (the person in the lane, not a bystander). ``center``: the face nearest the image centre (LFW's
    convention: the named person is centred).
    """
    h, w = frame_shape[:2]
    cx, cy = w / 2, h / 2

    def dist(d: Detection) -> float:
        x, y = d.centre
        return float(np.hypot(x - cx, y - cy))

    if rule == "center":
        return min(faces, key=dist)
    largest = max(max(d.width, d.height) for d in faces)
    candidates = [d for d in faces if max(d.width, d.height) >= 0.6 * largest]
    return min(candidates, key=dist)


class Embedder:
    def __init__(self, path: Path, manifest: Manifest, threads: int) -> None:
        spec = manifest.input_spec
        self.means = np.asarray(spec["mean_rgb"], np.float32)
        self.scale = np.float32(spec["scale"])
        self.interpreter: Interpreter = load_interpreter(path, threads)
        self.input_index = int(self.interpreter.get_input_details()[0]["index"])
        self.output_index = int(self.interpreter.get_output_details()[0]["index"])
        self._input = np.empty((1, *spec["size"]), np.float32)  # reused: fresh 270 KB arrays cost page faults

    def raw(self, chip_rgb: np.ndarray) -> np.ndarray:
        """The model's descriptor (not normalised) for a 150x150 RGB uint8 chip (any strides)."""
        x = self._input
        np.subtract(chip_rgb, self.means, out=x[0], dtype=np.float32)
        x *= self.scale
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output_index)[0], dtype=np.float32)


def l2_normalise(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


class FacePipeline:
    def __init__(
        self,
        manifest: Manifest,
        variant: Variant,
        threads: int,
        flip: bool = False,
        limits: QualityLimits | None = None,
        redetect: bool = True,
        alignment: Alignment = "mesh5",
        pad: PadModel | None = None,
    ) -> None:
        self.bundle = manifest
        self.pad = pad
        #: probe() also returns FaceMesh landmarks of a live face (the active challenge reads them)
        self.want_points = False
        self.variant = variant
        self.flip = flip
        self.redetect = redetect
        self.limits = limits or QualityLimits()
        self.full = BlazeFace(manifest.path("detector_full"), "full", threads)
        self.short = BlazeFace(manifest.path("detector_short"), "short", threads)
        if alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {alignment!r}; use one of {', '.join(ALIGNMENTS)}")
        self.alignment = alignment
        self.mesh = FaceMesh(manifest.path("landmarks"), threads) if alignment != "blazeface4" else None
        self.embedder = Embedder(manifest.path(f"embedder_{variant}"), manifest, threads)
        self.manifest = ModelInfo(
            model_id=manifest.model_id(variant),
            variant=variant,
            threshold=self._threshold(manifest, variant, alignment, flip),
            probe_threshold=self._threshold(manifest, variant, alignment, flip, probe=True),
            escalation_band=manifest.escalation_band,
            metric=manifest.metric,
            embedding_dim=manifest.output_dim,
            threshold_note=manifest.threshold_note,
            bundle=manifest,
        )

    @classmethod
    def load(
        cls,
        models_dir: Path,
        variant: Variant = "float32",
        threads: int = 2,
        *,
        flip: bool = True,
        alignment: Alignment = "mesh5",
        limits: QualityLimits | None = None,
        liveness: Variant | None = None,
    ) -> FacePipeline:
        """Verify the bundle's hashes and load its models (raises ModelError on any problem).

        ``alignment``: ``mesh5`` cuts the chip on FaceMesh's versions of dlib's five points (BlazeFace's
        keypoints when the mesh sees no face); ``blazeface4`` on BlazeFace's four keypoints; ``both``
        embeds both chips and averages (one more embedder run). ``flip`` also averages each chip's
        mirror image (one more embedder run per chip). The defaults (mesh5 + flip, two embedder runs)
        reached 99.00% (float32) and 99.07% (int8) on LFW dev; see docs/face.md for the others.
        ``liveness``: also load the passive liveness models of that variant (edge.vision.pad); every
        face is then checked before it is embedded and an attack is never embedded.
        """
        if variant not in ("float32", "int8"):
            raise ModelError(f"unknown model variant {variant!r}", hint="use float32 or int8")
        manifest = verify_bundle(Path(models_dir))
        pad = PadModel(manifest, liveness, threads) if liveness is not None else None
        return cls(manifest, variant, threads, flip=flip, limits=limits, alignment=alignment, pad=pad)

    @staticmethod
    def _threshold(manifest: Manifest, variant: str, alignment: str, flip: bool, probe: bool = False) -> float:
        key = f"{variant}/{'probe>' if probe else ''}{alignment}{'+flip' if flip else ''}"
        try:
            return manifest.thresholds[key]
        except KeyError:
            raise ModelError(
                f"{manifest.root}: the manifest has no calibrated threshold for {key}",
                hint="rebuild the bundle with this release: edge models build --force",
            ) from None

    @property
    def config_id(self) -> str:
        """Identifies everything that changes the embeddings (for caches of evaluation results)."""
        import hashlib

        from edge.vision.align import FIT_WEIGHTS, TEMPLATE_150

        parts = [
            FRONT_END,
            self.manifest.model_id,
            f"flip={self.flip}",
            f"redetect={self.redetect}",
            f"alignment={self.alignment}",
            np.round(TEMPLATE5_150, 3).tobytes().hex(),
            np.round(TEMPLATE_150, 3).tobytes().hex(),
            FIT_WEIGHTS.tobytes().hex(),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ stages

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in the frame: the short-range model first (a face at a gate, or a portrait, is near and
        large; 2.5x cheaper than the full-range one). The full-range model decides when the short one
        finds nothing, or when its biggest face is so small in its input that a second face of the
        size the quality gate cares about (``other_face_ratio`` of it) could be below what the
        short-range model reliably sees (:data:`SHORT_RANGE_MIN_PX`)."""
        faces = self.short.detect(frame_bgr)
        if faces:
            biggest = max(faces, key=lambda d: max(d.width, d.height))
            seen_px = max(biggest.width, biggest.height) * biggest.resolution * self.limits.other_face_ratio
            if seen_px >= SHORT_RANGE_MIN_PX:
                return faces
        return self.full.detect(frame_bgr) or faces

    def refine(self, frame_bgr: np.ndarray, det: Detection) -> Detection:
        """Re-detect on a square crop twice the face's size for more precise keypoints.

        Skipped when the crop would reach the short-range model at less than :data:`REDETECT_GAIN`
        times the resolution the face already had (a face filling much of the frame): the second
        pass would see the same pixels and cost a detector run for nothing.
        """
        import cv2

        side = 2.0 * max(det.width, det.height)
        if self.short.size / max(side, 1.0) < REDETECT_GAIN * det.resolution:
            return det
        cx, cy = det.centre
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        s = max(8, round(side))
        h, w = frame_bgr.shape[:2]
        crop = cv2.copyMakeBorder(
            frame_bgr[max(0, y0) : max(0, y0 + s), max(0, x0) : max(0, x0 + s)],
            max(0, -y0),
            max(0, y0 + s - h),
            max(0, -x0),
            max(0, x0 + s - w),
            cv2.BORDER_CONSTANT,
            value=(0, 0, 0),
        )
        found = self.short.detect(crop)
        if not found:
            return det
        best = min(found, key=lambda d: float(np.hypot(d.centre[0] - s / 2, d.centre[1] - s / 2)))
        off = np.array([x0, y0], np.float32)
        b = best.box
        return Detection(
            (b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), best.score, best.keypoints + off, best.resolution
        )

    def embed_chip(self, chip_bgr: np.ndarray, flip: bool | None = None) -> np.ndarray:
        """The L2-normalised embedding of a BGR chip (averaged with its mirror image when ``flip``,
        which defaults to the pipeline's setting)."""
        v = self.embedder.raw(chip_bgr[:, :, ::-1])
        if self.flip if flip is None else flip:
            v = l2_normalise(v) + l2_normalise(self.embedder.raw(chip_bgr[:, ::-1, ::-1]))
        return l2_normalise(v)

    def _locate(
        self, frame_bgr: np.ndarray, rule: Rule, timings: dict[str, float]
    ) -> tuple[list[Detection], Detection, Detection] | None:
        """All faces, the chosen one, and the chosen one re-detected when that adds resolution; or None."""
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError("process() wants an HxWx3 uint8 BGR frame")
        t0 = time.perf_counter()
        faces = self.detect(frame_bgr)
        t1 = time.perf_counter()
        timings["detect"] = (t1 - t0) * 1e3
        if not faces:
            return None
        chosen = select_face(faces, frame_bgr.shape, rule)
        det = self.refine(frame_bgr, chosen) if self.redetect else chosen
        timings["redetect"] = (time.perf_counter() - t1) * 1e3
        return faces, chosen, det

    def _accurate_chips(self, frame_bgr: np.ndarray, det: Detection, timings: dict[str, float]) -> list[np.ndarray]:
        """The chips of the configured alignment (FaceMesh points, BlazeFace's, or both)."""
        t0 = time.perf_counter()
        points = self.mesh.landmarks(frame_bgr, det) if self.mesh is not None else None
        t1 = time.perf_counter()
        timings["landmarks"] = (t1 - t0) * 1e3
        chips = [align(frame_bgr, dlib5(points), TEMPLATE5_150)] if points is not None else []
        if self.alignment != "mesh5" or not chips:
            chips.append(align(frame_bgr, det.keypoints))
        timings["align"] = (time.perf_counter() - t1) * 1e3
        return chips

    def _accurate(
        self,
        frame_bgr: np.ndarray,
        det: Detection,
        timings: dict[str, float],
        judge: Callable[[np.ndarray], Quality] | None,
    ) -> tuple[np.ndarray, Quality | None]:
        """The accurate embedding (and ``judge``'s verdict on its first chip); chips are dropped after."""
        chips = self._accurate_chips(frame_bgr, det, timings)
        quality = judge(chips[0]) if judge is not None else None
        t0 = time.perf_counter()
        embedding = l2_normalise(np.sum([self.embed_chip(c) for c in chips], axis=0))
        del chips
        timings["embed"] = (time.perf_counter() - t0) * 1e3
        return embedding, quality

    def _assess(
        self, faces: list[Detection], chosen: Detection, det: Detection, chip: np.ndarray, timings: dict[str, float]
    ) -> Quality:
        t0 = time.perf_counter()
        others = [f for f in faces if f is not chosen]
        quality = assess(det, chip, others, self.limits)
        timings["quality"] = (time.perf_counter() - t0) * 1e3
        return quality

    def process(self, frame_bgr: np.ndarray, rule: Rule = "gate") -> FaceResult | None:
        """The accurate embedding and the quality of the selected face in a BGR uint8 frame, or None
        without a face: the configured alignment and flip, as enrolment and evaluation use them."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        found = self._locate(frame_bgr, rule, timings)
        if found is None:
            return None
        faces, chosen, det = found
        live = self._liveness(frame_bgr, det, timings)
        if live is not None and self._is_attack(live):
            chip = align(frame_bgr, det.keypoints)
            judged = self._assess(faces, chosen, det, chip, timings)
            del chip
            return self._attack(judged, det, len(faces), timings, live, t0)
        embedding, quality = self._accurate(
            frame_bgr, det, timings, lambda chip: self._assess(faces, chosen, det, chip, timings)
        )
        assert quality is not None
        points = self.mesh.landmarks(frame_bgr, det) if self.want_points and self.mesh is not None else None
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return FaceResult(embedding, quality, det.box, det.score, len(faces), timings, live_score=live, points=points)

    def _liveness(self, frame_bgr: np.ndarray, det: Detection, timings: dict[str, float]) -> float | None:
        if self.pad is None:
            return None
        t0 = time.perf_counter()
        score = self.pad.live_score(frame_bgr, det.box)
        timings["pad"] = (time.perf_counter() - t0) * 1e3
        return score

    def _is_attack(self, score: float) -> bool:
        return self.pad is not None and self.pad.is_attack(score)

    @staticmethod
    def _attack(
        quality: Quality, det: Detection, faces: int, timings: dict[str, float], live: float, t0: float
    ) -> FaceResult:
        timings["total"] = (time.perf_counter() - t0) * 1e3
        empty = np.zeros(0, np.float32)
        return FaceResult(empty, quality, det.box, det.score, faces, timings, attack=True, live_score=live)

    def probe(
        self,
        frame_bgr: np.ndarray,
        rule: Rule = "gate",
        uncertain: Callable[[np.ndarray], bool] | None = None,
        *,
        judged_only: bool = True,
    ) -> FaceResult | None:
        """The gate's embedding of a frame, in two steps.

        First the fast embedding: BlazeFace's keypoints, one embedder run, no landmark model. Then,
        only when ``uncertain(fast_embedding)`` is true (the caller found its best gallery score within
        :attr:`ModelInfo.escalation_band` of :attr:`ModelInfo.probe_threshold`), the accurate
        embedding of the same face (:meth:`process`'s alignment and flip) replaces it; ``escalated``
        says so. A clear match or a clear stranger is decided on the fast embedding alone: on LFW dev
        that gave the accurate pipeline's accuracy with about one probe in sixteen escalated (see
        docs/face.md). ``uncertain=None`` never escalates. ``judged_only``: ask ``uncertain`` only for a
        face that passes the quality gates (the gate ignores the others anyway); the LFW evaluation,
        which ignores quality for every pipeline, turns it off. The frame is not kept after the call.
        With a liveness check (``pad``), a face that passes the quality gates is checked before it is
        embedded; an attack comes back with ``attack`` set and no embedding.
        """
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        found = self._locate(frame_bgr, rule, timings)
        if found is None:
            return None
        faces, chosen, det = found
        t1 = time.perf_counter()
        chip = align(frame_bgr, det.keypoints)
        timings["align"] = (time.perf_counter() - t1) * 1e3
        quality = self._assess(faces, chosen, det, chip, timings)
        live = self._liveness(frame_bgr, det, timings) if quality.ok or not judged_only else None
        if live is not None and self._is_attack(live):
            del chip  # an attack is never embedded, so never matched
            return self._attack(quality, det, len(faces), timings, live, t0)
        points = None
        if self.want_points and quality.ok and self.mesh is not None:
            points = self.mesh.landmarks(frame_bgr, det)
        t2 = time.perf_counter()
        embedding = self.embed_chip(chip, flip=False)
        del chip
        t3 = time.perf_counter()
        timings["embed"] = (t3 - t2) * 1e3
        escalated = False
        if uncertain is not None and (quality.ok or not judged_only) and uncertain(embedding):
            t4 = time.perf_counter()
            embedding, _ = self._accurate(frame_bgr, det, {}, None)
            timings["escalate"] = (time.perf_counter() - t4) * 1e3
            escalated = True
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return FaceResult(
            embedding, quality, det.box, det.score, len(faces), timings, escalated, live_score=live, points=points
        )


def best_frames(
    pipeline: FacePipeline, frames: Iterable[np.ndarray], k: int, rule: Rule = "gate"
) -> tuple[list[FaceResult], list[str]]:
    """Enrolment: the best ``k`` results among frames that pass every quality gate.

    Returns (results ranked best first, at most k; the reasons frames were rejected, one per frame
    that failed). Frames are processed one at a time and not kept.
    """
    passed: list[FaceResult] = []
    rejected: list[str] = []
    for frame in frames:
        result = pipeline.process(frame, rule)
        if result is None:
            rejected.append("no face found")
        elif result.attack:
            rejected.append(ATTACK_REASON)
        elif not result.quality.ok:
            rejected.append("; ".join(result.quality.reasons))
        else:
            passed.append(result)
    passed.sort(key=lambda r: r.quality.score, reverse=True)
    return passed[:k], rejected


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (both already L2-normalised by the pipeline)."""
    return float(np.dot(a, b))
