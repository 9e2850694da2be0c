"""LFW protocol code on known numbers, and `edge models evaluate` end to end on a small real subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.models.lfw import Scores, accuracy_at, read_pairs, summarise, tar_at_far


def test_pairs_file_parses_folds_and_names(tmp_path: Path) -> None:
    (tmp_path / "pairs.txt").write_text("2\t1\nA\t1\t2\nB\t1\tC\t3\nD\t2\t4\nE\t1\tF\t1\n")
    pairs = read_pairs(tmp_path)
    assert [(p.fold, p.same) for p in pairs] == [(0, True), (0, False), (1, True), (1, False)]
    assert pairs[1].a == "B/B_0001.jpg"
    assert pairs[1].b == "C/C_0003.jpg"


def test_bad_pairs_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pairs.txt").write_text("2\t1\nA\t1\t2\n")
    with pytest.raises(ConfigError) as info:
        read_pairs(tmp_path)
    assert "4 pair lines" in info.value.problems[0].render()


def test_pairs_without_a_face_count_as_errors_at_every_threshold() -> None:
    s = Scores(
        sims=np.array([0.9, np.nan, 0.1, 0.2]),
        same=np.array([True, True, False, False]),
        folds=np.array([0, 0, 0, 0]),
    )
    everything = np.ones(4, bool)
    assert accuracy_at(s, everything, 0.5) == 0.75
    assert accuracy_at(s, everything, -1.0) == 0.25  # impostors accepted, the faceless pair still wrong
    assert tar_at_far(s, 0.0) == 0.5


def test_summary_uses_thresholds_from_the_other_folds() -> None:
    rng = np.random.default_rng(3)
    same = np.tile([True] * 50 + [False] * 50, 2)
    sims = np.where(same, rng.normal(0.8, 0.05, 200), rng.normal(0.4, 0.05, 200))
    s = Scores(sims, same, np.repeat([0, 1], 100))
    out = summarise(s, 0.6)
    assert out["accuracy_mean"] == 1.0
    assert out["accuracy_at_fixed_threshold"] == 1.0
    assert out["pairs_without_face"] == 0


def test_evaluate_command_on_a_small_real_subset(models_dir: Path, lfw_dev: Path, capsys) -> None:
    from edge.cli.main import main

    code = main(
        ["models", "evaluate", "--lfw", str(lfw_dev), "--limit", "3", "--peer", "dlib", "--json", "--threads", "1"]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["ours"]["pairs"] == 30  # 5 folds x (3 matched + 3 mismatched)
    assert report["dlib"]["pairs"] == 30
    assert report["ours"]["accuracy_mean"] >= 0.9
    assert report["ours"]["accuracy_at_fixed_threshold"] >= 0.9
    assert report["images_without_face"] == 0
    assert {"detect", "align", "embed", "total"} <= set(report["ours_median_ms"])
    assert "total" in report["dlib_median_ms"]
    assert any("TAR at FAR=1e-3" in line for line in lines)
    # the gate's protocol on the same pairs: every pair probed, escalations counted, dlib timed on the probes
    assert report["cascade"]["pairs"] == 30
    assert report["cascade_probes"] == 30
    assert 0 <= report["cascade_escalated"] <= 30
    assert report["cascade"]["accuracy_mean"] >= 0.9
    assert {"detect", "align", "embed", "total"} <= set(report["cascade_median_ms"])
    assert "landmarks" not in report["cascade_median_ms"]  # the fast path never runs FaceMesh
    assert report["speedup_cascade_median"] > 0
    assert "total" in report["dlib_median_ms_probed_images"]
