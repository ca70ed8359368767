"""Frame geometry: resize to ``inference_size``, split into overlapping tiles, pad to a multiple of 4, and back.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vimpnet_ros.engine.config import SIZE_MULTIPLE, EngineConfig
from vimpnet_ros.errors import InputError


def validate_frame(frame: object) -> np.ndarray:
    """Check that ``frame`` is an (h, w, 3) uint8 array and return it C-contiguous."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"a frame must be a numpy array of shape (height, width, 3); got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"a frame must have shape (height, width, 3) with RGB channels; got {frame.shape}")
    if frame.dtype != np.uint8:
        raise InputError(f"a frame must be uint8 RGB (convert 16-bit or float images first); got dtype {frame.dtype}")
    return np.ascontiguousarray(frame)


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


@dataclass
class FrameGeometry:
    """How frames of one input size map to network tiles and back.

    ``work_size`` is (height, width) after ``inference_size``; ``tile_shape`` the
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

    @classmethod
    def plan(cls, height: int, width: int, config: EngineConfig) -> FrameGeometry:
        """Compute the geometry for (height, width) frames under ``config``."""
        if config.inference_size is not None:
            work_w, work_h = config.inference_size
        else:
            work_h, work_w = height, width
        if config.tile_size > 0:
            tile_h, tile_w = min(config.tile_size, work_h), min(config.tile_size, work_w)
        else:
            tile_h, tile_w = work_h, work_w
        ys = tile_starts(work_h, tile_h, config.tile_overlap)
        xs = tile_starts(work_w, tile_w, config.tile_overlap)
        origins = [(y, x) for y in ys for x in xs]
        weights = np.empty((len(origins), tile_h, tile_w), dtype=np.float32)
        weight_sum = np.zeros((work_h, work_w), dtype=np.float32)
        for i, (y, x) in enumerate(origins):
            wy = _ramp(tile_h, config.tile_overlap, y > 0, y + tile_h < work_h)
            wx = _ramp(tile_w, config.tile_overlap, x > 0, x + tile_w < work_w)
            weights[i] = wy[:, None] * wx[None, :]
            weight_sum[y : y + tile_h, x : x + tile_w] += weights[i]
        padded = (-(-tile_h // SIZE_MULTIPLE) * SIZE_MULTIPLE, -(-tile_w // SIZE_MULTIPLE) * SIZE_MULTIPLE)
        return cls((height, width), (work_h, work_w), (tile_h, tile_w), padded, origins, config.tile_overlap,
                   weights, weight_sum)  # fmt: skip

    @property
    def num_tiles(self) -> int:
        """How many tiles one frame becomes (1 without tiling)."""
        return len(self.origins)

    def to_tiles(self, frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """(h, w, 3) uint8 RGB -> (n_tiles, 3, ph, pw) float32 in [0, 1], edge-replicated to the padded size."""
        height, width = self.input_size
        if frame.shape[:2] != (height, width):
            raise InputError(f"frame of size {frame.shape[1]}x{frame.shape[0]} given to a {width}x{height} geometry")
        work_h, work_w = self.work_size
        if (work_h, work_w) != (height, width):
            shrink = work_h * work_w < height * width
            frame = cv2.resize(frame, (work_w, work_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        image = torch.from_numpy(frame).to(device).permute(2, 0, 1).float().div_(255.0)  # (3, hw, ww)
        tile_h, tile_w = self.tile_shape
        tiles = torch.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in self.origins])
        pad_h, pad_w = self.padded_shape[0] - tile_h, self.padded_shape[1] - tile_w
        if pad_h or pad_w:
            tiles = F.pad(tiles, (0, pad_w, 0, pad_h), mode="replicate")
        return tiles.contiguous()

    def from_tiles(self, tiles: torch.Tensor) -> np.ndarray:
        """(n_tiles, c, ph, pw) network outputs -> (h, w, c) float32 at the input size, tiles blended."""
        tile_h, tile_w = self.tile_shape
        data = tiles[:, :, :tile_h, :tile_w].float().cpu().numpy()  # (n, c, th, tw)
        if self.num_tiles == 1:
            merged = data[0].transpose(1, 2, 0)
        else:
            work_h, work_w = self.work_size
            merged = np.zeros((work_h, work_w, data.shape[1]), dtype=np.float32)
            for i, (y, x) in enumerate(self.origins):
                merged[y : y + tile_h, x : x + tile_w] += (data[i] * self.weights[i][None]).transpose(1, 2, 0)
            merged /= self.weight_sum[:, :, None]
        height, width = self.input_size
        if merged.shape[:2] != (height, width):
            channels = merged.shape[2]
            merged = cv2.resize(merged, (width, height), interpolation=cv2.INTER_LINEAR)
            merged = merged.reshape(height, width, channels)
        return np.ascontiguousarray(merged)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) float in [0, 1] -> uint8, rounded and clipped."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
