"""Face alignment: a 4-keypoint similarity transform to a 150x150 chip equivalent to dlib's get_face_chip.

dlib's descriptor expects chips cut by ``get_face_chip(img, shape5, size=150, padding=0.25)``. We
do not have dlib's 5 landmarks at run time, so :data:`TEMPLATE_150` holds where BlazeFace's four
keypoints (the subject's right eye, left eye, nose tip, mouth centre) land, on average, inside
dlib's own chips; it was measured on LFW dev images with dlib's HOG detector and 5-point model
(``benchmarks/calibrate_face_template.py``). A least-squares similarity (rotation, uniform scale,
translation; never a reflection) maps the keypoints onto it.

Sampling follows dlib: every chip pixel maps back into the frame; its value is the bilinear blend
of the four neighbours, truncated to uint8; pixels whose neighbourhood leaves the frame are black.
When the face is more than twice the chip size the frame is first halved (a 5-tap pyramid, as
dlib does) so the sampling does not alias.
"""

from __future__ import annotations

import numpy as np

CHIP_SIZE = 150

#: Mean positions (x, y) in dlib's 150x150 chip (padding 0.25) of BlazeFace keypoints:
#: subject's right eye, subject's left eye, nose tip, mouth centre.
TEMPLATE_150 = np.array(
    [
        [46.046, 47.391],
        [102.418, 47.263],
        [74.956, 80.247],
        [74.476, 107.926],
    ],
    dtype=np.float64,
)


#: Median positions (x, y) in dlib's chip of FaceMesh's versions of dlib's five points (subject's left
#: eye outer and inner corner, right eye outer and inner corner, nose base); see edge.vision.mesh.
TEMPLATE5_150 = np.array(
    [
        [112.045, 45.287],
        [87.756, 46.796],
        [34.619, 44.973],
        [58.577, 46.773],
        [73.586, 86.047],
    ],
    dtype=np.float64,
)

#: Weight of each keypoint in the fit (right eye, left eye, nose tip, mouth centre).
FIT_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0])


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 (weighted) least-squares similarity mapping ``src`` onto ``dst`` (Umeyama, no reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    cov = (d0 * w[:, None]).T @ s0
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0  # the best fit would mirror the face: take the best proper rotation instead
    rot = u @ fix @ vt
    var = float(w @ (s0**2).sum(axis=1))
    scale = float((sig * np.diag(fix)).sum() / var) if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def _pyr_down(img: np.ndarray) -> np.ndarray:
    import cv2

    out: np.ndarray = cv2.pyrDown(img)
    return out


def sample_chip(frame: np.ndarray, chip_to_frame: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Cut a ``size`` x ``size`` chip: ``chip_to_frame`` (2x3) maps chip pixel (x, y) to frame (x, y)."""
    m = np.asarray(chip_to_frame, np.float64).copy()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    img = frame
    while scale > 2.0 and min(img.shape[:2]) > 2 * size:
        img = _pyr_down(img)
        m = m / 2.0  # frame coordinates halve with the image (pyrDown keeps pixel centres at 2x)
        scale /= 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    px = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    py = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    left = np.floor(px).astype(np.int64)
    top = np.floor(py).astype(np.int64)
    h, w = img.shape[:2]
    inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lc = np.clip(left, 0, w - 2)
    tc = np.clip(top, 0, h - 2)
    fx = (px - left).astype(np.float32)[..., None]
    fy = (py - top).astype(np.float32)[..., None]
    flat = np.ascontiguousarray(img).reshape(h * w, -1)  # gather the 4 neighbours as uint8, then blend
    idx = tc * w + lc
    tl, tr = flat[idx].astype(np.float32), flat[idx + 1].astype(np.float32)
    bl, br = flat[idx + w].astype(np.float32), flat[idx + w + 1].astype(np.float32)
    top_row = tl + fx * (tr - tl)
    val = top_row + fy * (bl + fx * (br - bl) - top_row)
    # astype truncates toward zero, as dlib's assignment of the blended value does
    out: np.ndarray = np.where(inside[..., None], np.clip(val, 0, 255), 0).astype(np.uint8)
    return out.reshape(size, size, -1) if img.ndim == 3 else out.reshape(size, size)


def align(
    frame: np.ndarray, keypoints: np.ndarray, template: np.ndarray = TEMPLATE_150, weights: np.ndarray | None = None
) -> np.ndarray:
    """The 150x150 chip (same channel order as ``frame``) for BlazeFace keypoints (at least the first 4)."""
    if len(template) == 4:
        frame_to_chip = similarity(keypoints[:4], template, FIT_WEIGHTS if weights is None else weights)
    else:
        frame_to_chip = similarity(keypoints, template, weights)
    a = frame_to_chip[:, :2]
    inv = np.zeros((2, 3))
    inv[:, :2] = np.linalg.inv(a)
    inv[:, 2] = -inv[:, :2] @ frame_to_chip[:, 2]
    return sample_chip(frame, inv)


def chip_transform(keypoints: np.ndarray, template: np.ndarray = TEMPLATE_150) -> np.ndarray:
    """The 2x3 frame-to-chip similarity used by :func:`align` (for diagnostics and tests)."""
    return similarity(keypoints[:4], template, FIT_WEIGHTS)
