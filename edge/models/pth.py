"""Read the float tensors of a PyTorch legacy ``torch.save`` state dictionary, without PyTorch.

The legacy format (before PyTorch 1.6's zip container) is a sequence of pickles: a magic number,
the protocol version, a dictionary of system facts, then the object itself, whose tensors refer to
storages by persistent id, then the list of storage keys in the order their bytes follow; each
storage is an int64 element count followed by its raw little-endian elements.

Unpickling runs code named by the file, so every pickle here goes through one unpickler that
refuses every global except the three a state dictionary needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
storage types), none of which is executed: each becomes a plain record here. A tensor must be
contiguous in its storage. Any other shape of file is a :class:`~edge.errors.ModelError`.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {"FloatStorage": "<f4", "LongStorage": "<i8", "DoubleStorage": "<f8", "IntStorage": "<i4"}


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: object
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


@dataclass(frozen=True)
class _StorageType:
    dtype: str


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid: object) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unexpected persistent id")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError("malformed storage reference")
        return _Storage(key, stype.dtype, numel)


def _contiguous(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def parse_state_dict(data: bytes, what: str = "weights") -> dict[str, np.ndarray]:
    """The named tensors of a legacy ``torch.save`` file (bytes), as numpy arrays (copies)."""
    stream = io.BytesIO(data)
    try:
        magic = _Restricted(stream).load()
        protocol = _Restricted(stream).load()
        if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
            raise ModelError(
                f"{what} is not a legacy PyTorch state dictionary", hint="rebuild it from the pinned source"
            )
        _Restricted(stream).load()  # system facts (endianness, type sizes): checked through the storages' sizes
        state = _Restricted(stream).load()
        keys = _Restricted(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ModelError(f"{what} could not be read as a state dictionary: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise ModelError(f"{what} does not hold a state dictionary")
    refs = {name: ref for name, ref in state.items() if isinstance(ref, _TensorRef)}
    by_key = {ref.storage.key: ref.storage for ref in refs.values()}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        header = stream.read(8)
        if len(header) != 8 or key not in by_key:
            raise ModelError(f"{what} is truncated or names an unknown storage")
        (count,) = struct.unpack("<q", header)
        storage = by_key[key]
        dtype = np.dtype(storage.dtype)
        raw = stream.read(count * dtype.itemsize)
        if count != storage.numel or len(raw) != count * dtype.itemsize:
            raise ModelError(f"{what} is truncated (storage {key})")
        storages[key] = np.frombuffer(raw, dtype=dtype)
    if stream.read(1):
        raise ModelError(f"{what} has trailing bytes after its storages")
    tensors: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        if ref.storage.key not in storages:
            raise ModelError(f"{what}: tensor {name} has no storage")
        n = int(np.prod(ref.size)) if ref.size else 1
        if ref.size and ref.stride != _contiguous(ref.size):
            raise ModelError(f"{what}: tensor {name} is not contiguous")
        flat = storages[ref.storage.key][ref.offset : ref.offset + n]
        if flat.size != n:
            raise ModelError(f"{what}: tensor {name} runs past its storage")
        tensors[str(name)] = flat.reshape(ref.size).copy()
    return tensors


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_state_dict(data, str(path))
