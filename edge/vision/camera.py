"""Camera sources behind one small interface: V4L2/USB (OpenCV), Pi camera (picamera2), GStreamer, replay.

Every source returns BGR uint8 frames in memory; nothing is written to disk. ``ReplayCamera`` plays
an image folder, a list of images or a video file at a set frame rate, for the simulator, the tests
and the demo (the physical cameras cannot run here; they share the interface).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from edge.errors import HardwareError

if TYPE_CHECKING:
    from edge.config.final import CameraPlan

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm"}
CAMERA_KINDS = ("v4l2", "picamera2", "gstreamer", "replay")


@runtime_checkable
class Camera(Protocol):
    def read(self) -> np.ndarray | None:
        """The next BGR uint8 frame, or None when none is available (end of a replay, a dropped frame)."""
        ...

    def close(self) -> None: ...


class OpenCVCamera:
    """A V4L2/USB device (``/dev/video0`` or an index) or a GStreamer pipeline string, through OpenCV."""

    def __init__(self, source: str | int, api: int, width: int | None, height: int | None, fps: float | None) -> None:
        import cv2

        self.source = source
        self.capture: Any = cv2.VideoCapture(source, api)
        if not self.capture.isOpened():
            self.capture.release()
            raise HardwareError(
                f"camera {source!r} could not be opened",
                hint="check the device path/permissions (video group) or the GStreamer pipeline string",
            )
        if api != cv2.CAP_GSTREAMER:
            if width:
                self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                self.capture.set(cv2.CAP_PROP_FPS, fps)

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if not ok or frame is None:
            return None
        result: np.ndarray = frame
        return result

    def close(self) -> None:
        self.capture.release()


class PiCamera:
    """The Raspberry Pi camera through picamera2 (optional ``picamera`` extra, imported here only)."""

    def __init__(self, width: int | None, height: int | None, fps: float | None) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise HardwareError(
                "camera kind 'picamera2' needs the picamera2 package",
                hint="install the 'picamera' extra (pip install 'gate-edge[picamera]') on Raspberry Pi OS",
            ) from None
        self.cam: Any = Picamera2()
        config = self.cam.create_video_configuration(
            main={"size": (width or 640, height or 480), "format": "RGB888"},
            controls={"FrameRate": float(fps)} if fps else {},
        )
        self.cam.configure(config)
        self.cam.start()

    def read(self) -> np.ndarray | None:
        frame = self.cam.capture_array("main")
        if frame is None:
            return None
        # picamera2's "RGB888" stores each pixel as [B, G, R] (its manual), i.e. OpenCV's BGR order.
        return np.ascontiguousarray(frame[:, :, :3])

    def close(self) -> None:
        self.cam.stop()
        self.cam.close()


class ReplayCamera:
    """Frames from an image folder, a list of image files or a video file, paced at ``fps``.

    ``fps <= 0`` returns frames as fast as they are asked for. With ``loop`` the source restarts at
    its end; without it ``read()`` returns None from then on.
    """

    def __init__(self, source: Path | Sequence[Path], fps: float, loop: bool = True) -> None:
        self.fps = float(fps)
        self.loop = loop
        self.images: list[Path] = []
        self.video: Path | None = None
        self.capture: Any = None
        self.index = 0
        self.next_due = 0.0
        if isinstance(source, (str, Path)):
            path = Path(source)
            if path.is_dir():
                self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not self.images:
                    raise HardwareError(f"replay folder {path} holds no images", hint="use .jpg/.png frames")
            elif path.is_file():
                self.video = path
                self._open_video()
            else:
                raise HardwareError(f"replay source {path} does not exist", hint="give an image folder or a video file")
        else:
            self.images = [Path(p) for p in source]
            if not self.images:
                raise HardwareError("replay list is empty", hint="give at least one image")

    def _open_video(self) -> None:
        import cv2

        assert self.video is not None
        self.capture = cv2.VideoCapture(str(self.video))
        if not self.capture.isOpened():
            self.capture.release()
            raise HardwareError(f"replay video {self.video} cannot be decoded", hint="use a format OpenCV can read")

    def _pace(self) -> None:
        if self.fps <= 0:
            return
        now = time.monotonic()
        if self.next_due and now < self.next_due:
            time.sleep(self.next_due - now)
            now = self.next_due
        self.next_due = now + 1.0 / self.fps

    def read(self) -> np.ndarray | None:
        import cv2

        if self.video is not None:
            if self.capture is None:
                return None
            ok, frame = self.capture.read()
            if not ok:
                if not self.loop:
                    return None
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self.capture.read()
                if not ok:
                    return None
            self._pace()
            result: np.ndarray = frame
            return result
        if self.index >= len(self.images):
            if not self.loop:
                return None
            self.index = 0
        path = self.images[self.index]
        self.index += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("replay: %s is not a readable image; skipped", path.name)
            return None
        self._pace()
        out: np.ndarray = image
        return out

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class Unmirrored:
    """A camera whose image is mirrored (a profile's ``camera.mirrored``: some USB modules, or one
    that looks through a mirror), flipped back so the face pipeline sees people as they are: the
    detector's keypoint order and the gate's fast probe (one embedder run, no flip average)
    assume an unmirrored image."""

    def __init__(self, camera: Camera) -> None:
        self.camera = camera

    def read(self) -> np.ndarray | None:
        import cv2

        frame = self.camera.read()
        return None if frame is None else cv2.flip(frame, 1)

    def close(self) -> None:
        self.camera.close()


def frames(camera: Camera, limit: int | None = None) -> Iterator[np.ndarray]:
    """Frames from ``camera`` until it returns None (or ``limit`` frames); frames are not kept."""
    count = 0
    while limit is None or count < limit:
        frame = camera.read()
        if frame is None:
            return
        count += 1
        yield frame


def open_camera(
    kind: str,
    device: str,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    *,
    mirrored: bool = False,
) -> Camera:
    """Open a camera of ``kind`` ("v4l2", "picamera2", "gstreamer", "replay") at ``device``;
    ``mirrored`` flips its frames back (see :class:`Unmirrored`)."""
    opened = _open(kind, device, width, height, fps)
    return Unmirrored(opened) if mirrored else opened


def open_planned(plan: CameraPlan) -> Camera:
    """The camera the device plan resolved (``edge.config.final.CameraPlan``)."""
    return open_camera(plan.kind, plan.device, plan.width, plan.height, plan.fps, mirrored=plan.mirrored)


def _open(kind: str, device: str, width: int | None, height: int | None, fps: float | None) -> Camera:
    import cv2

    if kind == "v4l2":
        source: str | int = int(device) if device.isdigit() else device
        return OpenCVCamera(source, cv2.CAP_V4L2, width, height, fps)
    if kind == "gstreamer":
        if not device:
            raise HardwareError("camera kind 'gstreamer' needs a pipeline string", hint="set camera.source")
        return OpenCVCamera(device, cv2.CAP_GSTREAMER, width, height, fps)
    if kind == "picamera2":
        return PiCamera(width, height, fps)
    if kind == "replay":
        if not device:
            raise HardwareError("camera kind 'replay' needs an image folder or video file", hint="set camera.source")
        return ReplayCamera(Path(device), fps if fps is not None else 5.0)
    raise HardwareError(f"unknown camera kind {kind!r}", hint=f"use one of {', '.join(CAMERA_KINDS)}")
