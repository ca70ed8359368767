"""The ViMP-Net model: configs, architecture, checkpoint I/O and export helpers (torch and numpy only).

Names are resolved lazily (PEP 562) so that importing a light submodule, e.g. the
benchmark's argument parser while the CLI builds its help, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vimpnet_ros.model.checkpoint import build_model, load_checkpoint, load_model, save_checkpoint
    from vimpnet_ros.model.config import CONFIGS, MASK_THRESHOLD, VimpNetConfig, get_config
    from vimpnet_ros.model.vimpnet_arch import VimpNet, VimpNetOutput

_EXPORTS = {
    "CONFIGS": "config",
    "MASK_THRESHOLD": "config",
    "VimpNetConfig": "config",
    "get_config": "config",
    "VimpNet": "vimpnet_arch",
    "VimpNetOutput": "vimpnet_arch",
    "build_model": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
}

__all__ = [
    "CONFIGS",
    "MASK_THRESHOLD",
    "VimpNet",
    "VimpNetConfig",
    "VimpNetOutput",
    "build_model",
    "get_config",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
