"""BlazeFace detection: anchors, decoding, outputs chosen by shape, keypoint handedness on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.vision.detect import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, BlazeFace, anchors, decode
from tests.images import read_bgr


def test_anchor_counts_match_the_models() -> None:
    assert anchors(128, [8, 16, 16, 16], 2).shape == (896, 2)
    assert anchors(192, [4], 1).shape == (2304, 2)
    a = anchors(128, [8, 16, 16, 16], 2)
    assert a[0].tolist() == [0.5 / 16, 0.5 / 16]
    assert a[1].tolist() == a[0].tolist()  # two anchors per location


def test_decode_merges_overlapping_candidates_by_score() -> None:
    anchor_xy = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]], np.float32)
    raw = np.zeros((3, 16), np.float32)
    raw[:, 2:4] = 32.0  # 0.25 of a 128 input
    raw[1, 0] = 6.4  # shifted by 0.05
    scores = np.array([3.0, 1.0, -5.0], np.float32)  # the third is below the minimum score
    found = decode(raw, scores, anchor_xy, 128, 0.5)
    assert len(found) == 1
    box, kps, score = found[0]
    w0, w1 = 1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-1.0))
    assert abs(box[0] - (0.375 + 0.05 * w1 / (w0 + w1))) < 1e-6
    assert abs(score - w0) < 1e-6
    assert kps.shape == (6, 2)


def _tied_chain(n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` candidates with one equal logit, boxes 0.05 wide every 0.02 along a line (each overlaps
    its neighbours at IoU 0.43 and the next but one at 0.11), between which come separate small
    boxes with higher and lower logits, and anchors below the minimum score."""
    total = 4 * n
    raw = np.zeros((total, 16), np.float32)
    scores = np.full(total, -8.0, np.float32)
    for i in range(n):
        at = 4 * i + 1  # tied candidates at scattered anchor indices, in position order
        raw[at, 0], raw[at, 1] = 0.1 + 0.02 * i, 0.5
        raw[at, 2:4] = 0.05
        scores[at] = 2.0
        other = 4 * i + 2 + (i % 2)  # a lone small box elsewhere, better or worse than the tie
        raw[other, 0], raw[other, 1] = 0.1 + 0.02 * i, 0.1 if i % 2 else 0.9
        raw[other, 2:4] = 0.005
        scores[other] = 3.0 if i % 2 else 1.0
    return raw, scores, np.zeros((total, 2), np.float32)


def test_suppression_visits_equal_scores_in_anchor_order() -> None:
    # Visited in anchor order, candidate 0 absorbs 1, 2 absorbs 3, ...: 20 faces, each the mean of a
    # pair. numpy's default argsort (the code before) visits equal keys in another order on AVX-512
    # whenever other scores are mixed in, and merged other pairs there.
    raw, scores, anchor_xy = _tied_chain(40)
    found = decode(raw, scores, anchor_xy, 1, 0.5)
    assert [round(score, 4) for *_, score in found] == [0.9526] * 20 + [0.8808] * 20 + [0.7311] * 20
    for j, (box, _kps, _score) in enumerate(found[20:40]):
        centre = (box[0] + box[2]) / 2
        assert abs(centre - (0.1 + 0.02 * (2 * j) + 0.01)) < 1e-6, j


def test_candidates_pass_on_the_logit_so_no_sigmoid_rounding_decides() -> None:
    from edge.vision.detect import MODEL_CONFIG, _logit

    # sigmoid(x) >= p exactly when x >= logit(p); deciding on float32 logits against the float64
    # logit leaves nothing to a last-bit difference of exp() between CPUs, provided no float32 lies
    # within a few float64 ulps of the logit (then a libm differing by an ulp could not matter)
    for _size, _strides, _per, min_score in MODEL_CONFIG.values():
        t = _logit(min_score)
        nearest = float(np.float32(t))
        assert nearest == t or abs(nearest - t) > 1e-12, min_score
        scores = np.array([np.nextafter(np.float32(t), np.float32(-1)), np.float32(t) if nearest >= t else 9.0])
        raw = np.zeros((2, 16), np.float32)
        raw[:, 2:4] = 0.1
        raw[1, 0] = 0.5
        found = decode(raw, scores.astype(np.float32), np.zeros((2, 2), np.float32), 1, min_score)
        assert len(found) == 1


def test_both_models_load_despite_different_output_names(models_dir: Path, lfw_images: list[Path]) -> None:

    short = BlazeFace(models_dir / "face_detection_short_range.tflite", "short", threads=1)
    full = BlazeFace(models_dir / "face_detection_full_range.tflite", "full", threads=1)
    for path in lfw_images:
        frame = read_bgr(path)
        for model in (short, full):
            faces = model.detect(frame)
            assert faces, f"{model.kind} found no face in {path.name}"
            face = max(faces, key=lambda d: d.score)
            k = face.keypoints
            # unmirrored photo: the subject's right eye is on the image's left
            assert k[RIGHT_EYE][0] < k[NOSE][0] < k[LEFT_EYE][0]
            assert k[RIGHT_EYE][1] < k[MOUTH][1]
            assert face.box[0] < k[NOSE][0] < face.box[2]
            assert 60 < face.width < 200


def test_mirrored_frame_swaps_which_eye_is_on_the_left(models_dir: Path, lfw_images: list[Path]) -> None:

    short = BlazeFace(models_dir / "face_detection_short_range.tflite", "short", threads=1)
    frame = read_bgr(lfw_images[0])
    face = max(short.detect(frame), key=lambda d: d.score)
    mirrored = max(short.detect(np.ascontiguousarray(frame[:, ::-1])), key=lambda d: d.score)
    w = frame.shape[1]
    # the model reports image-left eye first in both; mirrored coordinates map onto each other
    assert abs((w - 1 - mirrored.keypoints[LEFT_EYE][0]) - face.keypoints[RIGHT_EYE][0]) < 6
