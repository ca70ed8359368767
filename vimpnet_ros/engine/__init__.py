"""Streaming inference: streams with ring buffers and feature caches, device-side framing, backends.

No ROS imports. This module's names are the engine's whole public surface: code outside the
engine imports only these (``tools/check_layers.py`` fails on an import of a module inside
the engine), so the engine may rearrange its modules freely. The node, bag evaluation and
benchmarks restore frames with :class:`EngineConfig`, :class:`InferenceEngine`, :class:`Stream`
and :class:`FrameResult` (DEVELOPERS.md, "Contract: streaming engine"); the other names are the
engine's choices and ranges (which the node's parameter table offers), the machine facts, and
the pieces the benchmarks measure. Names are resolved lazily (PEP 562) so that the choices and
ranges load without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vimpnet_ros.engine.allocator import keep_freed_memory
    from vimpnet_ros.engine.backends.base import TorchBackend
    from vimpnet_ros.engine.backends.registry import REGISTRY
    from vimpnet_ros.engine.config import (
        AUTO_STAGE1_PASSES,
        BACKENDS,
        CHANGE_UPSAMPLINGS,
        DROP_FILL_BLEND,
        DROP_FILL_FRAMES,
        MAX_DROP_FILL_FRAMES,
        MAX_STAGE1_PASSES,
        MAX_WINDOW,
        MIN_WINDOW,
        OUTPUT_FRAMES,
        OVERSIZE_POLICIES,
        PRECISIONS,
        RESIZED_STAGE1_PASSES,
        WORKING_SCALES,
        EngineConfig,
        default_engine_cache_dir,
        fit_pixels,
        resolve_stage1_passes,
    )
    from vimpnet_ros.engine.drop_fill import MASK_LEVEL, fill_drops
    from vimpnet_ros.engine.drop_history import DropHistory
    from vimpnet_ros.engine.engine import InferenceEngine
    from vimpnet_ros.engine.geometry import FrameGeometry
    from vimpnet_ros.engine.hardware import (
        Environment,
        autocast_dtype,
        cpu_bf16_is_fast,
        cpu_description,
        installed_version,
        resolve_device,
    )
    from vimpnet_ros.engine.result import PLANE_SCALE, FrameResult
    from vimpnet_ros.engine.stream import Stream

#: Public name -> the module of the engine that defines it.
_EXPORTS = {
    # restoring frames
    "EngineConfig": "config",
    "InferenceEngine": "engine",
    "FrameResult": "result",
    "Stream": "stream",
    "window_indices": "stream",
    "fit_pixels": "config",
    "fill_drops": "drop_fill",
    "MASK_LEVEL": "drop_fill",
    "DropHistory": "drop_history",
    # the engine's choices and ranges (the node's parameter table offers them)
    "BACKENDS": "config",
    "PRECISIONS": "config",
    "OUTPUT_FRAMES": "config",
    "OVERSIZE_POLICIES": "config",
    "WORKING_SCALES": "config",
    "CHANGE_UPSAMPLINGS": "config",
    "MIN_WINDOW": "config",
    "MAX_WINDOW": "config",
    "DROP_FILL_BLEND": "config",
    "DROP_FILL_FRAMES": "config",
    "MAX_DROP_FILL_FRAMES": "config",
    "AUTO_STAGE1_PASSES": "config",
    "RESIZED_STAGE1_PASSES": "config",
    "MAX_STAGE1_PASSES": "config",
    "resolve_stage1_passes": "config",
    "PLANE_SCALE": "result",
    "default_engine_cache_dir": "config",
    # the machine
    "Environment": "hardware",
    "resolve_device": "hardware",
    "autocast_dtype": "hardware",
    "cpu_bf16_is_fast": "hardware",
    "cpu_description": "hardware",
    "installed_version": "hardware",
    "keep_freed_memory": "allocator",
    # the backends (name, devices, precisions, ...) and what the benchmarks measure piece by piece
    "FrameGeometry": "geometry",
    "TorchBackend": "backends.base",
    "REGISTRY": "backends.registry",
}

__all__ = [
    "AUTO_STAGE1_PASSES",
    "BACKENDS",
    "CHANGE_UPSAMPLINGS",
    "DROP_FILL_BLEND",
    "DROP_FILL_FRAMES",
    "MASK_LEVEL",
    "MAX_DROP_FILL_FRAMES",
    "MAX_STAGE1_PASSES",
    "MAX_WINDOW",
    "MIN_WINDOW",
    "OUTPUT_FRAMES",
    "OVERSIZE_POLICIES",
    "PLANE_SCALE",
    "PRECISIONS",
    "REGISTRY",
    "RESIZED_STAGE1_PASSES",
    "WORKING_SCALES",
    "DropHistory",
    "EngineConfig",
    "Environment",
    "FrameGeometry",
    "FrameResult",
    "InferenceEngine",
    "Stream",
    "TorchBackend",
    "autocast_dtype",
    "cpu_bf16_is_fast",
    "cpu_description",
    "default_engine_cache_dir",
    "fill_drops",
    "fit_pixels",
    "installed_version",
    "keep_freed_memory",
    "resolve_device",
    "resolve_stage1_passes",
    "window_indices",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
