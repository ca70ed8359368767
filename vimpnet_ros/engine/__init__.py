"""Streaming inference: ring buffer, per-frame caches, tiling and backends (torch, ONNX Runtime, Torch-TensorRT).

No ROS imports: the node, bag evaluation and benchmarks use only
:class:`EngineConfig`, :class:`InferenceEngine`, :class:`Stream` and :class:`FrameResult`
(DEVELOPERS.md, "Contract: streaming engine").
"""

from vimpnet_ros.engine.config import EngineConfig
from vimpnet_ros.engine.engine import InferenceEngine
from vimpnet_ros.engine.result import FrameResult
from vimpnet_ros.engine.stream import Stream

__all__ = ["EngineConfig", "FrameResult", "InferenceEngine", "Stream"]
