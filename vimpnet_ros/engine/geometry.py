"""Frame geometry: resize to the working size, split into overlapping tiles, pad to a multiple of 4, and back.

The working size (:func:`working_size`) is ``inference_size`` when one is set; else a frame larger than the
weights' scale (the model's ``working_pixels``, under ``working_scale: weights``) is resized to it, aspect
kept; then a frame over ``max_inference_pixels`` is resized to that budget or tiled (``oversize_policy``).

A frame restored at a smaller working size gets back the network's change, enlarged, on its own pixels
(:meth:`FrameGeometry.compose`), not an enlarged image: what the network leaves alone keeps its detail. The change
is enlarged by a guided filter (:func:`guided_enlarge`, ``change_upsampling: guided``): at the working size a
streak is a pixel wide and a drop's rim a pixel's blur, and the filter puts the change back where the frame's own
edges are instead of smearing it over the pixels around them.

Camera frames have any size (641x359, 1920x1080) while the network needs sides that
are multiples of 4 and memory that grows with the area. A :class:`FrameGeometry`
is computed once per stream resolution and turns one HxWx3 uint8 frame into a
batch of equally sized tiles ``(n_tiles, 3, ph, pw)`` and the network's tile
outputs back into full-size maps. All tiles share one shape so they batch and so
TensorRT/ONNX programs are static per resolution.

Tile blending: each tile's weight ramps linearly from ~0 to 1 over ``tile_overlap``
pixels on every side that lies inside the frame (sides on the frame border keep
weight 1), and overlapping outputs are averaged with these weights. The weights are
continuous, so no seam appears where one tile ends.

Everything after the upload runs on the engine's device (normalise, pad, tile, blend,
resize back): on a GPU the frame is uploaded once, as uint8, through a reused pinned
buffer (:class:`Uploader`), and only the quantised planes come back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vimpnet_ros.engine.config import (
    FALLBACK_TILE_OVERLAP,
    FALLBACK_TILE_SIZE,
    SIZE_MULTIPLE,
    EngineConfig,
    fit_pixels,
)
from vimpnet_ros.errors import InputError

#: Frame dtypes the engine takes: 8-bit, or 16-bit with a white level (e.g. 4095 for a 12-bit camera).
FRAME_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
#: The guided enlargement's window radius, in working-size pixels, and its regulariser (on [0, 1] values: edges
#: of more than about 1 % contrast, 2.5 grey levels, are followed). Chosen on 1280x720 drives (docs/training.md,
#: "Camera-size frames: the change enlarged along the frame's edges").
GUIDE_RADIUS, GUIDE_EPS = 2, 1e-4


def validate_frame(frame: object, white_level: int | None = None) -> tuple[np.ndarray, int]:
    """Check an (h, w, 3) uint8 or uint16 RGB frame; return it C-contiguous with its white level.

    ``white_level`` is the value that means full scale: 255 for uint8 (the default), and for
    uint16 the camera's real range (4095 for 12 bits; default 65535), so a 12-bit image is
    normalised by 4095 and keeps all its levels.
    """
    if not isinstance(frame, np.ndarray):
        raise InputError(f"a frame must be a numpy array of shape (height, width, 3); got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"a frame must have shape (height, width, 3) with RGB channels; got {frame.shape}")
    if frame.dtype not in FRAME_DTYPES:
        raise InputError(f"a frame must be uint8 or uint16 RGB (convert float images first); got dtype {frame.dtype}")
    full_scale = int(np.iinfo(frame.dtype).max)
    level = full_scale if white_level is None else white_level
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or not 1 <= level <= full_scale:
        raise InputError(f"white_level must be an integer in 1..{full_scale} for {frame.dtype} frames; got {level!r}")
    return np.ascontiguousarray(frame), int(level)


class Uploader:
    """Host -> device copies of frames through one reused pinned buffer per shape (CUDA), or plain on CPU.

    The pinned buffer makes the copy asynchronous; an event recorded after each copy is
    waited on before the buffer is overwritten, so a push that returns before its copy
    finished never sees its pixels replaced.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pinned: dict[tuple[tuple[int, ...], torch.dtype], tuple[torch.Tensor, torch.cuda.Event]] = {}

    def upload(self, frame: np.ndarray) -> torch.Tensor:
        """(h, w, 3) uint8/uint16 numpy -> the same on the device (uint16 as int32: torch's uint16 is limited)."""
        if frame.dtype == np.uint16:
            frame = frame.astype(np.int32)
        elif not frame.flags.writeable:  # a view of a read-only message buffer: torch wants its own
            frame = frame.copy()
        host = torch.from_numpy(frame)
        if self.device.type != "cuda":
            return host
        key = (tuple(host.shape), host.dtype)
        if key not in self._pinned:
            self._pinned = {key: (torch.empty(host.shape, dtype=host.dtype).pin_memory(), torch.cuda.Event())}
        pinned, copied = self._pinned[key]
        copied.synchronize()
        pinned.copy_(host)
        on_device = pinned.to(self.device, non_blocking=True)
        copied.record()
        return on_device


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` shared pixels."""
    if tile <= 0 or length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D blend weight: 1 inside, rising over ``overlap`` pixels at the ends that touch another tile."""
    weight = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        rise = (np.arange(n, dtype=np.float32) + 0.5) / n
        if ramp_start:
            weight[:n] = np.minimum(weight[:n], rise)
        if ramp_end:
            weight[length - n :] = np.minimum(weight[length - n :], rise[::-1])
    return weight


def _box(values: torch.Tensor, radius: int) -> torch.Tensor:
    """(1, c, h, w) -> the mean over each pixel's (2r + 1)^2 window, edges replicated (same shape); a depthwise
    convolution, on a CPU several times faster than average pooling at stride 1."""
    side, channels = 2 * radius + 1, values.shape[1]
    kernel = torch.full((channels, 1, side, side), 1.0 / side**2, dtype=values.dtype, device=values.device)
    return F.conv2d(F.pad(values, (radius,) * 4, mode="replicate"), kernel, groups=channels)


def _enlarge(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(c, h, w) -> (c, H, W) bilinear, each plane on its own (on a CPU a 3-plane image takes a slower path)."""
    return F.interpolate(planes[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def guided_enlarge(
    guide: torch.Tensor, change: torch.Tensor, frame: torch.Tensor, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS
) -> torch.Tensor:
    """The change made at the working size, enlarged to ``frame``'s size along ``frame``'s own edges.

    guide (c, h, w): the network's input at the working size; change (c, h, w): its output minus that input;
    frame (c, H, W): the frame at its own size, on the same scale -> (c, H, W). The guided filter of He, Sun and
    Tang (TPAMI 2013, eqs. 5-8), per channel: in each window the change is fitted as ``a * guide + b``, the
    coefficients averaged over the windows holding a pixel, then, as in He and Sun's fast guided filter (2015),
    enlarged bilinearly and applied to the full-size frame: ``a * frame + b``. A change of zero stays zero
    everywhere, so a frame the network leaves alone comes back as it came.
    Written here rather than taken from OpenCV contrib (``cv2.ximgproc.guidedFilter``, one resolution, on the
    CPU's NumPy arrays): its coefficients come from the working size and it runs on the engine's device, a few
    convolutions and interpolations like the rest of the composition.
    """
    channels = guide.shape[0]
    means = _box(torch.cat([guide, change, guide * change, guide * guide])[None], radius)[0]
    mean_guide, mean_change, mean_product, mean_square = means.split(channels)
    slope = (mean_product - mean_guide * mean_change) / (mean_square - mean_guide * mean_guide + eps)
    coefficients = _box(torch.cat([slope, mean_change - slope * mean_guide])[None], radius)[0]
    enlarged = _enlarge(coefficients, tuple(frame.shape[-2:]))
    return enlarged[:channels].mul_(frame).add_(enlarged[channels:])


def working_size(height: int, width: int, config: EngineConfig, working_pixels: int | None = None) -> tuple[int, int]:
    """(height, width) the network restores (height, width) frames at (the module docstring's order of rules).

    ``working_pixels`` is the model's rule (``VimpNetConfig.working_pixels``), applied under ``working_scale:
    weights`` when no ``inference_size`` is set. Pure arithmetic: the frame cost budget asks it for any
    declared size before a byte is decoded.
    """
    if config.inference_size is not None:
        work_w, work_h = config.inference_size
    else:
        work_w, work_h = width, height
        if working_pixels and config.working_scale == "weights":
            work_w, work_h = fit_pixels(work_w, work_h, working_pixels, SIZE_MULTIPLE)
    if config.oversize_policy == "resize":
        work_w, work_h = fit_pixels(work_w, work_h, config.max_inference_pixels, SIZE_MULTIPLE)
    return work_h, work_w


@dataclass
class FrameGeometry:
    """How frames of one input size map to network tiles and back.

    ``work_size`` is (height, width) at the :func:`working_size`; ``tile_shape`` the
    (height, width) of every tile before padding and ``padded_shape`` after padding
    to a multiple of 4; ``origins`` the (y, x) of each tile in the working frame.
    """

    input_size: tuple[int, int]
    work_size: tuple[int, int]
    tile_shape: tuple[int, int]
    padded_shape: tuple[int, int]
    origins: list[tuple[int, int]]
    overlap: int
    weights: np.ndarray = field(repr=False)  # (n_tiles, th, tw) float32
    weight_sum: np.ndarray = field(repr=False)  # (hw, ww) float32
    change_upsampling: str  # EngineConfig.change_upsampling
    _device_weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def plan(cls, height: int, width: int, config: EngineConfig, working_pixels: int | None = None) -> FrameGeometry:
        """Compute the geometry for (height, width) frames under ``config`` (``working_pixels``: the model's)."""
        work_h, work_w = working_size(height, width, config, working_pixels)
        tile_size, overlap = config.tile_size, config.tile_overlap
        budget = config.max_inference_pixels
        if budget and work_h * work_w > budget and config.oversize_policy == "tile" and tile_size == 0:
            tile_size, overlap = FALLBACK_TILE_SIZE, min(overlap, FALLBACK_TILE_OVERLAP)
        if tile_size > 0:
            tile_h, tile_w = min(tile_size, work_h), min(tile_size, work_w)
        else:
            tile_h, tile_w = work_h, work_w
        ys = tile_starts(work_h, tile_h, overlap)
        xs = tile_starts(work_w, tile_w, overlap)
        origins = [(y, x) for y in ys for x in xs]
        weights = np.empty((len(origins), tile_h, tile_w), dtype=np.float32)
        weight_sum = np.zeros((work_h, work_w), dtype=np.float32)
        for i, (y, x) in enumerate(origins):
            wy = _ramp(tile_h, overlap, y > 0, y + tile_h < work_h)
            wx = _ramp(tile_w, overlap, x > 0, x + tile_w < work_w)
            weights[i] = wy[:, None] * wx[None, :]
            weight_sum[y : y + tile_h, x : x + tile_w] += weights[i]
        padded = (-(-tile_h // SIZE_MULTIPLE) * SIZE_MULTIPLE, -(-tile_w // SIZE_MULTIPLE) * SIZE_MULTIPLE)
        return cls((height, width), (work_h, work_w), (tile_h, tile_w), padded, origins, overlap,
                   weights, weight_sum, config.change_upsampling)  # fmt: skip

    @property
    def num_tiles(self) -> int:
        """How many tiles one frame becomes (1 without tiling)."""
        return len(self.origins)

    def to_tiles(self, frame: torch.Tensor, white_level: int = 255) -> torch.Tensor:
        """(h, w, 3) integer RGB on any device -> (n_tiles, 3, ph, pw) float32 in [0, 1], edge-replicated pads."""
        height, width = self.input_size
        if tuple(frame.shape[:2]) != (height, width):
            raise InputError(f"frame of size {frame.shape[1]}x{frame.shape[0]} given to a {width}x{height} geometry")
        image = frame.permute(2, 0, 1).float().div_(float(white_level))  # (3, h, w)
        work_h, work_w = self.work_size
        if (work_h, work_w) != (height, width):
            shrink = work_h * work_w < height * width
            image = F.interpolate(
                image[None], size=(work_h, work_w), mode="bilinear", align_corners=False, antialias=shrink
            )[0]
        tile_h, tile_w = self.tile_shape
        tiles = torch.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in self.origins])
        pad_h, pad_w = self.padded_shape[0] - tile_h, self.padded_shape[1] - tile_w
        if pad_h or pad_w:
            tiles = F.pad(tiles, (0, pad_w, 0, pad_h), mode="replicate")
        return tiles.contiguous()

    def _blend_tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Tile weights (n, 1, th, tw) and 1 / their sum (1, hw, ww) on ``device``, made once per device."""
        key = str(device)
        if key not in self._device_weights:
            weights = torch.from_numpy(self.weights).to(device)[:, None]
            inverse = torch.from_numpy(1.0 / self.weight_sum).to(device)[None]
            self._device_weights[key] = (weights, inverse)
        return self._device_weights[key]

    @property
    def resized(self) -> bool:
        """Whether the network works at another size than the input's (:func:`working_size`)."""
        return self.work_size != self.input_size

    def merge(self, tiles: torch.Tensor) -> torch.Tensor:
        """(n_tiles, c, ph, pw) -> (c, work_h, work_w) float32 at the working size, tiles blended, same device."""
        tile_h, tile_w = self.tile_shape
        data = tiles[:, :, :tile_h, :tile_w].float()
        if self.num_tiles == 1:
            return data[0]
        weights, inverse = self._blend_tensors(data.device)
        work_h, work_w = self.work_size
        merged = data.new_zeros(data.shape[1], work_h, work_w)
        weighted = data * weights
        for i, (y, x) in enumerate(self.origins):
            merged[:, y : y + tile_h, x : x + tile_w] += weighted[i]
        return merged * inverse

    def compose(
        self,
        tiles: torch.Tensor,
        inputs: torch.Tensor | None = None,
        frame: torch.Tensor | None = None,
        white_level: int = 255,
    ) -> torch.Tensor:
        """(n_tiles, c, ph, pw) network outputs -> (c, h, w) float32 at the input size, tiles blended, same device.

        At another working size the maps are resized back (bilinear). The image (the first 3 channels) is then
        mapped back as the change the network made, given its input ``inputs`` (the :meth:`to_tiles` of
        ``frame``) and ``frame`` (h, w, 3) itself: ``frame + enlarge(output - input)``, so what the network left
        alone keeps the camera's full detail (a frame without rain comes back as it came) instead of being
        replaced by an enlarged image; ``enlarge`` is :func:`guided_enlarge` (``change_upsampling: guided``) or
        bilinear. Without them the image itself is resized.
        """
        merged = self.merge(tiles)
        if not self.resized:
            return merged
        size = self.input_size
        if inputs is None or frame is None:
            return F.interpolate(merged[None], size=size, mode="bilinear", align_corners=False)[0]
        image = frame.permute(2, 0, 1).float().div_(float(white_level))
        low = self.merge(inputs)
        if self.change_upsampling == "bilinear":
            change = torch.cat([merged[:3] - low, merged[3:]])  # resized with the maps in one call
            back = F.interpolate(change[None], size=size, mode="bilinear", align_corners=False)[0]
        else:
            back = torch.cat([guided_enlarge(low, merged[:3] - low, image), _enlarge(merged[3:], size)])
        back[:3] += image
        return back


def quantize(values: torch.Tensor, white_level: int, dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """Float values in [0, 1] -> integers 0..white_level of ``dtype``, rounded half up and clipped (same device).

    One new tensor (the clamp), the rest in place: at 3840x2160 each plane is a full-size pass.
    """
    return values.clamp(0.0, 1.0).mul_(white_level).add_(0.5).floor_().to(dtype)
