"""BlazeFace detection: anchors, decoding, outputs chosen by shape, keypoint handedness on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.vision.detect import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, BlazeFace, anchors, decode


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


def test_both_models_load_despite_different_output_names(models_dir: Path, lfw_images: list[Path]) -> None:
    import cv2

    short = BlazeFace(models_dir / "face_detection_short_range.tflite", "short", threads=1)
    full = BlazeFace(models_dir / "face_detection_full_range.tflite", "full", threads=1)
    for path in lfw_images:
        frame = cv2.imread(str(path))
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
    import cv2

    short = BlazeFace(models_dir / "face_detection_short_range.tflite", "short", threads=1)
    frame = cv2.imread(str(lfw_images[0]))
    face = max(short.detect(frame), key=lambda d: d.score)
    mirrored = max(short.detect(np.ascontiguousarray(frame[:, ::-1])), key=lambda d: d.score)
    w = frame.shape[1]
    # the model reports image-left eye first in both; mirrored coordinates map onto each other
    assert abs((w - 1 - mirrored.keypoints[LEFT_EYE][0]) - face.keypoints[RIGHT_EYE][0]) < 6
