"""The shared base of backends whose programs have static shapes and are built in a background child.

A profile (step, input shapes) missing from the engine cache is built in a child process
(:class:`~vimpnet_ros.engine.backends.background.BackgroundExport`, running the backend's
``child_builder`` from the registry) while eager PyTorch serves its frames; at most
``parallel_builds`` children run at once; a profile whose build failed is remembered with its
reason and stays on eager PyTorch (logged once). Subclasses (AOTInductor, ONNX Runtime) say what
a profile is called, what invalidates it, and how a program is run (:meth:`_run`).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from vimpnet_ros.engine.backends.background import BackgroundExport
from vimpnet_ros.engine.backends.base import Backend, Shapes, TorchBackend
from vimpnet_ros.engine.backends.cache import EngineCache
from vimpnet_ros.engine.backends.registry import REGISTRY
from vimpnet_ros.engine.steps import StepModules

LOGGER = logging.getLogger(__name__)
#: A shape profile of one step: (step name, input shapes, stage-1 passes the window step runs; 0 for the others).
ProfileKey = tuple[str, Shapes, int]


def profile_key(steps: StepModules, step: str, shapes: Shapes) -> ProfileKey:
    """The profile of ``step`` at ``shapes`` with the model's pass count now (the engine sets it per frame size, and
    each count is another window program)."""
    return step, shapes, steps.model.stage1_passes if step == "window" else 0


class ChildBuiltBackend(Backend):
    """Background builds, their failures and the eager fallback of a static-shape backend; see the module docs."""

    #: What one build is called in log lines ("ONNX export", "compilation").
    build_word: str = "build"
    #: What one program is called in log lines ("ONNX model", "compiled program").
    program_word: str = "program"

    def __init__(self, steps: StepModules, device: torch.device, precision: str, cache: EngineCache | None,
                 background_build: bool, parallel_builds: int, fallback: TorchBackend) -> None:  # fmt: skip
        super().__init__(steps, device, precision)
        self.cache = cache
        #: Background builds need the cache: the child hands its program over through it.
        self.background_build = background_build and cache is not None
        self.parallel_builds = parallel_builds
        self._fallback = fallback
        self._builds: dict[ProfileKey, BackgroundExport] = {}
        self._failed: dict[ProfileKey, str] = {}

    @abc.abstractmethod
    def program_name(self, key: ProfileKey) -> str:
        """Readable name of a profile's program (log lines, cache file names)."""

    @abc.abstractmethod
    def key_material(self, key: ProfileKey) -> dict[str, Any]:
        """Everything that invalidates a cached program of ``key`` when it changes."""

    def child_job(self, key: ProfileKey) -> tuple[Mapping[str, Any], Mapping[str, str] | None]:
        """(extra job fields, extra environment variables) of the child that builds ``key``."""
        return {}, None

    @abc.abstractmethod
    def _run(self, step: str, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...] | list[Tensor] | None:
        """Outputs of ``step`` through its program, or None when eager PyTorch must serve this call."""

    # -- background builds --------------------------------------------------------------------------

    def _fail(self, key: ProfileKey, reason: str) -> None:
        """Keep ``key`` on eager PyTorch for good, with one log line saying why."""
        self._failed[key] = reason
        LOGGER.error("%s %s is unavailable (%s); eager PyTorch keeps serving this shape", self.program_word,
                     self.program_name(key), reason)  # fmt: skip

    def _builds_full(self) -> bool:
        """Whether as many children run as may (each takes cores from the frames being served)."""
        return len(self._builds) >= self.parallel_builds

    def _start_build(self, key: ProfileKey) -> bool:
        """Build ``key`` in a child process (the caller keeps serving); a failure to start is logged once."""
        assert self.cache is not None
        step, shapes, _ = key
        name = self.program_name(key)
        options, environment = self.child_job(key)
        builder = REGISTRY[self.name].child_builder
        assert builder is not None, f"backend {self.name} has no child builder in the registry"
        try:
            self._builds[key] = BackgroundExport.start(
                self.cache.directory, name, self.key_material(key), self.steps, step, [list(s) for s in shapes],
                builder=builder, options=options, environment=environment,
            )  # fmt: skip
        except OSError as error:
            self._fail(key, f"cannot start the background {self.build_word}: {error}")
            return False
        LOGGER.info("%s: %s in the background (once per shape profile); eager PyTorch serves these frames until it "
                    "is ready", name, self.build_word)  # fmt: skip
        return True

    def _finish_build(self, key: ProfileKey, block: bool) -> bool | None:
        """None while the child of ``key`` runs; True when it stored the program, False when it failed (logged)."""
        assert self.cache is not None
        build = self._builds[key]
        done = build.wait() if block else build.poll()
        if done is None:
            return None
        del self._builds[key]
        name = self.program_name(key)
        if done and self.cache.is_fresh(name, self.key_material(key)):
            LOGGER.info("%s %s ready after %.0f s; switching from eager PyTorch", self.program_word, name,
                        build.elapsed_s)  # fmt: skip
            return True
        self._fail(key, f"the background {self.build_word} failed, exit code {build.exit_code}: "
                        f"{build.error_tail() or 'no output'}")  # fmt: skip
        return False

    def building(self) -> list[str]:
        """Names of the programs being built in the background."""
        return [build.name for build in self._builds.values()]

    def close(self) -> None:
        """Stop background builds (their profiles are built again when next needed)."""
        for build in self._builds.values():
            build.cancel()
        self._builds.clear()

    # -- running: the program when it is ready, eager PyTorch otherwise -------------------------------

    def frame(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Frame step through its program: features (compute dtype), 0.25x frame in float32."""
        outputs = self._run("frame", (frames,))
        if outputs is None:
            return self._fallback.frame(frames)
        feats, small = outputs
        return feats, small

    def flow(self, small_a: Tensor, small_b: Tensor) -> tuple[Tensor, Tensor]:
        """Flow step through its program (float32 flows both ways)."""
        outputs = self._run("flow", (small_a, small_b))
        if outputs is None:
            return self._fallback.flow(small_a, small_b)
        first, second = outputs
        return first, second

    def window(self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor) -> Tensor:
        """Window step through its program; (n, 5, h, w) float32."""
        outputs = self._run("window", (lqs, feats, flows_backward, flows_forward))
        if outputs is None:
            return self._fallback.window(lqs, feats, flows_backward, flows_forward)
        return outputs[0]
