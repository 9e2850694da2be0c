"""TFLite runtime: ``ai-edge-litert`` where it exists, ``tflite-runtime`` on older images.

Both apply the XNNPACK delegate by default for float models (their builtin op resolver); the thread
count comes from the device profile.
"""

from __future__ import annotations

import logging
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
        interpreter = factory(model_path=str(path), num_threads=max(1, int(threads)))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(
            f"{path}: the TFLite runtime cannot load it ({exc})", hint="rebuild: edge models build"
        ) from None
    log.debug("loaded %s with %s threads", path.name, threads)
    result: Interpreter = interpreter
    return result
