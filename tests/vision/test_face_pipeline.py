"""The full pipeline on real LFW dev images: embeddings, face selection, quality gates, enrolment, privacy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edge.vision.pipeline import FacePipeline, best_frames, cosine


@pytest.fixture(scope="module")
def pipeline(models_dir: Path) -> FacePipeline:
    return FacePipeline.load(models_dir, "float32", threads=1)


def _read(path: Path) -> np.ndarray:
    import cv2

    frame = cv2.imread(str(path))
    assert frame is not None
    return frame


def _gate_frame(face: np.ndarray, size: tuple[int, int] = (480, 640), at: tuple[int, int] = (115, 195)) -> np.ndarray:
    """A camera-sized frame with a real LFW face pasted in (grey background)."""
    frame = np.full((*size, 3), 90, np.uint8)
    y, x = at
    frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    return frame


def test_embedding_is_normalised_float32_128(pipeline: FacePipeline, lfw_images: list[Path]) -> None:
    result = pipeline.process(_read(lfw_images[0]), rule="center")
    assert result is not None
    assert result.embedding.dtype == np.float32
    assert result.embedding.shape == (128,)
    assert abs(float(np.linalg.norm(result.embedding)) - 1.0) < 1e-5
    assert set(result.timings) >= {"detect", "redetect", "align", "embed", "total"}
    assert pipeline.manifest.metric == "cosine"
    assert pipeline.manifest.model_id.startswith("dlib-resnet-v1-float32-")


def test_same_person_scores_above_threshold_and_others_below(pipeline: FacePipeline, lfw_dev: Path) -> None:
    """Ten matched and ten mismatched dev pairs from fold 1, decided at the manifest's threshold."""
    from edge.models.lfw import read_pairs

    pairs = read_pairs(lfw_dev)
    sample = [p for p in pairs if p.fold == 0 and p.same][:10] + [p for p in pairs if p.fold == 0 and not p.same][:10]
    correct = 0
    for p in sample:
        a = pipeline.process(_read(lfw_dev / "lfw-deepfunneled" / p.a), rule="center")
        b = pipeline.process(_read(lfw_dev / "lfw-deepfunneled" / p.b), rule="center")
        assert a is not None
        assert b is not None
        correct += (cosine(a.embedding, b.embedding) >= pipeline.manifest.threshold) == p.same
    assert correct >= 18


def test_no_face_gives_none(pipeline: FacePipeline) -> None:
    assert pipeline.process(np.full((480, 640, 3), 128, np.uint8)) is None
    with pytest.raises(ValueError, match="uint8 BGR"):
        pipeline.process(np.zeros((480, 640), np.uint8))


def test_gate_rule_picks_the_large_central_face_and_flags_the_second(
    pipeline: FacePipeline, lfw_images: list[Path]
) -> None:
    import cv2

    near = _read(lfw_images[0])  # 250 px: the person in the lane
    far = cv2.resize(_read(lfw_images[1]), (110, 110))  # a bystander at the edge
    frame = _gate_frame(near)
    frame[20:130, 10:120] = far
    alone = pipeline.process(_gate_frame(near))
    # the bystander is too small for the short-range model; as the person in the lane is small in
    # its input too, the full-range model is consulted and finds both
    assert len(pipeline.short.detect(frame)) == 1
    both = pipeline.process(frame, rule="gate")
    assert alone is not None
    assert both is not None
    assert both.faces == 2
    assert cosine(both.embedding, alone.embedding) > 0.95
    assert alone.quality.ok, alone.quality.reasons
    # a second face of comparable size is a quality failure with its reason
    twin = _gate_frame(near, size=(480, 900), at=(115, 60))
    twin[115:365, 560:810] = _read(lfw_images[1])
    crowded = pipeline.process(twin)
    assert crowded is not None
    assert not crowded.quality.ok
    assert any("more than one face" in r for r in crowded.quality.reasons)


def test_quality_gates_give_reasons(pipeline: FacePipeline, lfw_images: list[Path]) -> None:
    import cv2

    face = _read(lfw_images[0])
    small = pipeline.process(_gate_frame(cv2.resize(face, (90, 90))))
    assert small is not None
    assert any("too small" in r for r in small.quality.reasons)
    blurred = pipeline.process(_gate_frame(cv2.GaussianBlur(face, (0, 0), 4)))
    assert blurred is not None
    assert any("blurred" in r for r in blurred.quality.reasons)
    dark = pipeline.process(_gate_frame((face * 0.15).astype(np.uint8)))
    assert dark is not None
    assert any("dark" in r for r in dark.quality.reasons)


def test_enrolment_keeps_the_best_frames_that_pass(pipeline: FacePipeline, lfw_images: list[Path]) -> None:
    import cv2

    from edge.vision.camera import ReplayCamera, frames

    face = _read(lfw_images[0])
    shots = [
        _gate_frame(face),
        _gate_frame(cv2.GaussianBlur(face, (0, 0), 4)),
        np.full((480, 640, 3), 90, np.uint8),
        _gate_frame(face, at=(100, 250)),
    ]
    chosen, rejected = best_frames(pipeline, shots, k=1)
    assert len(chosen) == 1
    assert chosen[0].quality.ok
    assert len(rejected) == 2
    assert "no face found" in rejected
    assert any("blurred" in r for r in rejected)
    # the same through a replay camera of real images
    cam = ReplayCamera(list(lfw_images), fps=0, loop=False)
    try:
        replayed = frames(cam)
        chosen, rejected = best_frames(pipeline, replayed, k=2, rule="center")
    finally:
        cam.close()
    assert rejected == []  # three good photos: all pass, the best two are kept
    assert len(chosen) == 2
    assert chosen[0].quality.score >= chosen[1].quality.score


