"""TFLite runtime: ``ai-edge-litert`` where it exists, ``tflite-runtime`` on older images.

Both apply the XNNPACK delegate by default for float models (their builtin op resolver); the thread
count comes from the device profile. ``reference_kernels()`` switches to TFLite's portable reference
kernels (no XNNPACK, no SIMD) for parity checks only (``edge.testing.parity``): they are many times
slower. Embeddings from XNNPACK on any CPU and thread count, and from the reference kernels, agree
within the tolerance docs/face.md states.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.errors import ModelError

log = logging.getLogger(__name__)


class Interpreter(Protocol):
    def allocate_tensors(self) -> None: ...
    def get_input_details(self) -> list[dict[str, Any]]: ...
    def get_output_details(self) -> list[dict[str, Any]]: ...
    def set_tensor(self, index: int, value: np.ndarray) -> None: ...
    def get_tensor(self, index: int) -> np.ndarray: ...
    def invoke(self) -> None: ...


_reference = False  # set only inside reference_kernels()


@contextmanager
def reference_kernels() -> Iterator[None]:
    """Interpreters loaded inside this block use TFLite's reference kernels instead of XNNPACK."""
    global _reference  # noqa: PLW0603 - a switch for parity tools, never set by the agent
    before, _reference = _reference, True
    try:
        yield
    finally:
        _reference = before


def runtime_name() -> str:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        pass
    else:
        return "ai-edge-litert"
    try:
        import tflite_runtime.interpreter  # noqa: F401
    except ImportError:
        return "none"
    return "tflite-runtime"


def load_interpreter(path: Path, threads: int = 2) -> Interpreter:
    """An allocated interpreter for ``path`` with XNNPACK and ``threads`` threads."""
    factory: Any
    try:
        from ai_edge_litert import interpreter as module
    except ImportError:
        try:
            from tflite_runtime import interpreter as module
        except ImportError:
            raise ModelError(
                "no TFLite runtime installed",
                hint="pip install ai-edge-litert (or tflite-runtime on images with numpy<2)",
            ) from None
    try:
        factory = module.Interpreter
        options: dict[str, Any] = {}
        if _reference:
            options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_REF
        interpreter = factory(model_path=str(path), num_threads=max(1, int(threads)), **options)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(
            f"{path}: the TFLite runtime cannot load it ({exc})", hint="rebuild: edge models build"
        ) from None
    log.debug("loaded %s with %s threads%s", path.name, threads, " (reference kernels)" if _reference else "")
    result: Interpreter = interpreter
    return result
