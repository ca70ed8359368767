"""The streaming inference engine: one model and backend shared by any number of camera streams.

``InferenceEngine(config)`` only validates; :meth:`InferenceEngine.load` loads the
weights (or takes an in-memory model), picks the backend and builds it. Streams
(:meth:`InferenceEngine.open_stream`) keep their own ring buffers and caches and
call back into :meth:`InferenceEngine.restore_window`, which runs the backend under
a lock so streams driven from different threads never interleave model calls.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from vimpnet_ros.engine.allocator import keep_freed_memory
from vimpnet_ros.engine.backends.base import Backend, TorchBackend
from vimpnet_ros.engine.backends.select import Environment, Selection, select_backend
from vimpnet_ros.engine.config import EngineConfig
from vimpnet_ros.engine.geometry import FrameGeometry, to_uint8
from vimpnet_ros.engine.result import FrameResult
from vimpnet_ros.engine.stream import FrameSlot, Stream
from vimpnet_ros.errors import CheckpointError, ConfigError, EngineError

if TYPE_CHECKING:
    from vimpnet_ros.model import VimpNet

LOGGER = logging.getLogger(__name__)


def _in_chunks(step: Callable[..., object], batch: int, *inputs: Tensor) -> list[object]:
    """Run ``step`` over slices of at most ``batch`` along dim 0 of every input."""
    total = inputs[0].shape[0]
    return [step(*(x[start : start + batch] for x in inputs)) for start in range(0, total, batch)]


class InferenceEngine:
    """Restores frames from many streams with one model; see DEVELOPERS.md "Contract: streaming engine"."""

    def __init__(self, config: EngineConfig, environment: Environment | None = None) -> None:
        if not isinstance(config, EngineConfig):
            raise ConfigError(f"InferenceEngine needs an EngineConfig; got {type(config).__name__}")
        self.config = config
        self._environment = environment
        self._lock = threading.RLock()
        self._geometries: dict[tuple[int, int], FrameGeometry] = {}
        self.backend: Backend | None = None
        self.selection: Selection | None = None
        self.model: VimpNet | None = None

    # -- loading -----------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has run."""
        return self.backend is not None

    @property
    def backend_name(self) -> str:
        """The backend actually used (``auto`` resolved); the configured one before loading."""
        return self.selection.backend if self.selection else self.config.backend

    @property
    def precision_name(self) -> str:
        """The precision actually used (``auto`` resolved); the configured one before loading."""
        return self.selection.precision if self.selection else self.config.precision

    @property
    def device(self) -> torch.device:
        """Where frames and caches live (CPU before loading)."""
        return torch.device(self.selection.device) if self.selection else torch.device("cpu")

    def load(self, model: VimpNet | None = None) -> InferenceEngine:
        """Load weights (or use ``model``, e.g. a random ``vimpnet_lite`` in tests), pick and build the backend.

        With ``model=None`` the weights come from ``config.checkpoint`` or, when that
        is None, from the package's ``weights/<model>.pth``. Returns ``self``.
        """
        with self._lock:
            environment = self._environment or Environment.probe()
            selection = select_backend(self.config, environment)
            for note in selection.notes:
                LOGGER.warning("%s", note)
            if model is None:
                model = self._load_model()
            elif model.config.name != self.config.model:
                LOGGER.warning("engine config names model %r but was given a %r model; using the model given",
                               self.config.model, model.config.name)  # fmt: skip
            if self.config.cpu_threads:
                torch.set_num_threads(self.config.cpu_threads)  # process-wide, as torch offers it
            if selection.device == "cpu" and self.config.reuse_cpu_memory:
                keep_freed_memory()  # process-wide too
            model = model.eval().requires_grad_(False)
            device = torch.device(selection.device)
            model.to(device)
            self.model = model
            self.selection = selection
            self.backend = self._build_backend(model, selection, environment)
            LOGGER.info("engine ready: %s, model %s, window %d (%s)", self.backend.describe(), model.config.name,
                        self.config.window_size, self.config.output_frame)  # fmt: skip
            return self

    def _load_model(self) -> VimpNet:
        """The model from ``config.checkpoint`` or the shipped weights, as a CheckpointError when impossible."""
        from vimpnet_ros.model import checkpoint as checkpoint_io

        if self.config.checkpoint:
            path = Path(self.config.checkpoint).expanduser()
        else:
            path = checkpoint_io.shipped_checkpoint(self.config.model)
        if not path.is_file():
            if self.config.checkpoint:
                raise CheckpointError(f"checkpoint {path} does not exist; fix the engine checkpoint path")
            raise CheckpointError(
                f"no weights are shipped for model {self.config.model!r} ({path} is missing); train them "
                "(vimpnet-ros train) or set checkpoint to a .pth file"
            )
        return checkpoint_io.load_model(path, self.config.model)

    def _build_backend(self, model: VimpNet, selection: Selection, environment: Environment) -> Backend:
        from vimpnet_ros.engine.steps import StepModules

        steps = StepModules(model, self.config.output_index)
        device = torch.device(selection.device)
        if selection.backend == "torch":
            return TorchBackend(steps, device, selection.precision, channels_last=device.type == "cuda")
        if selection.backend == "onnxruntime":
            from vimpnet_ros.engine.backends.onnx import OnnxRuntimeBackend

            return OnnxRuntimeBackend(
                steps, device, selection.precision, self.config.cache_dir, self.config.background_build
            )
        if selection.backend == "tensorrt":
            from vimpnet_ros.engine.backends.tensorrt import TensorRTBackend

            return TensorRTBackend(steps, device, selection.precision, self.config.cache_dir, environment)
        raise EngineError(f"unknown backend {selection.backend!r}")

    # -- streams -----------------------------------------------------------------------------------

    def open_stream(self, name: str = "default") -> Stream:
        """A new ring buffer for one camera; streams share this engine's model and backend."""
        return Stream(self, name)

    def geometry_for(self, height: int, width: int) -> FrameGeometry:
        """Tiling/padding plan for (height, width) frames, computed once per size."""
        key = (height, width)
        if key not in self._geometries:
            self._geometries[key] = FrameGeometry.plan(height, width, self.config)
        return self._geometries[key]

    def prepare(self, width: int, height: int) -> None:
        """Build the backend's programs for (width, height) frames now instead of at the first frame."""
        backend = self._require_backend()
        geometry = self.geometry_for(height, width)
        ph, pw = geometry.padded_shape
        batches = {min(self.config.tile_batch, geometry.num_tiles)}
        if geometry.num_tiles % self.config.tile_batch:
            batches.add(geometry.num_tiles % self.config.tile_batch)
        with self._lock:
            for batch in sorted(batches):
                backend.prepare(batch, self.config.window_size, ph, pw)

    def building(self) -> list[str]:
        """Shape profiles the backend builds in the background (their frames run eagerly meanwhile)."""
        return self.backend.building() if self.backend is not None else []

    def close(self) -> None:
        """Stop background builds; the engine keeps its model and can still restore frames."""
        if self.backend is not None:
            self.backend.close()

    def _require_backend(self) -> Backend:
        if self.backend is None:
            raise EngineError("the engine is not loaded; call InferenceEngine.load() before pushing frames")
        return self.backend

    # -- restoration -------------------------------------------------------------------------------

    def _ensure_caches(self, stream: Stream, window: Sequence[FrameSlot]) -> None:
        """Compute each frame's features and each neighbour pair's flows once (kept in the stream)."""
        backend, batch = self._require_backend(), self.config.tile_batch
        for slot in {id(s): s for s in window}.values():
            if slot.features is None:
                parts = _in_chunks(backend.frame, batch, slot.tiles)
                slot.features = torch.cat([p[0] for p in parts])  # type: ignore[index]
                slot.small = torch.cat([p[1] for p in parts])  # type: ignore[index]
        for first, second in itertools.pairwise(window):
            key = (first.frame_id, second.frame_id)
            if key in stream.flows:
                continue
            parts = _in_chunks(backend.flow, batch, first.small, second.small)
            stream.flows[key] = torch.cat([p[0] for p in parts])  # type: ignore[index]
            stream.flows[(second.frame_id, first.frame_id)] = torch.cat([p[1] for p in parts])  # type: ignore[index]

    def run_window(self, stream: Stream, window: Sequence[FrameSlot]) -> Tensor:
        """Network output for the window's output frame: (n_tiles, 5, ph, pw) float32 = [RGB, drop mask, streak].

        Reuses (and fills) the per-frame feature and per-pair flow caches of ``stream``.
        """
        backend = self._require_backend()
        with self._lock:
            self._ensure_caches(stream, window)
            lqs = torch.stack([s.tiles for s in window], dim=1)  # (n_tiles, t, 3, ph, pw)
            feats = torch.stack([s.features for s in window], dim=1)  # type: ignore[misc]
            pairs = list(itertools.pairwise(window))
            flows_backward = torch.stack([stream.flows[(a.frame_id, b.frame_id)] for a, b in pairs], dim=1)
            flows_forward = torch.stack([stream.flows[(b.frame_id, a.frame_id)] for a, b in pairs], dim=1)
            parts = _in_chunks(backend.window, self.config.tile_batch, lqs, feats, flows_backward, flows_forward)
            return torch.cat(parts)  # type: ignore[arg-type]

    def restore_window(
        self, stream: Stream, window: Sequence[FrameSlot], target: FrameSlot, reset_reason: str | None
    ) -> FrameResult:
        """Restore ``target`` from the T-frame ``window`` (slots of ``stream``); called by :meth:`Stream.push`.

        ``inference_ms`` covers the network (including per-frame caches filled now) and
        mapping the tiles back to an image at the input size.
        """
        geometry = stream.geometry
        if geometry is None:
            raise EngineError("restore_window called on a stream without frames")
        start = time.perf_counter()
        maps = geometry.from_tiles(self.run_window(stream, window))  # (h, w, 5)
        valid = bool(np.isfinite(maps).all())
        if not valid:
            bad = ~np.isfinite(maps)
            fallback = np.concatenate(
                [target.frame.astype(np.float32) / 255.0, np.zeros((*target.frame.shape[:2], 2), np.float32)], axis=2
            )
            maps = np.where(bad, fallback, maps)
            LOGGER.warning(
                "stream %s: the network produced NaN/Inf at stamp %d; those pixels show the input",
                stream.name,
                target.stamp_ns,
            )
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        assert self.selection is not None
        return FrameResult(
            stamp_ns=target.stamp_ns,
            image=to_uint8(maps[..., :3]),
            drop_mask=np.ascontiguousarray(np.clip(maps[..., 3], 0.0, 1.0)),
            streak_map=np.ascontiguousarray(maps[..., 4]),
            inference_ms=elapsed_ms,
            window_frames=len({s.frame_id for s in window}),
            reset_reason=reset_reason,
            backend=self.selection.backend,
            precision=self.selection.precision,
            valid=valid,
        )
