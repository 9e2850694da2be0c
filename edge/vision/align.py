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

import threading

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


class _Scratch:
    """Work arrays for one chip size and channel count, reused call after call: fresh 270 KB
    temporaries are mapped and faulted in anew each time, which cost more than the arithmetic."""

    def __init__(self, size: int, channels: int) -> None:
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
        self.xs, self.ys = xs, ys
        self.px, self.py, self.tmp = np.empty_like(xs), np.empty_like(xs), np.empty_like(xs)
        self.inside, self.mask = np.empty(xs.shape, bool), np.empty(xs.shape, bool)
        self.x0, self.y0 = np.empty(xs.shape, np.float32), np.empty(xs.shape, np.float32)
        self.x1, self.y1 = np.empty(xs.shape, np.float32), np.empty(xs.shape, np.float32)
        shape = (size, size, channels) if channels else (size, size)
        self.fx, self.fy = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self.corners = [np.empty(shape, np.float32) for _ in range(4)]
        self.a, self.b = np.empty(shape, np.float32), np.empty(shape, np.float32)


_LOCAL = threading.local()


def _scratch(size: int, channels: int) -> _Scratch:
    cache: dict[tuple[int, int], _Scratch] = _LOCAL.__dict__.setdefault("scratch", {})
    work = cache.get((size, channels))
    if work is None:
        work = cache[(size, channels)] = _Scratch(size, channels)
    return work


def sample_chip(frame: np.ndarray, chip_to_frame: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Cut a ``size`` x ``size`` chip: ``chip_to_frame`` (2x3) maps chip pixel (x, y) to frame (x, y).

    The four neighbours are gathered with OpenCV's nearest-neighbour remap at integer coordinates (an
    exact copy, several times faster than numpy fancy indexing); the blend is ours, in float32, and
    truncated, as dlib's is. Returns a new array; the scratch space is per thread.
    """
    import cv2

    m = np.asarray(chip_to_frame, np.float64).copy()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    img = frame
    while scale > 2.0 and min(img.shape[:2]) > 2 * size:
        img = _pyr_down(img)
        m = m / 2.0  # frame coordinates halve with the image (pyrDown keeps pixel centres at 2x)
        scale /= 2.0
    h, w = img.shape[:2]
    channels = img.shape[2] if img.ndim == 3 else 0
    k = _scratch(size, channels)
    px, py, tmp = k.px, k.py, k.tmp
    np.multiply(k.xs, m[0, 0], out=px)
    px += np.multiply(k.ys, m[0, 1], out=tmp)
    px += m[0, 2]
    np.multiply(k.xs, m[1, 0], out=py)
    py += np.multiply(k.ys, m[1, 1], out=tmp)
    py += m[1, 2]
    # fractions first, then px/py become the integer corners
    np.floor(px, out=tmp)
    fx = np.subtract(px, tmp, out=px)
    np.greater_equal(tmp, 0, out=k.inside)
    k.inside &= np.less(tmp, w - 1, out=k.mask)
    np.clip(tmp, 0, w - 2, out=tmp)
    k.x0[...] = tmp
    np.floor(py, out=tmp)
    fy = np.subtract(py, tmp, out=py)
    k.inside &= np.greater_equal(tmp, 0, out=k.mask)
    k.inside &= np.less(tmp, h - 1, out=k.mask)
    np.clip(tmp, 0, h - 2, out=tmp)
    k.y0[...] = tmp
    np.add(k.x0, 1, out=k.x1)
    np.add(k.y0, 1, out=k.y1)
    inside: np.ndarray = k.inside.astype(np.float32)
    if channels:  # cv2.merge interleaves planes far faster than numpy's broadcast over a last axis of 3
        k.fx[...] = cv2.merge([fx.astype(np.float32)] * channels)
        k.fy[...] = cv2.merge([fy.astype(np.float32)] * channels)
        inside = cv2.merge([inside] * channels)
    else:
        k.fx[...] = fx
        k.fy[...] = fy
    src = np.ascontiguousarray(img)
    tl, tr, bl, br = k.corners
    for dst, mx, my in ((tl, k.x0, k.y0), (tr, k.x1, k.y0), (bl, k.x0, k.y1), (br, k.x1, k.y1)):
        dst[...] = cv2.remap(src, mx, my, cv2.INTER_NEAREST).reshape(dst.shape)
    # top = tl + fx (tr - tl); val = top + fy (bl + fx (br - bl) - top), as the plain definition
    top = np.subtract(tr, tl, out=k.a)
    top *= k.fx
    top += tl
    bottom = np.subtract(br, bl, out=k.b)
    bottom *= k.fx
    bottom += bl
    bottom -= top
    bottom *= k.fy
    val = np.add(top, bottom, out=k.a)
    np.clip(val, 0, 255, out=val)
    val *= inside
    # astype truncates toward zero, as dlib's assignment of the blended value does
    out: np.ndarray = val.astype(np.uint8)
    return out


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
