"""The dlib reader, the numpy reference and the converted .tflite against dlib itself (dlib-bin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.errors import ModelError
from edge.models.convert import to_tflite
from edge.models.dlib_format import parse_resnet
from edge.models.reference import forward, normalise_chip
from tests.images import read_bgr


@pytest.fixture(scope="module")
def dlib_bytes() -> bytes:
    import face_recognition_models as frm

    return Path(frm.face_recognition_model_location()).read_bytes()


@pytest.fixture(scope="module")
def layers(dlib_bytes: bytes):
    return parse_resnet(dlib_bytes)


@pytest.fixture(scope="module")
def dlib_chips(lfw_images: list[Path]) -> list[np.ndarray]:
    """Chips cut by dlib itself (HOG + 5 landmarks + get_face_chip), RGB uint8."""
    import cv2

    from edge.models.dlib_peer import DlibPeer

    peer = DlibPeer()
    chips = []
    for path in lfw_images:
        rgb = np.ascontiguousarray(read_bgr(path)[:, :, ::-1])
        rect = peer.detect(rgb)[0]
        chips.append(peer.chip(rgb, peer.landmarks(rgb, rect)))
    return chips


def _run(model: bytes, chip: np.ndarray, means: tuple[float, float, float]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], normalise_chip(chip, means)[None])
    it.invoke()
    return np.array(it.get_tensor(it.get_output_details()[0]["index"])[0])


def test_reader_finds_every_layer_of_the_published_architecture(layers) -> None:
    kinds = [layer.kind for layer in layers]
    assert kinds[0] == "input"
    assert kinds.count("con") == 29  # 1 stem + 14 residual blocks x 2
    assert kinds[-1] == "fc"
    assert layers[-1].weights.shape == (256, 128)
    assert layers[1].weights.shape == (32, 3, 7, 7)
    assert layers[0].means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)


def test_truncated_file_is_refused_with_the_offset(dlib_bytes: bytes) -> None:
    cut = dlib_bytes[: len(dlib_bytes) // 2]
    with pytest.raises(ModelError, match=r"truncated .* at byte \d+"):
        parse_resnet(cut)


def test_file_of_another_network_is_refused(dlib_bytes: bytes) -> None:
    # Change the first convolution's layer name ("con_4") to something else: the reader must stop there.
    idx = dlib_bytes.index(b"con_")
    bad = dlib_bytes[:idx] + b"xxx_" + dlib_bytes[idx + 4 :]
    with pytest.raises(ModelError, match="expected layer con_4"):
        parse_resnet(bad)
    with pytest.raises(ModelError, match="trailing bytes"):
        parse_resnet(dlib_bytes + b"\x01\x02")


def test_float32_matches_dlib_descriptor_within_1e_5(layers, dlib_chips) -> None:
    import face_recognition_models as frm

    import dlib

    encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    model = to_tflite(layers, "float32")
    for chip in dlib_chips:
        theirs = np.array(encoder.compute_face_descriptor(chip))
        ref = forward(layers, chip)
        ours = _run(model, chip, layers[0].means)
        assert np.abs(ref - theirs).max() <= 1e-5
        assert np.abs(ours - theirs).max() <= 1e-5


def test_int8_cosine_to_float_reference_at_least_0_999(layers, dlib_chips) -> None:
    model = to_tflite(layers, "int8")
    assert len(model) < len(to_tflite(layers, "float32")) / 3  # weights really are int8
    for chip in dlib_chips:
        ref = forward(layers, chip)
        ours = _run(model, chip, layers[0].means)
        cos = float(ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref))
        assert cos >= 0.999


def test_conversion_is_deterministic(layers, models_dir: Path) -> None:
    import hashlib

    from edge.models.bundle import KNOWN_SHA256

    for variant in ("float32", "int8"):
        digest = hashlib.sha256(to_tflite(layers, variant)).hexdigest()
        assert digest == KNOWN_SHA256[f"dlib_resnet_v1_{variant}.tflite"]
