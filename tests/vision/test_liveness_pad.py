"""The passive liveness check on real images: NUAA dev printed-photo attacks and live faces.

What is tried: the gate's own front end (detection, selection, the two MiniFASNet crops) on live
webcam images and on photographs of printed photos of the same people; an attack is never embedded;
`edge models evaluate --pad` prints the ISO/IEC 30107-3 figures at the shipped threshold; and the
metric arithmetic on made-up scores (ties, faces not found).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge.models.pad_eval import Scored, bpcer_at_apcer, read_labels, summarise
from edge.vision.pad import CROP, crop, crop_box
from tests.images import read_bgr


def test_metrics_on_made_up_scores() -> None:
    # 4 live (one without a face), 4 attacks (one without a face); threshold 0.5
    scored = [
        Scored(True, 0.9),
        Scored(True, 0.6),
        Scored(True, 0.4),
        Scored(True, None),
        Scored(False, 0.1),
        Scored(False, 0.55),
        Scored(False, 0.2),
        Scored(False, None),
    ]
    r = summarise(scored, 0.5, [1.0, 3.0, 2.0])
    assert r["apcer"] == 0.25  # one attack of four scored >= 0.5; the faceless one is refused
    assert r["bpcer"] == 0.5  # 0.4 refused, no face refused
    assert r["acer"] == 0.375
    assert r["images_without_face"] == 2
    assert r["pad_median_ms"] == 2.0
    # APCER <= 1 % of 4 attacks allows none: the threshold must sit just above 0.55
    assert bpcer_at_apcer(scored, 0.01) == 0.5
    # a tie with the highest attack is an accepted attack, so the live 0.55 would be refused too
    tied = [*scored, Scored(True, 0.55)]
    assert bpcer_at_apcer(tied, 0.01) == 0.6


def test_crop_box_stays_inside_the_frame_and_keeps_the_scale() -> None:
    # a face in the middle: 2.7 x a 100 px box
    assert crop_box((480, 640, 3), (270, 190, 370, 290), 2.7) == (185, 105, 455, 375)
    # a face at the corner: the box is shifted inside, not cut
    x0, y0, x1, y1 = crop_box((480, 640, 3), (0, 0, 100, 100), 2.7)
    assert (x0, y0) == (0, 0)
    assert x1 - x0 == 270
    assert y1 - y0 == 270
    # a face too big for the scale: the scale shrinks to fit
    x0, y0, x1, y1 = crop_box((480, 640, 3), (100, 50, 500, 450), 4.0)
    assert x0 >= 0
    assert y0 >= 0
    assert x1 <= 639
    assert y1 <= 479
    frame = np.zeros((480, 640, 3), np.uint8)
    assert crop(frame, (270, 190, 370, 290), 4.0).shape == (CROP, CROP, 3)


def test_labels_outside_the_folder_or_with_other_labels_are_refused(tmp_path: Path) -> None:
    from edge.errors import EdgeError

    (tmp_path / "labels.csv").write_text("path,label\n../etc/passwd,live\n")
    with pytest.raises(EdgeError, match="leaves the data folder"):
        read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("path,label\na.jpg,maybe\n")
    with pytest.raises(EdgeError, match="live or spoof"):
        read_labels(tmp_path)


def _pick(nuaa: Path, label: str, n: int) -> list[Path]:
    with (nuaa / "labels.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] == label]
    step = max(1, len(rows) // n)
    return [nuaa / r["path"] for r in rows[::step][:n]]


def test_photos_are_refused_and_live_faces_pass_on_nuaa(nuaa_dev: Path, models_dir: Path) -> None:

    from edge.vision.pipeline import FacePipeline

    pipeline = FacePipeline.load(models_dir, "float32", 2, liveness="int8")
    for path in _pick(nuaa_dev, "spoof", 8):
        result = pipeline.probe(read_bgr(path), judged_only=False)
        assert result is not None, path
        assert result.attack, path
        assert result.embedding.size == 0  # never embedded, so never matched
        assert "embed" not in result.timings
    for path in _pick(nuaa_dev, "live", 8):
        result = pipeline.process(read_bgr(path))
        assert result is not None, path
        assert not result.attack, path
        assert result.embedding.shape == (128,)


def test_evaluate_pad_prints_the_agreed_figures(nuaa_dev: Path, models_dir: Path, tmp_path: Path) -> None:
    from edge.cli.main import cli

    # a subset keeps the test quick: every 6th image of the dev list, labels as given
    with (nuaa_dev / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))[::6]
    sub = tmp_path / "nuaa-subset"
    sub.mkdir()
    with (sub / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label"])
        writer.writeheader()
        for r in rows:
            link = sub / r["path"]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(nuaa_dev / r["path"])
            writer.writerow({"path": r["path"], "label": r["label"]})
    result = CliRunner().invoke(
        cli, ["models", "evaluate", "--pad", str(sub), "--model", "int8", "--models-dir", str(models_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    for key in ("apcer", "bpcer", "acer", "bpcer_at_apcer_1pct", "bpcer_at_apcer_5pct", "images"):
        assert key in report
    assert report["images"] == len(rows)
    assert "images_without_face" in report
    assert "pad_median_ms" in report
    assert report["apcer"] <= 0.02
    assert report["bpcer"] <= 0.02
    assert "APCER" in result.output
