"""The bundle's manifest and the hash check at load: altered, missing and unknown models are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.errors import ModelError
from edge.models.bundle import MANIFEST_NAME, sha256_file, verify_bundle


@pytest.fixture
def bundle_copy(models_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


def test_built_bundle_verifies_and_describes_itself(models_dir: Path) -> None:
    manifest = verify_bundle(models_dir)
    assert {e.role for e in manifest.files.values()} == {
        "detector_short",
        "detector_full",
        "landmarks",
        "embedder_float32",
        "embedder_int8",
        "pad_v2_float32",
        "pad_v2_int8",
        "pad_v1se_float32",
        "pad_v1se_int8",
    }
    assert 0.0 < manifest.raw["pad"]["threshold"] < 1.0
    assert "Apache-2.0" in manifest.entry("pad_v1se_int8").licence
    assert manifest.metric == "cosine"
    assert manifest.output_dim == 128
    assert manifest.input_spec["size"] == [150, 150, 3]
    assert manifest.input_spec["colour"] == "RGB"
    assert len(manifest.alignment["template"]["mesh5"]) == 5
    assert len(manifest.alignment["template"]["blazeface4"]) == 4
    for variant in ("float32", "int8"):
        for alignment in ("mesh5", "blazeface4", "both"):
            for config in (alignment, f"{alignment}+flip"):
                # every configuration a pipeline can be loaded with has its own and its fast probe's threshold
                accurate = manifest.thresholds[f"{variant}/{config}"]
                probe = manifest.thresholds[f"{variant}/probe>{config}"]
                assert 0.0 < accurate < 1.0
                assert abs(accurate - probe) < manifest.escalation_band
    assert all(e.licence and e.source for e in manifest.files.values())
    assert "Apache-2.0" in manifest.entry("detector_full").licence
    assert "CC0" in manifest.entry("embedder_float32").licence


def test_build_again_is_a_no_op(models_dir: Path) -> None:
    from edge.datasets import REPO_ROOT
    from edge.models.build import build

    before = (models_dir / MANIFEST_NAME).stat().st_mtime_ns
    build(models_dir, REPO_ROOT / ".cache" / "models-src", quiet=True)
    assert (models_dir / MANIFEST_NAME).stat().st_mtime_ns == before


def test_one_changed_byte_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "dlib_resnet_v1_int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit deep inside the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="dlib_resnet_v1_int8.tflite is altered"):
        verify_bundle(bundle_copy)
    from edge.vision.pipeline import FacePipeline

    with pytest.raises(ModelError, match="altered"):
        FacePipeline.load(bundle_copy, "int8")


def test_altered_model_with_edited_manifest_is_refused_as_unknown(bundle_copy: Path) -> None:
    path = bundle_copy / "face_detection_short_range.tflite"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    doc = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    doc["files"]["face_detection_short_range.tflite"]["sha256"] = sha256_file(path)
    (bundle_copy / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="not the released model"):
        verify_bundle(bundle_copy)


def test_missing_file_and_missing_manifest_are_refused(bundle_copy: Path) -> None:
    (bundle_copy / "face_detection_full_range.tflite").unlink()
    with pytest.raises(ModelError, match="face_detection_full_range.tflite is missing"):
        verify_bundle(bundle_copy)
    (bundle_copy / MANIFEST_NAME).unlink()
    with pytest.raises(ModelError, match="manifest.json is missing") as info:
        verify_bundle(bundle_copy)
    assert "edge models build" in info.value.one_line()


def test_unknown_file_in_manifest_is_refused(bundle_copy: Path) -> None:
    doc = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    entry = dict(doc["files"]["dlib_resnet_v1_int8.tflite"])
    doc["files"]["other_model.tflite"] = entry
    (bundle_copy / MANIFEST_NAME).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="other_model.tflite is not a model this agent knows"):
        verify_bundle(bundle_copy)


def test_garbled_manifest_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        verify_bundle(bundle_copy)
    (bundle_copy / MANIFEST_NAME).write_text(json.dumps({"format": 1, "files": {}}))
    with pytest.raises(ModelError, match="lacks or mistypes"):
        verify_bundle(bundle_copy)


def test_cli_verify_reports_the_problem(bundle_copy: Path) -> None:
    from edge.cli.main import main

    assert main(["models", "verify", "--models-dir", str(bundle_copy)]) == 0
    (bundle_copy / "dlib_resnet_v1_float32.tflite").write_bytes(b"TFL3 but not really")
    assert main(["models", "verify", "--models-dir", str(bundle_copy)]) != 0
