"""Streaming inference: streams with ring buffers and feature caches, device-side framing, backends.

No ROS imports: the node, bag evaluation and benchmarks use only
:class:`EngineConfig`, :class:`InferenceEngine`, :class:`Stream` and :class:`FrameResult`
(DEVELOPERS.md, "Contract: streaming engine"). Names are resolved lazily (PEP 562) so that
``vimpnet_ros.engine.config`` (the engine's choices and ranges, which the node's parameter
table imports) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vimpnet_ros.engine.config import EngineConfig
    from vimpnet_ros.engine.engine import InferenceEngine
    from vimpnet_ros.engine.result import FrameResult
    from vimpnet_ros.engine.stream import Stream

_EXPORTS = {"EngineConfig": "config", "InferenceEngine": "engine", "FrameResult": "result", "Stream": "stream"}

__all__ = ["EngineConfig", "FrameResult", "InferenceEngine", "Stream"]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
