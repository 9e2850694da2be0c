"""Reading the test photos: a file OpenCV cannot read fails the test that needed it, by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def read_bgr(path: Path) -> NDArray[np.uint8]:
    """The image at ``path`` as OpenCV reads it (BGR, uint8)."""
    import cv2

    frame = cv2.imread(str(path))
    assert frame is not None, f"OpenCV cannot read {path}"
    return np.asarray(frame, dtype=np.uint8)
