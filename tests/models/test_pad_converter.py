"""MiniFASNet liveness models: the restricted weights reader, the converter and its TFLite output.

The committed weights are read without PyTorch; what is tried: a pickle that names another global
(the classic code-execution trick), truncated and trailing bytes, a state dictionary of another
network; then the converted float32 and int8 models are compared with the float64 numpy reference
of the same network on real face crops.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from edge.errors import ModelError
from edge.models import minifasnet
from edge.models.build import PAD_WEIGHTS, WEIGHTS_DIR, _pad_weights
from edge.models.pth import LEGACY_MAGIC, LEGACY_PROTOCOL, parse_state_dict
from edge.vision.runtime import load_interpreter

STEMS = sorted(PAD_WEIGHTS)


@pytest.fixture(scope="module")
def nets() -> dict[str, minifasnet.Network]:
    return {stem: minifasnet.parse(parse_state_dict(_pad_weights(stem)), stem) for stem in STEMS}


def _crops() -> list[np.ndarray]:
    """Deterministic face-like crops: a smooth skin-toned blob with eyes and a textured background."""
    rng = np.random.default_rng(7)
    crops = []
    for i in range(3):
        yy, xx = np.mgrid[0:80, 0:80]
        face = np.exp(-(((xx - 40) / (18 + 3 * i)) ** 2 + ((yy - 42) / 24) ** 2))
        img = np.stack([90 + 100 * face, 110 + 110 * face, 140 + 100 * face], axis=-1)
        img[30:34, 30:36] = 40
        img[30:34, 44:50] = 40
        img += rng.normal(0, 6, img.shape)
        crops.append(np.clip(img, 0, 255).astype(np.uint8))
    return crops


def test_reader_finds_both_published_architectures(nets: dict[str, minifasnet.Network]) -> None:
    v2, v1se = nets["minifasnet_v2"], nets["minifasnet_v1se"]
    # V1SE gates the last block of each of its three residual groups; V2 has no gate
    assert sum(1 for x in v1se.layers if isinstance(x, minifasnet.Residual) and x.squeeze) == 3
    assert not any(isinstance(x, minifasnet.Residual) and x.squeeze for x in v2.layers)
    for net in (v2, v1se):
        assert net.fc_weight.shape == (3, 512)
        first = net.layers[0]
        assert isinstance(first, minifasnet.Conv)
        assert first.weight.shape == (32, 3, 3, 3)
        assert first.stride == 2


def test_a_pickle_naming_another_global_is_refused() -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("echo pwned",))

    data = b"".join(
        pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True})
    ) + pickle.dumps(Boom(), protocol=2)
    with pytest.raises(ModelError, match="refused global"):
        parse_state_dict(data, "evil.pth")
    # the same trick in the very first pickle
    with pytest.raises(ModelError, match="refused global"):
        parse_state_dict(pickle.dumps(Boom(), protocol=2), "evil.pth")


def test_truncated_trailing_and_foreign_files_are_refused() -> None:
    data = (WEIGHTS_DIR / PAD_WEIGHTS["minifasnet_v2"][0]).read_bytes()
    with pytest.raises(ModelError, match="truncated"):
        parse_state_dict(data[: len(data) - 100], "cut.pth")
    with pytest.raises(ModelError, match="trailing"):
        parse_state_dict(data + b"\0", "long.pth")
    with pytest.raises(ModelError, match="not a legacy PyTorch"):
        parse_state_dict(pickle.dumps(1234) + pickle.dumps(1001), "other.pth")
    state = parse_state_dict(data, "v2")
    del state["module.prob.weight"]
    with pytest.raises(ModelError, match="prob.weight"):
        minifasnet.parse(state, "v2-without-head")


def test_a_changed_byte_of_the_committed_weights_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge.models.build as build

    data = bytearray((WEIGHTS_DIR / PAD_WEIGHTS["minifasnet_v2"][0]).read_bytes())
    data[-5] ^= 1  # a weight, not the structure: only the pin notices
    (tmp_path / PAD_WEIGHTS["minifasnet_v2"][0]).write_bytes(bytes(data))
    monkeypatch.setattr(build, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelError, match="not the pinned"):
        build._pad_weights("minifasnet_v2")


@pytest.mark.parametrize("stem", STEMS)
def test_tflite_matches_the_numpy_reference(stem: str, nets: dict[str, minifasnet.Network], tmp_path: Path) -> None:
    net = nets[stem]
    cases: tuple[tuple[Literal["float32", "int8"], float, float], ...] = (("float32", 1e-3, 1e-4), ("int8", 0.35, 0.06))
    for variant, logit_tol, prob_tol in cases:
        path = tmp_path / f"{stem}_{variant}.tflite"
        path.write_bytes(minifasnet.to_tflite(net, variant))
        interpreter = load_interpreter(path, 1)
        inp = interpreter.get_input_details()[0]["index"]
        out = interpreter.get_output_details()[0]["index"]
        for crop in _crops():
            ref = minifasnet.reference_logits(net, crop)
            interpreter.set_tensor(inp, crop[None].astype(np.float32))
            interpreter.invoke()
            got = interpreter.get_tensor(out)[0].astype(np.float64)
            # float32 kernels vs float64 numpy: summation order differs; int8 weights add rounding
            assert np.max(np.abs(got - ref)) < logit_tol, (variant, got, ref)
            assert abs(minifasnet.softmax(got)[1] - minifasnet.softmax(ref)[1]) < prob_tol


def test_conversion_is_deterministic(nets: dict[str, minifasnet.Network], models_dir: Path) -> None:
    import hashlib

    for stem in STEMS:
        for variant in ("float32", "int8"):
            built = minifasnet.to_tflite(nets[stem], variant)
            on_disk = (models_dir / f"{stem}_{variant}.tflite").read_bytes()
            assert hashlib.sha256(built).hexdigest() == hashlib.sha256(on_disk).hexdigest()
