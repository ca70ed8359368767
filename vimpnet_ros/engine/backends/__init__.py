"""Backends that run the engine's step modules: eager PyTorch, AOTInductor (compiled), ONNX Runtime, Torch-TensorRT."""

from vimpnet_ros.engine.backends.base import Backend, TorchBackend
from vimpnet_ros.engine.backends.select import Selection, select_backend
from vimpnet_ros.engine.hardware import Environment

__all__ = ["Backend", "Environment", "Selection", "TorchBackend", "select_backend"]
