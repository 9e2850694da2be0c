"""LFW-dev evidence for the gallery: dlib face descriptors (via ``face_recognition``) as a stand-in
embedding, cached under ``.cache/gallery/`` so the expensive part runs once.

Run as a script to print the figures::

    .venv/bin/python benchmarks/bench_gallery_lfw.py --pairs 1200

It prints, on LFW-dev View 2 pairs:
- verification accuracy at the best dev threshold with and without the protective transform
  (decisions must be identical);
- cross-device matching (templates protected under key A, probes under key B): genuine acceptance
  must fall to the impostor rate (chance);
- 1:N identification top-1 with float32 against the quantised backend (identical top-1 decisions).

The module is also imported by tests/gallery (fixtures that compute a small subset of embeddings).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "gallery"
# A centred box for the deep-funneled 250x250 crops, used when HOG finds no face.
FALLBACK_BOX = (80, 175, 187, 67)


@dataclass(frozen=True)
class Pair:
    a: str  # image path relative to lfw-deepfunneled/
    b: str
    same: bool


def image_rel(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


def read_pairs(lfw: Path, limit: int | None = None) -> list[Pair]:
    """The View 2 pairs in file order (matched and mismatched interleave by fold of 300+300)."""
    lines = (lfw / "pairs.txt").read_text().splitlines()[1:]
    pairs: list[Pair] = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3:
            pairs.append(Pair(image_rel(parts[0], int(parts[1])), image_rel(parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append(Pair(image_rel(parts[0], int(parts[1])), image_rel(parts[2], int(parts[3])), False))
    if limit is not None and limit < len(pairs):
        # keep matched and mismatched balanced: take from each fold's two halves alternately
        same = [p for p in pairs if p.same][: limit // 2]
        diff = [p for p in pairs if not p.same][: limit - limit // 2]
        pairs = same + diff
    return pairs


def _cache_file(lfw: Path) -> Path:
    """Keyed by the data's own checksum list where it has one (the same LFW-dev copy gives the same key
    wherever it is mounted: the arm64 lane reuses the host's embeddings), else by its path."""
    sums = lfw / "SHA256SUMS"
    source = sums.read_bytes() if sums.is_file() else str(lfw.resolve()).encode()
    tag = hashlib.sha256(source).hexdigest()[:10]
    return CACHE / f"lfw-dlib-{tag}.npz"


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with np.load(path) as data:
        names = [str(n) for n in data["names"]]
        vecs = data["vectors"]
    return dict(zip(names, vecs, strict=True))


def _save_cache(path: Path, table: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(table)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, names=np.array(names), vectors=np.stack([table[n] for n in names]).astype(np.float32))
    tmp.replace(path)


def embed(lfw: Path, rels: Iterable[str], *, progress: bool = False) -> dict[str, np.ndarray]:
    """L2-normalised 128-d dlib descriptors for the given images, computed once and cached."""
    import face_recognition

    path = _cache_file(lfw)
    table = _load_cache(path)
    wanted = sorted(set(rels))
    missing = [r for r in wanted if r not in table]
    for i, rel in enumerate(missing):
        image = face_recognition.load_image_file(lfw / "lfw-deepfunneled" / rel)
        boxes = face_recognition.face_locations(image)
        if boxes:
            # the subject is the face nearest the centre of the funneled crop
            box = min(boxes, key=lambda b: abs((b[0] + b[2]) / 2 - 125) + abs((b[1] + b[3]) / 2 - 125))
        else:
            box = FALLBACK_BOX
        vec = np.asarray(face_recognition.face_encodings(image, known_face_locations=[box])[0], dtype=np.float32)
        table[rel] = vec / np.linalg.norm(vec)
        if (i + 1) % 100 == 0:
            _save_cache(path, table)
            if progress:
                print(f"  embedded {i + 1}/{len(missing)}", file=sys.stderr, flush=True)
    if missing:
        _save_cache(path, table)
    return {r: table[r] for r in wanted}


