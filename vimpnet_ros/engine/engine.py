"""The streaming inference engine: one model and backend shared by any number of camera streams.

``InferenceEngine(config)`` only validates; :meth:`InferenceEngine.load` loads the
weights (or takes an in-memory model), picks the backend and builds it. Streams
(:meth:`InferenceEngine.open_stream`) are passive ring buffers with feature caches; the
engine puts frames in (:meth:`InferenceEngine.admit`, :meth:`~InferenceEngine.push`,
:meth:`~InferenceEngine.flush`), and :meth:`InferenceEngine.restore` runs the network for one
or several streams' frames in one batch (cameras of the same size share each step call) under
a lock, so streams driven from different threads never interleave model calls.

Per restored frame, everything after the upload stays on the engine's device:
tiles are blended back, the NaN/Inf check and the quantisation of the image, the drop
mask and the streak map run there, and only those planes are copied back.

The engine also owns its degradation policy (:meth:`InferenceEngine.recover`): after a
CUDA out-of-memory error it reloads with tiling, then on the CPU, and its streams keep
their buffered frames across the reload.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from vimpnet_ros.engine.allocator import keep_freed_memory
from vimpnet_ros.engine.backends.base import Backend
from vimpnet_ros.engine.backends.registry import backend_spec
from vimpnet_ros.engine.backends.select import Selection, select_backend
from vimpnet_ros.engine.config import FALLBACK_TILE_OVERLAP, FALLBACK_TILE_SIZE, EngineConfig, resolve_stage1_passes
from vimpnet_ros.engine.drop_fill import fill_drops
from vimpnet_ros.engine.geometry import FrameGeometry, Uploader, quantize, validate_frame, working_size
from vimpnet_ros.engine.hardware import Environment
from vimpnet_ros.engine.result import PLANE_SCALE, FrameResult
from vimpnet_ros.engine.stream import FrameSlot, Stream
from vimpnet_ros.errors import CheckpointError, ConfigError, EngineError, InputError
from vimpnet_ros.model.config import get_config

if TYPE_CHECKING:
    from vimpnet_ros.model import VimpNet

LOGGER = logging.getLogger(__name__)
#: One restore request: a stream and the buffer index of the frame to describe (what ``Stream.admit`` returned).
Job = tuple[Stream, int]


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError`` and the CUDA/CPU allocators' out-of-memory RuntimeErrors."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _in_chunks(step: Callable[..., Any], batch: int, *inputs: Tensor) -> Any:
    """Run ``step`` over slices of at most ``batch`` rows of every input; outputs concatenated along dim 0."""
    total = inputs[0].shape[0]
    parts = [step(*(x[start : start + batch] for x in inputs)) for start in range(0, total, batch)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(group) for group in zip(*parts, strict=True))
    return torch.cat(parts)


class _Planes:
    """One result's planes on their way back from the device (copies issued, not yet waited for)."""

    def __init__(self, output: Tensor, maps: Tensor, white_level: int, float_streak: bool) -> None:
        """``output``: the network's tiles at the working size; ``maps``: them composed at the frame's size.

        Finiteness is checked on ``output``: composing blends, resizes and adds the finite frame, so finite
        tiles make finite maps, and the check costs the working size, not the frame's.
        """
        integer = torch.uint8 if white_level <= PLANE_SCALE else torch.int32
        self.finite = torch.isfinite(output).all().to("cpu", non_blocking=True)
        image = quantize(maps[:3], white_level, integer).permute(1, 2, 0).contiguous()
        self.image = image.to("cpu", non_blocking=True)
        self.mask = quantize(maps[3], PLANE_SCALE, torch.uint8).to("cpu", non_blocking=True)
        self.streak = quantize(maps[4], PLANE_SCALE, torch.uint8).to("cpu", non_blocking=True)
        self.streak_mean = maps[4].nan_to_num(0.0).clamp_min(0.0).mean().to("cpu", non_blocking=True)
        self.streak_float = maps[4].to("cpu", non_blocking=True) if float_streak else None


