"""Exceptions raised by vimpnet_ros.

Every error the package raises on purpose derives from :class:`VimpnetError`, so
callers (the CLI, the node) can report it as a clean message instead of a trace.
"""

from __future__ import annotations


class VimpnetError(Exception):
    """Base class of all vimpnet_ros errors."""


class ConfigError(VimpnetError, ValueError):
    """An invalid configuration value (model config, engine option, parameter)."""


class CheckpointError(VimpnetError):
    """A checkpoint file is missing, unreadable, unsafe or does not fit the model."""


class EngineError(VimpnetError):
    """The inference engine cannot run as asked (backend missing, bad input)."""


class BackendUnavailableError(EngineError):
    """A requested backend (TensorRT, CUDA, ONNX Runtime) is not installed or usable."""


class InputError(VimpnetError, ValueError):
    """Bad input data: an image of the wrong shape, encoding or size."""


class DatasetError(VimpnetError):
    """A dataset folder is missing, incomplete or inconsistent."""


class BagError(VimpnetError):
    """A rosbag cannot be read or written, or lacks a requested topic."""
