"""Alignment: the similarity fit, and chip sampling equivalent to dlib's get_face_chip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.vision.align import TEMPLATE_150, align, sample_chip, similarity
from tests.images import read_bgr


def test_similarity_recovers_a_known_transform() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.array([[10.0, 20.0], [50.0, 22.0], [30.0, 40.0], [31.0, 60.0]])
    dst = src @ (scale * rot).T + shift
    m = similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_similarity_never_mirrors() -> None:
    # Keypoints in the wrong handedness (eyes swapped): the best fit would be a reflection; we refuse it.
    swapped = TEMPLATE_150[[1, 0, 2, 3]]
    m = similarity(swapped, TEMPLATE_150)
    assert np.linalg.det(m[:, :2]) > 0


def _dlib_frame_to_chip(details) -> np.ndarray:
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    c, s = np.cos(details.angle), np.sin(details.angle)

    def rot(x: float, y: float) -> tuple[float, float]:
        return cx + c * (x - cx) - s * (y - cy), cy + s * (x - cx) + c * (y - cy)

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.right(), r.bottom())])
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], np.float64)
    return np.asarray(np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst).T)


def test_sampling_reproduces_dlib_get_face_chip(lfw_images: list[Path]) -> None:
    """Given dlib's own chip geometry, our sampler cuts the same pixels dlib does."""

    from edge.models.dlib_peer import DlibPeer

    peer = DlibPeer()
    for path in lfw_images:
        rgb = np.ascontiguousarray(read_bgr(path)[:, :, ::-1])
        shape = peer.landmarks(rgb, peer.detect(rgb)[0])
        theirs = peer.chip(rgb, shape)
        m = _dlib_frame_to_chip(peer.dlib.get_face_chip_details(shape, 150, 0.25))
        inv = np.zeros((2, 3))
        inv[:, :2] = np.linalg.inv(m[:, :2])
        inv[:, 2] = -inv[:, :2] @ m[:, 2]
        ours = sample_chip(rgb, inv)
        diff = np.abs(ours.astype(int) - theirs.astype(int))
        assert diff.max() <= 1, "sampling differs from dlib by more than one grey level"
        assert (diff > 0).mean() < 0.02


def test_chip_outside_the_frame_is_black() -> None:
    frame = np.full((40, 40, 3), 200, np.uint8)
    # a small face near the top-left corner: the chip's top-left lies outside the frame
    kp = TEMPLATE_150 * 0.25 - 10.0
    chip = align(frame, kp)
    assert chip.shape == (150, 150, 3)
    assert chip[0, 0].tolist() == [0, 0, 0]
    assert (chip == 200).any()


def test_big_faces_go_through_the_pyramid_without_aliasing() -> None:
    # A fine checkerboard "face" 6x the chip size: direct sampling would alias; the pyramid averages.
    frame = np.indices((1000, 1000)).sum(axis=0) % 2 * 255
    frame = np.repeat(frame[:, :, None], 3, axis=2).astype(np.uint8)
    chip = align(frame, TEMPLATE_150 * 6.0 + 20.0)
    assert abs(float(chip.mean()) - 127.5) < 10
    assert float(chip.std()) < 20


def test_template_is_in_dlib_chip_geometry() -> None:
    # Eyes level and about 56 px apart, nose and mouth below their midpoint: dlib's chip layout.
    right, left, nose, mouth = TEMPLATE_150
    assert right[0] < left[0]
    assert abs(right[1] - left[1]) < 2
    assert 50 < left[0] - right[0] < 62
    assert right[1] < nose[1] < mouth[1]


def _reference_sample(frame: np.ndarray, m: np.ndarray, size: int = 150) -> np.ndarray:
    """Plain per-pixel bilinear sampling with truncation, no pyramid: the definition the fast sampler must equal."""
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    px = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    py = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    left, top = np.floor(px).astype(int), np.floor(py).astype(int)
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lc, tc = np.clip(left, 0, w - 2), np.clip(top, 0, h - 2)
    fx = (px - left).astype(np.float32)[..., None]
    fy = (py - top).astype(np.float32)[..., None]
    img = frame.reshape(h, w, -1).astype(np.float32)
    tl, tr, bl, br = img[tc, lc], img[tc, lc + 1], img[tc + 1, lc], img[tc + 1, lc + 1]
    top_row = tl + fx * (tr - tl)
    val = top_row + fy * (bl + fx * (br - bl) - top_row)
    out = np.where(inside[..., None], np.clip(val, 0, 255), 0).astype(np.uint8)
    return out.reshape(size, size, -1) if frame.ndim == 3 else out.reshape(size, size)


def test_fast_sampler_equals_the_plain_definition_bit_for_bit() -> None:
    """Random rotations, scales up to 2 (no pyramid) and offsets that push the chip off every edge."""
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for _ in range(60):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 2.0)
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        m = np.array([[c, -s, rng.uniform(-150, 160)], [s, c, rng.uniform(-150, 120)]])
        assert np.array_equal(sample_chip(frame, m), _reference_sample(frame, m))
        assert np.array_equal(sample_chip(frame[:, :, 1], m), _reference_sample(frame[:, :, 1], m))
