"""Camera sources: replay of folders, lists and videos; clear errors for sources that cannot open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.errors import HardwareError
from edge.vision.camera import Camera, ReplayCamera, frames, open_camera


def _frames(folder: Path, n: int) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((48, 64, 3), i * 40, np.uint8)  # synthetic test pattern, not a face
        path = folder / f"frame_{i:03d}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def test_replay_folder_in_order_then_loops(tmp_path: Path) -> None:
    _frames(tmp_path / "f", 3)
    (tmp_path / "f" / "notes.txt").write_text("ignored")
    cam = open_camera("replay", str(tmp_path / "f"), fps=0)
    try:
        assert isinstance(cam, Camera)
        values = [int(cam.read()[0, 0, 0]) for _ in range(4)]  # type: ignore[index]
    finally:
        cam.close()
    assert values == [0, 40, 80, 0]


def test_replay_list_without_loop_ends_with_none(tmp_path: Path) -> None:
    paths = _frames(tmp_path, 2)
    cam = ReplayCamera(paths, fps=0, loop=False)
    got = list(frames(cam))
    cam.close()
    assert len(got) == 2
    assert got[0].dtype == np.uint8
    assert got[0].shape == (48, 64, 3)


def test_replay_video_file(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 50, np.uint8))
    writer.release()
    cam = ReplayCamera(path, fps=1000, loop=False)
    got = list(frames(cam))
    cam.close()
    assert len(got) == 5
    assert abs(int(got[2].mean()) - 100) <= 3


def test_sources_that_cannot_open_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="does not exist"):
        open_camera("replay", str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HardwareError, match="holds no images"):
        open_camera("replay", str(tmp_path / "empty"))
    (tmp_path / "bad.avi").write_bytes(b"not a video")
    with pytest.raises(HardwareError, match="cannot be decoded"):
        ReplayCamera(tmp_path / "bad.avi", fps=5)
    with pytest.raises(HardwareError, match="unknown camera kind"):
        open_camera("webcam", "0")
    with pytest.raises(HardwareError, match="could not be opened"):
        open_camera("v4l2", "/dev/video-not-here")
    with pytest.raises(HardwareError, match="needs a pipeline string"):
        open_camera("gstreamer", "")


def test_picamera2_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "picamera2", None)  # as on any machine without the extra
    with pytest.raises(HardwareError, match="picamera2") as info:
        open_camera("picamera2", "")
    assert "picamera" in info.value.hint


def test_a_mirrored_camera_is_flipped_back(tmp_path: Path) -> None:
    """A profile's ``camera.mirrored`` (it was read by nothing): frames reach the pipeline unmirrored."""
    import cv2

    folder = tmp_path / "m"
    folder.mkdir()
    img = np.zeros((4, 6, 3), np.uint8)
    img[:, 0] = 255  # a bright left column
    cv2.imwrite(str(folder / "frame_000.png"), img)
    plain = open_camera("replay", str(folder), fps=0)
    mirrored = open_camera("replay", str(folder), fps=0, mirrored=True)
    try:
        a, b = plain.read(), mirrored.read()
        assert a is not None
        assert b is not None
        np.testing.assert_array_equal(b, a[:, ::-1])
        assert int(b[0, 5, 0]) == 255
    finally:
        plain.close()
        mirrored.close()