def test_process_writes_no_file(
    pipeline: FacePipeline, lfw_images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames and chips stay in memory: no file is opened for writing (Python audit events) and the
    working directory stays empty while frames are processed."""
    frame = _read(lfw_images[0])
    monkeypatch.chdir(tmp_path)
    writes: list[str] = []
    active = [True]

    def hook(event: str, args: tuple) -> None:  # type: ignore[type-arg]
        if not active[0]:
            return
        if (
            event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+")
        ) or event in ("os.rename", "os.replace", "shutil.copyfile"):
            writes.append(str(args[0]))

    sys.addaudithook(hook)
    try:
        for _ in range(2):
            assert pipeline.process(frame, rule="center") is not None
        best_frames(pipeline, [frame], k=1)
    finally:
        active[0] = False
    assert writes == []
    assert list(tmp_path.iterdir()) == []


def test_alignment_and_flip_options_agree_and_cost_embedder_runs(
    models_dir: Path, pipeline: FacePipeline, lfw_images: list[Path]
) -> None:
    frame = _read(lfw_images[2])
    base = pipeline.process(frame, rule="center")
    richer = FacePipeline.load(models_dir, "float32", threads=1, alignment="both", flip=True)
    other = FacePipeline.load(models_dir, "float32", threads=1, alignment="blazeface4")
    assert other.mesh is None
    both = richer.process(frame, rule="center")
    bf4 = other.process(frame, rule="center")
    assert base is not None
    assert both is not None
    assert bf4 is not None
    assert abs(float(np.linalg.norm(both.embedding)) - 1.0) < 1e-5
    assert cosine(base.embedding, both.embedding) > 0.97
    assert cosine(base.embedding, bf4.embedding) > 0.9
    assert richer.config_id != pipeline.config_id != other.config_id
    with pytest.raises(ValueError, match="unknown alignment"):
        FacePipeline(pipeline.bundle, "float32", 1, alignment="eyes")  # type: ignore[arg-type]


def test_probe_is_fast_unless_uncertain_and_then_equals_the_enrolment_embedding(
    pipeline: FacePipeline, lfw_images: list[Path]
) -> None:
    frame = _read(lfw_images[2])
    accurate = pipeline.process(frame, rule="center")
    seen: list[np.ndarray] = []

    def never(fast: np.ndarray) -> bool:
        seen.append(fast)
        return False

    fast = pipeline.probe(frame, rule="center", uncertain=never)
    escalated = pipeline.probe(frame, rule="center", uncertain=lambda _e: True)
    assert accurate is not None
    assert fast is not None
    assert escalated is not None
    assert not fast.escalated
    assert escalated.escalated
    # the callback saw the fast embedding, which is what a clear decision is taken on
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], fast.embedding)
    assert "landmarks" not in fast.timings  # no FaceMesh run on the fast path
    assert "escalate" in escalated.timings
    # escalation gives exactly the enrolment pipeline's embedding of the same frame
    np.testing.assert_allclose(escalated.embedding, accurate.embedding, atol=1e-6)
    assert 0.9 < cosine(fast.embedding, accurate.embedding) < 0.9999
    assert abs(float(np.linalg.norm(fast.embedding)) - 1.0) < 1e-5
    info = pipeline.manifest
    assert 0.0 < info.escalation_band < 0.1
    assert abs(info.threshold - info.probe_threshold) < info.escalation_band


def test_far_faces_are_re_detected_on_a_crop_and_judged(pipeline: FacePipeline, lfw_images: list[Path]) -> None:
    """A face about 10 px wide in the short-range model's input (a person far down the lane): the
    full-range model is consulted and the crop re-detected, so the keypoints come from a proper view."""
    import cv2

    small = cv2.resize(_read(lfw_images[0]), (240, 240))  # the face itself is ~100 px of the 1280 frame
    frame = _gate_frame(small, size=(720, 1280), at=(300, 580))
    result = pipeline.process(frame, rule="gate")
    assert result is not None
    x0, y0, x1, y1 = result.box
    assert 580 <= x0 < x1 <= 820
    assert 300 <= y0 < y1 <= 540
    assert result.timings["redetect"] > 0.5  # a detector run on the crop, not the skip
    assert 80 <= result.quality.face_px <= 120


def test_the_probe_asks_about_escalation_only_for_faces_the_gate_would_judge(
    pipeline: FacePipeline, lfw_images: list[Path]
) -> None:
    import cv2

    blurred = cv2.GaussianBlur(_read(lfw_images[0]), (0, 0), 4)  # fails the blur gate
    asked: list[int] = []

    def ask(_fast: np.ndarray) -> bool:
        asked.append(1)
        return True

    gate = pipeline.probe(blurred, rule="center", uncertain=ask)
    assert gate is not None
    assert not gate.quality.ok
    assert not gate.escalated
    assert asked == []
    evaluation = pipeline.probe(blurred, rule="center", uncertain=ask, judged_only=False)
    assert evaluation is not None
    assert evaluation.escalated
    assert asked == [1]
