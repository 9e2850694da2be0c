"""LFW verification on the full pipeline: pairs, per-image embeddings, fold-wise accuracy, TAR@FAR.

Every image of the pairs goes through detection, selection, alignment and embedding from the raw
JPEG. An image where no face is found has no embedding; every pair that uses it counts as an error
at every threshold (it is neither accepted nor correctly rejected... it is simply wrong), which is
how the issue asks failures to be counted.

Per-image results are cached under ``.cache/lfw`` keyed by the image's path and the pipeline's
identity, so a second run of the same configuration only recomputes the statistics.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, ConfigProblem
from edge.numeric import dot_rows, norm


@dataclass(frozen=True)
class Pair:
    fold: int
    a: str  # "Name/Name_0001.jpg"
    b: str
    same: bool


def read_pairs(lfw_dir: Path) -> list[Pair]:
    """Parse LFW's ``pairs.txt`` (header ``folds<TAB>n``; n matched then n mismatched per fold)."""
    path = lfw_dir / "pairs.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        raise ConfigError(
            str(path), [ConfigProblem(str(path), "", "an LFW pairs.txt file", "no readable file")]
        ) from None
    try:
        folds, n = (int(v) for v in lines[0].split())
    except (ValueError, IndexError):
        raise ConfigError(
            str(path), [ConfigProblem(str(path), "header", "'<folds>\\t<n>'", repr(lines[:1]), 1)]
        ) from None
    pairs: list[Pair] = []
    body = [ln for ln in lines[1:] if ln.strip()]
    if len(body) != folds * 2 * n:
        raise ConfigError(
            str(path),
            [
                ConfigProblem(
                    str(path), "pairs", f"{folds * 2 * n} pair lines for {folds} folds of {n}+{n}", str(len(body))
                )
            ],
        )
    for i, line in enumerate(body):
        parts = line.split()
        fold = i // (2 * n)
        if len(parts) == 3:
            name, x, y = parts
            pairs.append(Pair(fold, f"{name}/{name}_{int(x):04d}.jpg", f"{name}/{name}_{int(y):04d}.jpg", True))
        elif len(parts) == 4:
            n1, x, n2, y = parts
            pairs.append(Pair(fold, f"{n1}/{n1}_{int(x):04d}.jpg", f"{n2}/{n2}_{int(y):04d}.jpg", False))
        else:
            raise ConfigError(str(path), [ConfigProblem(str(path), "pairs", "3 or 4 fields", line, i + 2)])
    return pairs


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class EmbeddingCache:
    """Per-image results (embedding or None, stage timings) in one .npz per configuration."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[str, tuple[np.ndarray | None, dict[str, float]]] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                for i, (name, timings) in enumerate(meta):
                    emb = data[f"e{i}"]
                    self.items[name] = (emb if emb.size else None, timings)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta = []
        for i, (name, (emb, timings)) in enumerate(self.items.items()):
            arrays[f"e{i}"] = emb if emb is not None else np.zeros(0, np.float32)
            meta.append([name, timings])
        arrays["meta"] = np.array(json.dumps(meta))
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(self.path)


EmbedFn = Callable[[np.ndarray], "tuple[np.ndarray | None, dict[str, float]]"]


def embed_images(
    lfw_dir: Path,
    variant_dir: str,
    names: list[str],
    embed: EmbedFn,
    cache: EmbeddingCache | None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[np.ndarray | None, dict[str, float]]]:
    import cv2

    out: dict[str, tuple[np.ndarray | None, dict[str, float]]] = {}
    for i, name in enumerate(names):
        if cache is not None and name in cache.items:
            out[name] = cache.items[name]
            continue
        frame = cv2.imread(str(lfw_dir / variant_dir / name), cv2.IMREAD_COLOR)
        if frame is None:
            raise ConfigError(
                str(lfw_dir / variant_dir / name), [ConfigProblem(name, "", "a readable JPEG", "nothing")]
            )
        out[name] = embed(frame)
        del frame
        if cache is not None:
            cache.items[name] = out[name]
            if (i + 1) % 200 == 0:
                cache.save()
        if progress is not None:
            progress(i + 1, len(names))
    if cache is not None:
        cache.save()
    return out


ProbeFn = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray | None, dict[str, float], bool]"]


def probe_pairs(
    lfw_dir: Path,
    variant_dir: str,
    pairs: list[Pair],
    references: dict[str, tuple[np.ndarray | None, dict[str, float]]],
    probe: ProbeFn,
    cache: EmbeddingCache | None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Scores, list[dict[str, float]], int]:
    """The gate's protocol on LFW pairs: the first image is the enrolled reference (its accurate
    embedding from ``references``), the second is probed as a camera frame at the gate:
    ``probe(frame, reference)`` returns (final embedding or None, stage timings, escalated).

    Returns the scores, the probe timings (one dict per pair that had a reference and a face) and
    how many probes escalated. A pair whose reference or probe has no face is an error.
    """
    import cv2

    sims = np.full(len(pairs), np.nan)
    timings: list[dict[str, float]] = []
    escalated = 0
    for i, p in enumerate(pairs):
        ref = references[p.a][0]
        if ref is None:
            continue
        key = f"probe:{p.a}|{p.b}"
        if cache is not None and key in cache.items:
            emb, t = cache.items[key]
            esc = bool(t.get("escalated", 0.0))
        else:
            frame = cv2.imread(str(lfw_dir / variant_dir / p.b), cv2.IMREAD_COLOR)
            if frame is None:
                raise ConfigError(
                    str(lfw_dir / variant_dir / p.b), [ConfigProblem(p.b, "", "a readable JPEG", "nothing")]
                )
            emb, t, esc = probe(frame, ref)
            del frame
            t = {**t, "escalated": float(esc)}
            if cache is not None:
                cache.items[key] = (emb, t)
        if progress is not None:
            progress(i + 1, len(pairs))
        if emb is None:
            continue
        sims[i] = float(np.dot(ref, emb))
        timings.append({k: v for k, v in t.items() if k != "escalated"})
        escalated += int(esc)
    if cache is not None:
        cache.save()
    return Scores(sims, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])), timings, escalated


@dataclass
class Scores:
    sims: np.ndarray  # cosine similarity; NaN where an image had no face
    same: np.ndarray
    folds: np.ndarray


def score_pairs(
    pairs: list[Pair], emb: dict[str, tuple[np.ndarray | None, dict[str, float]]], metric: str = "cosine"
) -> Scores:
    """Similarity per pair (higher = more alike): cosine, or minus the Euclidean distance."""
    sims = np.full(len(pairs), np.nan)
    for i, p in enumerate(pairs):
        a, b = emb[p.a][0], emb[p.b][0]
        if a is None or b is None:
            continue
        # fixed-order sums (edge.numeric): the same figure on every CPU for the same embeddings
        if metric == "cosine":
            sims[i] = float(dot_rows(a, b)) / (norm(a) * norm(b))
        else:
            sims[i] = -norm(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return Scores(sims, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))


def accuracy_at(s: Scores, mask: np.ndarray, threshold: float) -> float:
    sims, same = s.sims[mask], s.same[mask]
    valid = ~np.isnan(sims)
    correct = valid & ((sims >= threshold) == same)  # a pair without a face is always an error
    return float(correct.mean())


def best_threshold(s: Scores, mask: np.ndarray) -> float:
    sims = s.sims[mask]
    cands = np.unique(sims[~np.isnan(sims)])
    if cands.size == 0:
        return 0.0
    mids = np.concatenate([[cands[0] - 1e-6], (cands[:-1] + cands[1:]) / 2, [cands[-1] + 1e-6]])
    accs = [accuracy_at(s, mask, float(t)) for t in mids]
    return float(mids[int(np.argmax(accs))])


def tar_at_far(s: Scores, far: float) -> float:
    """True-accept rate at the threshold where at most ``far`` of impostor pairs are accepted."""
    valid = ~np.isnan(s.sims)
    impostor = np.sort(s.sims[valid & ~s.same])[::-1]
    allowed = int(np.floor(far * (~s.same).sum()))
    thr = impostor[allowed] + 1e-9 if allowed < impostor.size else -np.inf
    genuine = s.sims[s.same]
    return float(np.mean(np.where(np.isnan(genuine), False, genuine > thr)))


def summarise(s: Scores, fixed_threshold: float | None) -> dict[str, object]:
    folds = sorted(set(s.folds.tolist()))
    accs = []
    for f in folds:
        test = s.folds == f
        train = ~test if len(folds) > 1 else test
        accs.append(accuracy_at(s, test, best_threshold(s, train)))
    result: dict[str, object] = {
        "pairs": int(s.sims.size),
        "pairs_without_face": int(np.isnan(s.sims).sum()),
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "accuracy_folds": [round(a, 4) for a in accs],
        "best_threshold_all": best_threshold(s, np.ones_like(s.same)),
        "tar_at_far_1e-3": tar_at_far(s, 1e-3),
    }
    if fixed_threshold is not None:
        result["fixed_threshold"] = fixed_threshold
        result["accuracy_at_fixed_threshold"] = accuracy_at(s, np.ones_like(s.same), fixed_threshold)
    return result


def median_timings(emb: dict[str, tuple[np.ndarray | None, dict[str, float]]]) -> dict[str, float]:
    return median_of([timings for _, timings in emb.values()])


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median per stage over the runs that had the stage (a probe escalates only now and then)."""
    stages: dict[str, list[float]] = {}
    for timings in runs:
        for k, v in timings.items():
            stages.setdefault(k, []).append(v)
    return {k: round(statistics.median(v), 2) for k, v in stages.items()}
