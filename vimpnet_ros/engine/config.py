"""Engine configuration: one validated, immutable record shared by all streams.

Validation happens in the constructor so a bad ROS parameter or CLI flag fails
at startup with a message naming the field, not minutes later inside a backend.
Nothing here touches files or devices; choices that depend on the machine
(``auto`` backend/precision/device) are resolved by :mod:`vimpnet_ros.engine.backends`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

from vimpnet_ros.engine.backends.registry import ALL_PRECISIONS, REGISTRY
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.model.config import MAX_STAGE1_PASSES as MAX_STAGE1_PASSES  # the node's range (engine/__init__.py)
from vimpnet_ros.model.config import VimpNetConfig, check_stage1_passes, get_config

#: ``auto`` and every registered backend (engine/backends/registry.py).
BACKENDS: tuple[str, ...] = ("auto", *REGISTRY)
PRECISIONS: tuple[str, ...] = ("auto", *ALL_PRECISIONS)
OUTPUT_FRAMES: tuple[str, ...] = ("latest", "center")
MIN_WINDOW, MAX_WINDOW = 3, 9
#: What happens to frames over ``max_inference_pixels``: resized to the budget, or tiled.
OVERSIZE_POLICIES: tuple[str, ...] = ("resize", "tile")
#: Where a frame larger than the weights' scale is restored: at that scale (the model's ``working_pixels``, aspect
#: kept, the change mapped back onto the frame), or at its own size.
WORKING_SCALES: tuple[str, ...] = ("weights", "native")
#: How the change made at a smaller working size is enlarged onto the frame: by a guided filter that follows the
#: frame's own edges (engine/geometry.py, :func:`~vimpnet_ros.engine.geometry.guided_enlarge`), or bilinear.
CHANGE_UPSAMPLINGS: tuple[str, ...] = ("guided", "bilinear")
#: Tile side and overlap used when the engine tiles on its own (oversize frames, after an out-of-memory error).
FALLBACK_TILE_SIZE, FALLBACK_TILE_OVERLAP = 256, 32
#: What a device name may be (see :func:`parse_device`).
DEVICE_SYNTAX = "auto, cpu, cuda or cuda:N (N a GPU index)"
#: Tiles smaller than this leave too little context for the 7x7 soft split at quarter resolution.
MIN_TILE_SIZE = 32
#: Default weight of the inpainting inside the predicted drops (``drop_fill``; engine/drop_fill.py).
DROP_FILL_BLEND = 0.5
#: Default number of earlier restored frames a drop is filled from (``drop_fill_frames``; engine/drop_history.py),
#: and the most a stream may keep.
DROP_FILL_FRAMES, MAX_DROP_FILL_FRAMES = 8, 32
#: Layers need height and width to be multiples of this (two stride-2 stages).
SIZE_MULTIPLE = 4
#: Stage-1 passes when ``stage1_passes`` is 0 (auto), by the engine's device kind, for models whose frames without
#: streaks pass stage 1 whole (``stage1_presence``, as the default model): a second pass removes more of heavy rain
#: (docs/training.md, "Two stage-1 passes") for a feature extraction and a reconstruction more, which both a GPU and
#: a CPU have time for within the latency target (docs/benchmarks.md). Other models make one pass (the published
#: network; a model without the rule would change clean frames again).
AUTO_STAGE1_PASSES: dict[str, int] = {"cuda": 2, "cpu": 2}
#: Stage-1 passes under auto for frames restored at another size than their own (a camera frame at the weights'
#: scale): the change is enlarged back to the frame, and a second pass's share of it darkens the pixels between the
#: streaks there (a 1280x720 downpour -1.0 dB, photographs -0.4 dB with a frame more made worse; docs/training.md,
#: "Two stage-1 passes").
RESIZED_STAGE1_PASSES = 1


def fit_pixels(width: int, height: int, max_pixels: int, min_side: int = 1) -> tuple[int, int]:
    """The largest (width, height) of the same aspect with at most ``max_pixels`` pixels, each side at least
    ``min_side`` (unchanged when it fits; 0 = no cap): the engine's working size and the decoder's budget."""
    if max_pixels <= 0 or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(min_side, int(width * scale)), max(min_side, int(height * scale))


def default_engine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vimpnet_ros/engines`` (``~/.cache/...`` when unset): where compiled programs are kept."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "vimpnet_ros" / "engines"


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"engine {name} must be one of {', '.join(choices)}; got {value!r}")


def resolve_stage1_passes(passes: int, device: str, model: VimpNetConfig, resized: bool = False) -> int:
    """``passes``, or for 0 (auto) what :data:`AUTO_STAGE1_PASSES` gives ``device`` (``cpu``, ``cuda:N``) for a
    ``model`` with ``stage1_presence`` (:data:`RESIZED_STAGE1_PASSES` for frames restored at another size than
    their own, ``resized``), and 1 for one without."""
    kind = parse_device(device)[0]
    if kind == "auto":
        raise ValueError("resolve_stage1_passes needs a resolved device (cpu or cuda[:N]), not auto")
    if passes:
        return passes
    if model.stage1_presence is None:
        return 1
    return RESIZED_STAGE1_PASSES if resized else AUTO_STAGE1_PASSES[kind]


def parse_device(device: object) -> tuple[str, int]:
    """``auto`` -> ("auto", 0), ``cpu`` -> ("cpu", 0), ``cuda`` -> ("cuda", 0), ``cuda:N`` -> ("cuda", N).

    The one definition of the device syntax (the node's parameter check uses it too).
    """
    if isinstance(device, str):
        if device in ("auto", "cpu", "cuda"):
            return device, 0
        prefix, _, index = device.partition(":")
        if prefix == "cuda" and index.isdigit():
            return "cuda", int(index)
    raise ConfigError(f"engine device must be {DEVICE_SYNTAX}; got {device!r}")


@dataclass(frozen=True)
class EngineConfig:
    """Everything that decides how frames are restored; see DEVELOPERS.md "Contract: streaming engine".

    ``inference_size`` is ``(width, height)`` like OpenCV and ROS image sizes;
    ``tile_size`` 0 runs the whole (padded) frame at once.
    """

    model: str = "vimpnet_lite_gated"
    checkpoint: str | Path | None = None
    backend: str = "auto"
    precision: str = "auto"
    device: str = "auto"
    window_size: int = 5
    output_frame: str = "latest"
    inference_size: tuple[int, int] | None = None
    #: Without ``inference_size``: ``weights`` restores a frame larger than the weights' scale (the model's
    #: ``working_pixels``) at that scale, ``native`` at its own size (engine/geometry.py).
    working_scale: str = "weights"
    #: A frame restored at a smaller working size gets the network's change enlarged ``guided`` (following its own
    #: edges: a streak or a drop's rim at the camera's resolution) or ``bilinear`` (engine/geometry.py).
    change_upsampling: str = "guided"
    tile_size: int = 0
    tile_overlap: int = 32
    #: Frames with more pixels (after ``inference_size``) are resized to this budget or tiled
    #: (``oversize_policy``), so no frame costs memory in proportion to its size; 0 = no limit.
    max_inference_pixels: int = 0
    oversize_policy: str = "resize"
    max_gap_s: float = 1.0
    engine_cache_dir: str | Path | None = None
    #: How many tiles go through the network together (memory vs. throughput).
    tile_batch: int = 4
    #: CPU threads for torch and ONNX Runtime (0 = library default). On a CPU shared with other
    #: processes 1 thread can beat 2: OpenMP barriers stall when a worker thread is descheduled.
    cpu_threads: int = 0
    #: Static-shape backends (compiled, ONNX Runtime) build a new shape profile in a child process
    #: while eager PyTorch serves its frames, instead of holding the first frame until the build ends.
    background_build: bool = True
    #: The compiled backend on CUDA replays each program as a CUDA graph (one launch per step call
    #: instead of thousands); off = plain AOTInductor calls (for comparison or a driver that misbehaves).
    cuda_graphs: bool = True
    #: On CPU, keep freed tensor memory in the process (glibc malloc tuning, process-wide; see
    #: ``engine/allocator.py``): large frames run ~20 % faster, the resident size stays at its peak.
    reuse_cpu_memory: bool = True
    #: Inside the predicted drops, the weight of an inpainting from the drop's surroundings against the
    #: network's restoration (``engine/drop_fill.py``); 0 = the network's restoration alone.
    drop_fill: float = DROP_FILL_BLEND
    #: How many earlier restored frames of a stream the drops are also filled from, where they saw the scene the
    #: drops hide (``engine/drop_history.py``; at the ``drop_fill`` weight); 0 = from the frame's own pixels only.
    drop_fill_frames: int = DROP_FILL_FRAMES
    #: How many times stage 1 runs on each window (``VimpNet``'s module docstring); 0 = by device and model
    #: (:data:`AUTO_STAGE1_PASSES`).
    stage1_passes: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"engine model must be a config name such as 'vimpnet_lite_gated'; got {self.model!r}")
        get_config(self.model)  # an unknown name fails here, listing the known ones
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("output_frame", self.output_frame, OUTPUT_FRAMES)
        _check_choice("oversize_policy", self.oversize_policy, OVERSIZE_POLICIES)
        _check_choice("working_scale", self.working_scale, WORKING_SCALES)
        _check_choice("change_upsampling", self.change_upsampling, CHANGE_UPSAMPLINGS)
        parse_device(self.device)
        self._check_window()
        self._check_inference_size()
        self._check_tiling()
        if isinstance(self.max_gap_s, bool) or not isinstance(self.max_gap_s, int | float) or not self.max_gap_s > 0:
            raise ConfigError(f"engine max_gap_s must be a positive number of seconds; got {self.max_gap_s!r}")
        fill = self.drop_fill
        if isinstance(fill, bool) or not isinstance(fill, int | float) or not 0.0 <= fill <= 1.0:
            raise ConfigError(f"engine drop_fill must be a number in [0, 1] (0 = off); got {fill!r}")
        frames = self.drop_fill_frames
        if isinstance(frames, bool) or not isinstance(frames, int) or not 0 <= frames <= MAX_DROP_FILL_FRAMES:
            raise ConfigError(
                f"engine drop_fill_frames must be an integer in 0..{MAX_DROP_FILL_FRAMES} (0 = off); got {frames!r}"
            )
        check_stage1_passes(self.stage1_passes, "engine ", auto=True)
        for name in ("background_build", "reuse_cpu_memory", "cuda_graphs"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"engine {name} must be true or false; got {getattr(self, name)!r}")
        self._check_combination()

    def _check_window(self) -> None:
        size = self.window_size
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_WINDOW <= size <= MAX_WINDOW or size % 2 == 0:
            raise ConfigError(f"engine window_size must be an odd integer in {MIN_WINDOW}..{MAX_WINDOW}; got {size!r}")

    def _check_inference_size(self) -> None:
        size = self.inference_size
        if size is None:
            return
        if isinstance(size, list):
            object.__setattr__(self, "inference_size", size := tuple(size))
        valid = (
            isinstance(size, tuple)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= SIZE_MULTIPLE for v in size)
        )
        if not valid:
            raise ConfigError(
                f"engine inference_size must be None or (width, height) with both >= {SIZE_MULTIPLE}; got {size!r}"
            )

    def _check_tiling(self) -> None:
        for name in ("tile_size", "tile_overlap", "tile_batch", "cpu_threads", "max_inference_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"engine {name} must be a non-negative integer; got {value!r}")
        if self.tile_batch < 1:
            raise ConfigError(f"engine tile_batch must be at least 1; got {self.tile_batch}")
        if self.tile_size == 0:
            return
        if self.tile_size < MIN_TILE_SIZE or self.tile_size % SIZE_MULTIPLE:
            raise ConfigError(
                f"engine tile_size must be 0 (whole frame) or a multiple of {SIZE_MULTIPLE} that is at least "
                f"{MIN_TILE_SIZE}; got {self.tile_size}"
            )
        if 2 * self.tile_overlap >= self.tile_size:
            raise ConfigError(
                f"engine tile_overlap ({self.tile_overlap}) must be less than half of tile_size ({self.tile_size})"
            )

    def _check_combination(self) -> None:
        """Reject pairs that can never work, whatever the machine (auto values are resolved later)."""
        on_cpu = self.device == "cpu"
        if self.backend != "auto":
            spec = REGISTRY[self.backend]
            if on_cpu and "cpu" not in spec.devices:
                raise ConfigError(f"engine backend '{spec.name}' needs a CUDA device; set device to auto or cuda")
            if self.precision != "auto" and self.precision not in spec.precisions:
                runs = " and ".join(spec.precisions)
                raise ConfigError(f"engine backend '{spec.name}' runs {runs} only; got precision {self.precision!r} "
                                  f"(use {' or '.join(spec.precisions)} or auto)")  # fmt: skip
        if on_cpu and self.precision == "fp16":
            raise ConfigError("engine precision 'fp16' needs a CUDA device; on CPU use bf16 or fp32")

    def replace(self, **changes: object) -> EngineConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def cache_dir(self) -> Path:
        """The directory of compiled programs (TensorRT, AOTInductor, ONNX) this config points at."""
        return Path(self.engine_cache_dir).expanduser() if self.engine_cache_dir else default_engine_cache_dir()

    @property
    def delay_frames(self) -> int:
        """How many pushes a result lags behind the newest frame (0 for latest, T//2 for center)."""
        return 0 if self.output_frame == "latest" else self.window_size // 2

    @property
    def output_index(self) -> int:
        """Index of the described frame inside the T-frame window."""
        return self.window_size - 1 if self.output_frame == "latest" else self.window_size // 2