def pair_scores(pairs: Sequence[Pair], vecs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    a = np.stack([vecs[p.a] for p in pairs])
    b = np.stack([vecs[p.b] for p in pairs])
    same = np.array([p.same for p in pairs])
    return np.einsum("ij,ij->i", a, b), same


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The dev threshold with the best accuracy, and that accuracy."""
    order = np.sort(scores)
    mids = (order[:-1] + order[1:]) / 2
    accs = [float(np.mean((scores >= t) == same)) for t in mids]
    i = int(np.argmax(accs))
    return float(mids[i]), accs[i]


def auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(a genuine score exceeds an impostor score), ties counted half."""
    g = genuine[:, None]
    i = impostor[None, :]
    return float(np.mean((g > i) + 0.5 * (g == i)))


def identification_split(pairs: Sequence[Pair]) -> tuple[list[str], list[str]]:
    """Gallery = first image of each person seen; probes = the other images of matched pairs."""
    gallery: dict[str, str] = {}
    probes: list[str] = []
    for p in pairs:
        for rel in (p.a, p.b):
            person = rel.split("/")[0]
            if person not in gallery:
                gallery[person] = rel
            elif gallery[person] != rel and rel not in probes:
                probes.append(rel)
    return list(gallery.values()), probes


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from edge.datasets import dataset
    from edge.gallery.protect import Protector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1200, help="View 2 pairs to use (3000 = all of dev)")
    args = parser.parse_args(argv)
    lfw = dataset("lfw-dev")
    if lfw is None:
        print("LFW dev data not found (set EDGE_DATASETS)")
        return 2
    pairs = read_pairs(lfw, args.pairs)
    rels = {p.a for p in pairs} | {p.b for p in pairs}
    print(f"LFW-dev: {len(pairs)} pairs, {len(rels)} images (dlib descriptors, L2-normalised)")
    vecs = embed(lfw, rels, progress=True)

    scores, same = pair_scores(pairs, vecs)
    threshold, acc = best_threshold(scores, same)
    key_a, key_b = Protector.from_seed(b"A" * 32, 128), Protector.from_seed(b"B" * 32, 128)
    prot = {r: key_a.apply(v[None, :])[0] for r, v in vecs.items()}
    p_scores, _ = pair_scores(pairs, prot)
    plain_dec, prot_dec = scores >= threshold, p_scores >= threshold
    print(f"verification, plain:     threshold {threshold:.4f} accuracy {acc:.4f}")
    print(
        f"verification, protected: accuracy {np.mean(prot_dec == same):.4f}; "
        f"decisions differing from plain: {int(np.sum(plain_dec != prot_dec))} of {len(pairs)}; "
        f"max |score difference| {np.max(np.abs(scores - p_scores)):.2e}"
    )
    a = np.stack([prot[p.a] for p in pairs])
    b = key_b.apply(np.stack([vecs[p.b] for p in pairs]))
    cross = np.einsum("ij,ij->i", a, b)
    gen_acc = float(np.mean(cross[same] >= threshold))
    imp_acc = float(np.mean(cross[~same] >= threshold))
    plain_far = float(np.mean(scores[~same] >= threshold))
    print(
        f"cross-device (key A vs key B): genuine accepted {gen_acc:.4f}, impostor accepted {imp_acc:.4f} "
        f"(same-device genuine {np.mean(scores[same] >= threshold):.4f}, impostor {plain_far:.4f}); "
        f"genuine score mean {cross[same].mean():+.4f} sd {cross[same].std():.4f}, "
        f"impostor mean {cross[~same].mean():+.4f} sd {cross[~same].std():.4f}"
    )
    print(
        f"ROC AUC genuine vs impostor: same device {auc(scores[same], scores[~same]):.4f}, "
        f"cross-device {auc(cross[same], cross[~same]):.4f} (0.5 = chance)"
    )
    # a fixed pair of keys leaves genuine pairs a small key-dependent term (trace of the map times
    # the within-person covariance); over key pairs it averages out, which is what an attacker faces
    aucs = []
    plain_b = np.stack([vecs[p.b] for p in pairs])
    plain_a = np.stack([vecs[p.a] for p in pairs])
    for seed in range(20):
        ka = Protector.from_seed(bytes([seed]) * 32, 128)
        kb = Protector.from_seed(bytes([seed + 100]) * 32, 128)
        c = np.einsum("ij,ij->i", ka.apply(plain_a), kb.apply(plain_b))
        aucs.append(auc(c[same], c[~same]))
    print(
        f"cross-device AUC over 20 key pairs: mean {np.mean(aucs):.4f}, sd {np.std(aucs):.4f}, "
        f"range {min(aucs):.4f}-{max(aucs):.4f}"
    )
    ident_top1(vecs, pairs, threshold)
    return 0


def ident_top1(vecs: dict[str, np.ndarray], pairs: Sequence[Pair], threshold: float) -> None:
    """1:N through the real Gallery: float numpy vs faiss-sq8 decisions on the same probes."""
    import tempfile

    from edge.gallery.store import Gallery
    from edge.state import StateDir

    gallery_rels, probe_rels = identification_split(pairs)
    probes = np.stack([vecs[r] for r in probe_rels])
    decisions: dict[str, list[tuple[str | None, bool]]] = {}
    for backend in ("numpy", "faiss", "faiss-sq8"):
        with tempfile.TemporaryDirectory() as tmp:
            state = StateDir(Path(tmp) / "state")
            state.ensure()
            with Gallery.open(state, backend=backend, create_key=True) as gal:
                gal.enrol_many([(r.split("/")[0], [vecs[r]]) for r in gallery_rels])
                out = []
                for q in probes:
                    res = gal.search(q)
                    out.append((res.subject, res.score >= threshold))
                decisions[backend] = out
    truth = [r.split("/")[0] for r in probe_rels]
    for backend, out in decisions.items():
        correct = sum(1 for (s, ok), t in zip(out, truth, strict=True) if ok and s == t)
        same_as_numpy = sum(1 for x, y in zip(out, decisions["numpy"], strict=True) if x == y)
        print(
            f"1:N {backend:9s}: gallery {len(gallery_rels)} people, {len(probe_rels)} probes, "
            f"correct accepts {correct}, decisions equal to numpy float32 {same_as_numpy}/{len(out)}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
