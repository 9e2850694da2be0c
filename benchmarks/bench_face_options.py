"""What each accuracy lever is worth on LFW dev: alignment points, two-alignment averaging, flip.

For every dev image (deep-funneled) the detector, re-detection and FaceMesh run once; then the chip
is cut two ways (BlazeFace's 4 keypoints; FaceMesh's versions of dlib's 5 points) and each chip and
its mirror image are embedded. Embeddings are cached under ``.cache/lfw``; the combinations are
then scored with the standard protocol (thresholds from the other folds). Each added embedding
costs one embedder run (see the per-stage medians of ``edge models evaluate`` and bench_face.py).

Then the gate's two-step probe (``FacePipeline.probe``): the template is the configuration's
embedding (as enrolled), the probe first the fast BlazeFace-4 embedding; a pair whose fast score
lies within the escalation band of the fast-vs-template threshold is decided on the configuration's
embedding instead. Printed: that threshold (the manifest's ``probe>`` keys), the accuracy and the
share of probes escalated for a few bands.

Run: ``.venv/bin/python benchmarks/bench_face_options.py [--model float32]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edge.datasets import REPO_ROOT, dataset
from edge.models import lfw
from edge.vision.align import TEMPLATE5_150, align
from edge.vision.mesh import dlib5
from edge.vision.pipeline import FacePipeline, select_face

CHIPS = ("bf4", "bf4_flip", "mesh5", "mesh5_flip")
#: pipeline configurations as the manifest's threshold keys name them (alignment, flip)
COMBOS = {
    "blazeface4": ("bf4",),
    "mesh5": ("mesh5",),
    "blazeface4+flip": ("bf4", "bf4_flip"),
    "mesh5+flip": ("mesh5", "mesh5_flip"),
    "both": ("bf4", "mesh5"),
    "both+flip": CHIPS,
}
#: the gate's fast probe (FacePipeline.probe): BlazeFace's keypoints, one embedder run
PROBE = "blazeface4"
BANDS = (0.01, 0.02, 0.03)


def embeddings(pipe: FacePipeline, root: Path, names: list[str], cache_path: Path) -> dict[str, np.ndarray]:
    if cache_path.is_file():
        with np.load(cache_path) as data:
            return {k: data[k] for k in data.files}
    out = {k: np.full((len(names), 128), np.nan, np.float32) for k in CHIPS}
    pipe.flip = False
    for i, name in enumerate(names):
        frame = cv2.imread(str(root / "lfw-deepfunneled" / name))
        faces = pipe.detect(frame)
        if not faces:
            continue
        det = pipe.refine(frame, select_face(faces, frame.shape, "center"))
        mesh = pipe.mesh.landmarks(frame, det) if pipe.mesh is not None else None
        chips = {"bf4": align(frame, det.keypoints)}
        chips["mesh5"] = align(frame, dlib5(mesh), TEMPLATE5_150) if mesh is not None else chips["bf4"]
        for key, chip in chips.items():
            out[key][i] = pipe.embed_chip(chip)
            out[key + "_flip"][i] = pipe.embed_chip(np.ascontiguousarray(chip[:, ::-1]))
        if (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(names)} images", flush=True)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, **out)  # type: ignore[arg-type]
    return out


def _cos(a: np.ndarray | None, b: np.ndarray | None) -> float:
    return float("nan") if a is None or b is None else float(np.dot(a, b))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="float32", choices=["float32", "int8"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    root = dataset("lfw-dev")
    if root is None:
        raise SystemExit("needs lfw-dev")
    pairs = lfw.read_pairs(root)
    names = sorted({p.a for p in pairs} | {p.b for p in pairs})
    pipe = FacePipeline.load(REPO_ROOT / "models", args.model, args.threads)  # type: ignore[arg-type]
    key = lfw.cache_key(pipe.config_id, "options-v1")
    emb = embeddings(pipe, root, names, REPO_ROOT / ".cache" / "lfw" / f"options-{args.model}-{key}.npz")

    def combo(parts: tuple[str, ...]) -> dict[str, tuple[np.ndarray | None, dict[str, float]]]:
        table: dict[str, tuple[np.ndarray | None, dict[str, float]]] = {}
        for i, name in enumerate(names):
            v = sum(emb[p][i] for p in parts)
            table[name] = (None, {}) if np.isnan(v).any() else (v / np.linalg.norm(v), {})
        return table

    tables = {label: combo(parts) for label, parts in COMBOS.items()}
    for label, parts in COMBOS.items():
        s = lfw.summarise(lfw.score_pairs(pairs, tables[label]), None)
        print(
            f"{args.model:8} {label:16} embedder runs {len(parts)}  accuracy {s['accuracy_mean'] * 100:.2f}% "
            f"+- {s['accuracy_std'] * 100:.2f}  TAR@FAR1e-3 {s['tar_at_far_1e-3'] * 100:.2f}%  "
            f"best single threshold {s['best_threshold_all']:.4f}",
            flush=True,
        )
    fast = tables[PROBE]
    for label in COMBOS:
        if label == PROBE:
            continue
        template = tables[label]
        # pair (a, b): a was enrolled with this configuration, b is probed fast
        cross = lfw.Scores(
            np.array([_cos(template[p.a][0], fast[p.b][0]) for p in pairs]),
            np.array([p.same for p in pairs]),
            np.array([p.fold for p in pairs]),
        )
        cross_threshold = float(lfw.summarise(cross, None)["best_threshold_all"])
        accurate = lfw.score_pairs(pairs, template)
        cells = []
        for band in BANDS:
            near = np.abs(cross.sims - cross_threshold) <= band
            mixed = lfw.Scores(np.where(near, accurate.sims, cross.sims), cross.same, cross.folds)
            r = lfw.summarise(mixed, None)
            cells.append(f"band {band}: {r['accuracy_mean'] * 100:.2f}% ({near.mean() * 100:.1f}% escalated)")
        print(f"{args.model:8} probe>{label:16} threshold {cross_threshold:.4f}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
