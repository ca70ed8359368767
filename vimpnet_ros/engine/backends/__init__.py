"""Backends that run the engine's step modules: eager PyTorch, AOTInductor (compiled), ONNX Runtime, Torch-TensorRT.

What each backend is (name, requirements, devices, precisions, factory) is declared once in
:mod:`.registry`. Names here are resolved lazily (PEP 562), so the registry, which the engine
config reads, loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vimpnet_ros.engine.backends.base import Backend, TorchBackend
    from vimpnet_ros.engine.backends.select import Selection, select_backend
    from vimpnet_ros.engine.hardware import Environment

_EXPORTS = {
    "Backend": "vimpnet_ros.engine.backends.base",
    "TorchBackend": "vimpnet_ros.engine.backends.base",
    "Selection": "vimpnet_ros.engine.backends.select",
    "select_backend": "vimpnet_ros.engine.backends.select",
    "Environment": "vimpnet_ros.engine.hardware",
}

__all__ = ["Backend", "Environment", "Selection", "TorchBackend", "select_backend"]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