class InferenceEngine:
    """Restores frames from many streams with one model; see DEVELOPERS.md "Contract: streaming engine"."""

    def __init__(self, config: EngineConfig, environment: Environment | None = None) -> None:
        if not isinstance(config, EngineConfig):
            raise ConfigError(f"InferenceEngine needs an EngineConfig; got {type(config).__name__}")
        self.config: EngineConfig = config
        self._environment = environment
        self._lock = threading.RLock()
        self._geometries: dict[tuple[int, int], FrameGeometry] = {}
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()
        self._uploader = Uploader(torch.device("cpu"))
        self.backend: Backend | None = None
        self.selection: Selection | None = None
        self.model: VimpNet | None = None
        #: Stage-1 passes for frames restored at their own size (False) and at another (True), once loaded.
        self._stage1_passes: dict[bool, int] = {}
        #: How many times :meth:`recover` reloaded the model (diagnostics).
        self.reloads = 0

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
    def stage1_passes(self) -> int:
        """Stage-1 passes per window run on frames restored at their own size (auto resolved); the configured value
        (0 = auto) before loading. :meth:`stage1_passes_for` gives any frame size's."""
        return self._stage1_passes[False] if self.model is not None else self.config.stage1_passes

    def stage1_passes_for(self, width: int, height: int) -> int:
        """Stage-1 passes per window run on (width, height) frames (auto resolved: fewer when they are restored at
        the weights' scale, ``RESIZED_STAGE1_PASSES``); the configured value before loading."""
        if self.model is None:
            return self.config.stage1_passes
        return self._passes_at(self.geometry_for(height, width))

    def _passes_at(self, geometry: FrameGeometry) -> int:
        """Stage-1 passes for frames planned as ``geometry`` (loaded engines)."""
        return self._stage1_passes[geometry.resized]

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
            for note in selection.info:
                LOGGER.info("%s", note)
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
            self._stage1_passes = {
                resized: resolve_stage1_passes(self.config.stage1_passes, selection.device, model.config, resized)
                for resized in (False, True)
            }
            model.set_stage1_passes(self._stage1_passes[False])
            device = torch.device(selection.device)
            model.to(device)
            if self.backend is not None:
                self.backend.close()
            self.model = model
            self.selection = selection
            self._uploader = Uploader(device)
            self._geometries.clear()
            self.backend = self._build_backend(model, selection, environment)
            for stream in list(self._streams):
                self._retile(stream)
            LOGGER.info("engine ready: %s, model %s (stage 1 x%d), window %d (%s)", self.backend.describe(),
                        model.config.name, model.stage1_passes, self.config.window_size,
                        self.config.output_frame)  # fmt: skip
            return self

    def _load_model(self) -> VimpNet:
        """The model from ``config.checkpoint`` or the shipped weights, as a CheckpointError naming the real cause."""
        from vimpnet_ros.model import checkpoint as checkpoint_io

        if self.config.checkpoint:
            return checkpoint_io.load_model(Path(self.config.checkpoint).expanduser(), self.config.model)
        path = checkpoint_io.shipped_checkpoint(self.config.model)
        if not path.is_file():
            raise CheckpointError(
                f"no weights are shipped for model {self.config.model!r} ({path} is missing); train them "
                "(vimpnet-ros train) or set checkpoint to a .pth file"
            )
        limit = checkpoint_io.shipped_max_window(self.config.model)
        if limit is not None and self.config.window_size > limit:
            record = checkpoint_io.shipped_record(self.config.model).name
            raise ConfigError(
                f"window_size {self.config.window_size} is larger than the shipped {self.config.model!r} weights "
                f"restore well with: at most {limit} (max_window in {record}; "
                'beyond it they degrade every frame, see docs/training.md, "The node\'s window"); set window_size '
                f"<= {limit}, or checkpoint to weights trained on longer clips (config vimpnet_lite_gated_long)"
            )
        return checkpoint_io.load_model(path, self.config.model)

    def _build_backend(self, model: VimpNet, selection: Selection, environment: Environment) -> Backend:
        """The selected backend, built by its registry factory (engine/backends/registry.py)."""
        from vimpnet_ros.engine.steps import StepModules

        steps = StepModules(model, self.config.output_index)
        spec = backend_spec(selection.backend)
        return spec.create(steps, torch.device(selection.device), selection.precision, self.config, environment)

    def require_loaded(self) -> Backend:
        """The backend, or an EngineError saying to load first."""
        if self.backend is None:
            raise EngineError("the engine is not loaded; call InferenceEngine.load() before pushing frames")
        return self.backend

    # -- streams and frames ------------------------------------------------------------------------

    def open_stream(self, name: str = "default") -> Stream:
        """A new ring buffer for one camera; streams share this engine's model and backend."""
        stream = Stream(name, self.config.window_size, self.config.output_index, self.config.drop_fill_frames)
        self._streams.add(stream)
        return stream

    def _retile(self, stream: Stream) -> None:
        """Re-tile a stream's buffered frames for the current config and device (after a reload); keeps them all."""
        slots = stream.slots()[-self.config.window_size :]
        geometry = self.geometry_for(*slots[0].frame.shape[:2]) if slots else None
        for slot in slots:
            assert geometry is not None
            slot.tiles = geometry.to_tiles(self.upload(slot.frame), slot.white_level)
        stream.relayout(self.config.window_size, self.config.output_index, geometry, slots)

    def admit(self, stream: Stream, frame: np.ndarray, stamp_ns: int, meta: Any = None,
              white_level: int | None = None) -> int | None:  # fmt: skip
        """Buffer a frame in ``stream`` (checks, resets, upload, tiling); return the buffer index to describe now.

        None while ``center`` mode is still filling its first half window. :meth:`restore`
        takes ``(stream, index)`` pairs, so several streams' frames share one batch.
        """
        frame, level = validate_frame(frame, white_level)
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int | np.integer):
            raise InputError(f"stamp_ns must be an integer number of nanoseconds; got {stamp_ns!r}")
        stamp_ns = int(stamp_ns)
        self.require_loaded()
        reason = stream.continuity_break(frame, stamp_ns, self.config.max_gap_s)
        if reason is not None:
            stream.reset(reason)
        geometry = stream.geometry or self.geometry_for(frame.shape[0], frame.shape[1])
        index = stream.append(frame, stamp_ns, level, geometry.to_tiles(self.upload(frame), level), meta, geometry)
        target = index - self.config.delay_frames
        return target if target >= 0 else None

    def push(self, stream: Stream, frame: np.ndarray, stamp_ns: int, restore: bool = True, meta: Any = None,
             white_level: int | None = None, float_streak: bool = False) -> FrameResult | None:  # fmt: skip
        """Buffer an (h, w, 3) RGB frame in ``stream``; return the result for the configured output frame.

        ``meta`` travels with the frame and comes back on the result that describes it
        (``FrameResult.meta``). ``white_level`` is the full-scale value of a uint16 frame
        (e.g. 4095 for 12 bits). ``restore=False`` only keeps the frame as temporal context
        (for latest-wins skipping) and returns None, as does ``center`` mode during its first
        T//2 pushes. ``float_streak`` adds the raw streak intensity to the result.
        """
        target = self.admit(stream, frame, stamp_ns, meta, white_level)
        if not restore or target is None:
            return None
        return self.restore([(stream, target)], float_streak)[0]

    def flush(self, stream: Stream, float_streak: bool = False) -> list[FrameResult]:
        """Results for the frames ``center`` mode has not described yet (end of stream), right side reflected.

        Returns an empty list in ``latest`` mode or when nothing is pending. The buffer is
        kept, so a stream may continue after a flush (then those frames are described
        again when the delay catches up with them).
        """
        delay, count = self.config.delay_frames, len(stream)
        if delay == 0 or count == 0:
            return []
        return [self.restore([(stream, target)], float_streak)[0] for target in range(max(0, count - delay), count)]

    def upload(self, frame: np.ndarray) -> Tensor:
        """(h, w, 3) integer frame -> the engine's device (once per frame; pinned and asynchronous on CUDA)."""
        return self._uploader.upload(frame)

    @property
    def working_pixels(self) -> int | None:
        """The loaded model's scale (``VimpNetConfig.working_pixels``); the configured model's before loading."""
        return (self.model.config if self.model is not None else get_config(self.config.model)).working_pixels

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the network restores (width, height) frames at; arithmetic only, for any declared size."""
        work_h, work_w = working_size(height, width, self.config, self.working_pixels)
        return work_w, work_h

    def working_sizes(self) -> str:
        """``64x48 at 64x48, 1280x720 at 269x151``: each frame size planned so far and the size it is restored at
        (diagnostics, reports); ``none yet`` before the first frame."""
        sizes = sorted((w, h, g.work_size[1], g.work_size[0]) for (h, w), g in list(self._geometries.items()))
        return ", ".join(f"{w}x{h} at {ww}x{wh}{self._passes_note(w, h)}" for w, h, ww, wh in sizes) or "none yet"

    def _passes_note(self, width: int, height: int) -> str:
        """`` (stage 1 xN)`` where (width, height) frames run another pass count than :attr:`stage1_passes`."""
        passes = self.stage1_passes_for(width, height)
        return f" (stage 1 x{passes})" if passes != self.stage1_passes else ""

    def _use_stage1_passes(self, passes: int) -> None:
        """Run the window step with ``passes`` stage-1 passes from now on (under the lock; backends key their
        programs on the model's rules, so each count has its own)."""
        assert self.model is not None
        if self.model.stage1_passes != passes:
            self.model.set_stage1_passes(passes)

    def geometry_for(self, height: int, width: int) -> FrameGeometry:
        """Tiling/padding plan for (height, width) frames, computed once per size."""
        key = (height, width)
        if key not in self._geometries:
            self._geometries[key] = FrameGeometry.plan(height, width, self.config, self.working_pixels)
        return self._geometries[key]

    def batch_sizes(self, width: int, height: int, streams: int = 1) -> list[int]:
        """The step batch sizes ``streams`` cameras of (width, height) produce (static-shape programs are per size)."""
        rows = self.geometry_for(height, width).num_tiles * streams
        sizes = {min(self.config.tile_batch, rows)}
        if rows % self.config.tile_batch:
            sizes.add(rows % self.config.tile_batch)
        return sorted(sizes)

    def prepare(self, width: int, height: int, streams: int = 1) -> None:
        """Build the backend's programs for ``streams`` cameras of (width, height) now instead of at the first frame."""
        backend = self.require_loaded()
        ph, pw = self.geometry_for(height, width).padded_shape
        with self._lock:
            self._use_stage1_passes(self.stage1_passes_for(width, height))
            backend.prepare_profiles(
                [(batch, self.config.window_size, ph, pw) for batch in self.batch_sizes(width, height, streams)]
            )

    def building(self) -> list[str]:
        """Shape profiles the backend builds in the background (their frames run eagerly meanwhile)."""
        return self.backend.building() if self.backend is not None else []

    def close(self) -> None:
        """Stop background builds; the engine keeps its model and can still restore frames."""
        if self.backend is not None:
            self.backend.close()

    # -- restoration -------------------------------------------------------------------------------

    def run_network(self, jobs: Sequence[Job]) -> list[Tensor]:
        """Network outputs for each job: (n_tiles, 5, ph, pw) float32 = [RGB, drop mask, streak], on the device.

        Jobs whose tiles have the same shape share every step call (frame, flow, window),
        batched up to ``tile_batch`` rows; missing features and flows are computed once and
        kept in each stream's cache.
        """
        backend = self.require_loaded()
        batch = self.config.tile_batch
        windows = [stream.window_for(target) for stream, target in jobs]
        outputs: list[Tensor | None] = [None] * len(jobs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (window, (stream, _)) in enumerate(zip(windows, jobs, strict=True)):
            assert stream.geometry is not None  # a stream with a window to restore has frames, so a plan
            groups.setdefault((self._passes_at(stream.geometry), *window[0].tiles.shape[1:]), []).append(index)
        with self._lock:
            for (passes, *_), members in groups.items():
                self._use_stage1_passes(passes)
                streams = [jobs[i][0] for i in members]
                self._fill_features(backend, batch, streams, [windows[i] for i in members])
                self._fill_flows(backend, batch, streams, [windows[i] for i in members])
                inputs = [stream.cache.window_inputs(windows[i]) for stream, i in zip(streams, members, strict=True)]
                joined = [torch.cat(parts) for parts in zip(*inputs, strict=True)]
                result = _in_chunks(backend.window, batch, *joined)
                for i, part in zip(members, result.split([x[0].shape[0] for x in inputs]), strict=True):
                    outputs[i] = part
        return [out for out in outputs if out is not None]

    @staticmethod
    def _fill_features(backend: Backend, batch: int, streams: list[Stream], windows: list[list[FrameSlot]]) -> None:
        todo: dict[tuple[int, int], tuple[Stream, FrameSlot]] = {}
        for stream, window in zip(streams, windows, strict=True):
            for slot in stream.cache.missing_features(window):
                todo[(id(stream), slot.frame_id)] = (stream, slot)
        if not todo:
            return
        pending = list(todo.values())
        features, small = _in_chunks(backend.frame, batch, torch.cat([slot.tiles for _, slot in pending]))
        counts = [slot.tiles.shape[0] for _, slot in pending]
        for (stream, slot), f, s in zip(pending, features.split(counts), small.split(counts), strict=True):
            stream.cache.store_features(slot, f, s)

    @staticmethod
    def _fill_flows(backend: Backend, batch: int, streams: list[Stream], windows: list[list[FrameSlot]]) -> None:
        todo: dict[tuple[int, int, int], tuple[Stream, FrameSlot, FrameSlot]] = {}
        for stream, window in zip(streams, windows, strict=True):
            for first, second in stream.cache.missing_pairs(window):
                todo[(id(stream), first.frame_id, second.frame_id)] = (stream, first, second)
        if not todo:
            return
        pending = list(todo.values())
        small_a = torch.cat([stream.cache.small(a) for stream, a, _ in pending])
        small_b = torch.cat([stream.cache.small(b) for stream, _, b in pending])
        forward, backward = _in_chunks(backend.flow, batch, small_a, small_b)
        counts = [a.tiles.shape[0] for _, a, _ in pending]
        for (stream, a, b), fwd, bwd in zip(pending, forward.split(counts), backward.split(counts), strict=True):
            stream.cache.store_flows(a, b, fwd, bwd)

    def restore(self, jobs: Sequence[Job], float_streak: bool = False) -> list[FrameResult]:
        """Restore the frames of ``jobs`` (indices from :meth:`admit`) in one batch; one result per job, in order.

        ``inference_ms`` of each result is the wall time of the whole batch (the network,
        the per-frame caches filled now, composing and copying the planes back, and filling the drops).
        """
        start = time.perf_counter()
        outputs = self.run_network(jobs)
        pending = []
        for (stream, target), output in zip(jobs, outputs, strict=True):
            slot = stream.slot(target)
            assert stream.geometry is not None
            geometry = stream.geometry
            frame = self.upload(slot.frame) if geometry.resized else None  # the change goes back onto its pixels
            maps = geometry.compose(output, slot.tiles, frame, slot.white_level)  # (5, h, w) on the device
            pending.append((stream, target, slot, _Planes(output, maps, slot.white_level, float_streak)))
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        results = [self._result(stream, target, slot, planes) for stream, target, slot, planes in pending]
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        return [dataclasses.replace(result, inference_ms=elapsed_ms) for result in results]

    def _result(self, stream: Stream, target: int, slot: FrameSlot, planes: _Planes) -> FrameResult:
        """The finished result of one job (``inference_ms`` still 0): planes waited for, drops filled, NaN caught."""
        assert self.selection is not None
        window = stream.window_for(target)
        valid = bool(planes.finite)
        image, mask, streak = planes.image.numpy(), planes.mask.numpy(), planes.streak.numpy()
        streak_float = planes.streak_float.numpy() if planes.streak_float is not None else None
        if slot.frame.dtype == np.uint16:
            image = image.astype(np.uint16)
        streak_intensity = float(planes.streak_mean)
        if not valid:
            LOGGER.warning("stream %s: the network produced NaN/Inf at stamp %d; the input is returned unchanged",
                           stream.name, slot.stamp_ns)  # fmt: skip
            image, mask, streak = slot.frame, np.zeros_like(mask), np.zeros_like(streak)
            streak_float = np.zeros_like(streak_float) if streak_float is not None else None
            streak_intensity = 0.0
        else:
            image = fill_drops(image, mask, self.config.drop_fill, in_place=True)  # the result owns these planes
            image = stream.drop_history.fill(image, mask, self.config.drop_fill, slot.white_level)
        return FrameResult(
            stamp_ns=slot.stamp_ns,
            image=image,
            drop_mask=mask,
            streak_map=streak,
            streak_intensity=streak_intensity,
            inference_ms=0.0,
            window_frames=len({s.frame_id for s in window}),
            reset_reason=stream.take_reset_reason(),
            backend=self.selection.backend,
            precision=self.selection.precision,
            valid=valid,
            white_level=slot.white_level,
            streak_float=streak_float,
            meta=slot.meta,
        )

    # -- degradation -------------------------------------------------------------------------------

    def recover(self, error: BaseException) -> str | None:
        """After an out-of-memory ``error``: reload with 256 px tiles, or (already tiled) on the CPU.

        Returns what was done, for the caller's log, or None when there is nothing left to try
        (not an out-of-memory error, or already tiled on the CPU). Streams keep their buffered
        frames (re-tiled for the new config); their feature caches start over.
        """
        if not is_out_of_memory(error) or self.model is None:
            return None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.config.tile_size == 0:
            config, plan = (
                self.config.replace(tile_size=FALLBACK_TILE_SIZE, tile_overlap=FALLBACK_TILE_OVERLAP),
                "256 px tiles",
            )
        elif self.device.type == "cuda":
            plan, config = "the CPU", self.config.replace(device="cpu", backend="torch", precision="fp32")
        else:
            return None
        with self._lock:
            self.config = config
            self.load(self.model)
            self.reloads += 1
        return f"reloaded the model with {plan} ({self.backend.describe() if self.backend else 'no backend'})"
