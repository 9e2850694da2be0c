"""FaceMesh landmarks give dlib's five points: checked against dlib's own 5-point model on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.vision.mesh import FaceMesh, dlib5
from edge.vision.pipeline import FacePipeline, select_face
from tests.images import read_bgr


def test_mesh_five_points_agree_with_dlib_shape_predictor(models_dir: Path, lfw_images: list[Path]) -> None:

    from edge.models.dlib_peer import DlibPeer

    pipe = FacePipeline.load(models_dir, "float32", threads=1)
    assert pipe.mesh is not None
    peer = DlibPeer()
    for path in lfw_images:
        frame = read_bgr(path)
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        det = pipe.refine(frame, select_face(pipe.detect(frame), frame.shape, "center"))
        mesh = pipe.mesh.landmarks(frame, det)
        assert mesh is not None
        assert mesh.shape == (468, 2)
        ours = dlib5(mesh)
        shape = peer.landmarks(rgb, peer.detect(rgb)[0])
        theirs = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float32)
        eye_dist = float(np.linalg.norm(theirs[0] - theirs[2]))
        assert np.abs(ours - theirs).max() < 0.12 * eye_dist, (ours, theirs)


def test_mesh_reports_no_face_on_a_blank_roi(models_dir: Path) -> None:
    from edge.vision.detect import Detection

    mesh = FaceMesh(models_dir / "face_landmark.tflite", threads=1)
    blank = np.full((300, 300, 3), 128, np.uint8)
    kps = np.array([[120, 130], [180, 130], [150, 160], [150, 190], [100, 140], [200, 140]], np.float32)
    assert mesh.landmarks(blank, Detection((100.0, 100.0, 200.0, 200.0), 0.9, kps)) is None
