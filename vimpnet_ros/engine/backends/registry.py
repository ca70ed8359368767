"""What each backend is, written once: name, what it needs, devices, precisions, how it is built.

:data:`REGISTRY` is read by the engine config (the choice list and the combinations that can
never work), by :mod:`~vimpnet_ros.engine.backends.select` (``auto``, explicit requests the
machine cannot serve, precision resolution), by :class:`~vimpnet_ros.engine.hardware.Environment`
(which optional packages are installed), by the engine (construction through ``factory``) and by
the background child (``child_builder``). Factories and builders are ``module:function``
strings, resolved when used: this module imports neither torch nor a backend, so the parameter
table loads without them and the background child does not import the backends back.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from vimpnet_ros.errors import BackendUnavailableError

#: Every precision a backend may run (``auto`` is resolved by select).
ALL_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


def resolve(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (imports the module)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class BackendSpec:
    """One backend: see the module docstring.

    ``module``: the optional Python package it needs (None: torch only), ``install`` how to get
    it. ``devices``: the device kinds it runs on. ``precisions``: what it computes in; the first
    is its ``auto`` precision when it has only one. ``factory(steps, device, precision, config,
    environment) -> Backend``; ``child_builder(steps, job)`` builds one program in the background
    child (static-shape backends only).
    """

    name: str
    summary: str
    factory: str
    devices: tuple[str, ...] = ("cpu", "cuda")
    precisions: tuple[str, ...] = ALL_PRECISIONS
    module: str | None = None
    install: str = ""
    child_builder: str | None = None

    def installed(self) -> bool:
        """Whether the package it needs is there (found, not imported)."""
        return self.module is None or importlib.util.find_spec(self.module) is not None

    def import_module(self) -> ModuleType:
        """The package it needs, imported; BackendUnavailableError saying how to install it otherwise."""
        assert self.module is not None
        try:
            return importlib.import_module(self.module)
        except ImportError as error:
            raise BackendUnavailableError(
                f"backend '{self.name}' needs {self.module}, which cannot be imported ({error}); {self.install}"
            ) from error

    def create(self, *args: Any) -> Any:
        """Build the backend through its factory."""
        return resolve(self.factory)(*args)


_PACKAGE = "vimpnet_ros.engine.backends"

#: Every backend, in the order they are listed to users.
REGISTRY: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("torch", "eager PyTorch", f"{_PACKAGE}.base:create_torch"),
        BackendSpec(
            "onnxruntime",
            "ONNX Runtime, one exported model per shape profile",
            f"{_PACKAGE}.onnx:create",
            precisions=("fp32",),
            module="onnxruntime",
            install="pip install onnxruntime",
            child_builder=f"{_PACKAGE}.onnx:build_in_child",
        ),
        BackendSpec(
            "tensorrt",
            "Torch-TensorRT programs per shape profile",
            f"{_PACKAGE}.tensorrt:create",
            devices=("cuda",),
            module="torch_tensorrt",
            install="pip install torch-tensorrt matching your torch version",
        ),
        BackendSpec(
            "compiled",
            "AOTInductor programs per shape profile (CUDA graphs on CUDA)",
            f"{_PACKAGE}.compiled:create",
            child_builder=f"{_PACKAGE}.compiled:build_in_child",
        ),
    )
}
#: The optional packages backends need (the machine facts :class:`~vimpnet_ros.engine.hardware.Environment` probes).
OPTIONAL_MODULES: tuple[str, ...] = tuple(spec.module for spec in REGISTRY.values() if spec.module)


def backend_spec(name: str) -> BackendSpec:
    """The registered backend of this name (BackendUnavailableError naming the known ones otherwise)."""
    if name not in REGISTRY:
        raise BackendUnavailableError(f"unknown backend {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]
