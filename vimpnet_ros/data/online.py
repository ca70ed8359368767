"""Training clips rendered on demand: clean video and rain made inside DataLoader workers, never stored.

A GPU consumes clips faster than a disk cache can be rendered ahead of a short run,
and a cache fixes the rain of every clip once. Here item ``i`` of the dataset is made
from ``numpy.random.default_rng([seed, i])`` alone:

1. a clean clip of ``num_frames`` frames at ``size``: a procedural road scene
   (:mod:`vimpnet_ros.data.road_scene`, preset ``scene``) or a bundled photograph
   moved by a virtual camera;
2. ``clips_per_item`` training clips from it, each a random window of
   ``clip_length`` frames with its *own* rain (rendered over the whole frame, then
   cropped to ``crop_size``, so drop and streak sizes keep their frame-relative
   statistics) and its own flips/transpose. A share ``clear_fraction`` of the clips
   has no rain at all: their targets are the input itself (noise and compression
   included), which teaches the model to leave what has no rain alone.

``clean: mixed`` draws road scenes for three items in four and a bundled photograph
for the fourth, so the model does not learn one look. ``footage`` (image folders and
video files of rain-free driving, :class:`~vimpnet_ros.data.sources.FootageIndex`)
replaces the clean clip of a share ``footage_fraction`` of the items with consecutive
frames of that footage, drawn from (seed, i) as well: the rain is rendered over the
user's own camera, not only over our scenes.

Rendering the clean scene is the expensive part (about 0.1-0.3 s per 192x192 frame
on one core); several rain renderings of one scene (about 6 ms per frame) amortise
it. Because an item depends only on its index, results do not depend on the number
of workers, and a resumed run (same sampler position) sees the same data.

Each item returns ``{stream: (k, t, c, h, w) float32}`` with k = ``clips_per_item``
and the VRDS stream names; :func:`collate_items` concatenates items into batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vimpnet_ros.data.clean_clips import BUNDLED_IMAGES, make_clean_clip
from vimpnet_ros.data.layout import STREAMS, vrds_arrays
from vimpnet_ros.data.rain.compose import RenderedVideo, render_video
from vimpnet_ros.data.rain.config import RainConfig
from vimpnet_ros.data.road_scene import make_road_clip, road_preset
from vimpnet_ros.data.sources import FootageIndex
from vimpnet_ros.data.vrds import Augmentation, to_tensor
from vimpnet_ros.errors import DatasetError

#: Clean sources an online dataset can render without footage.
ONLINE_CLEAN: tuple[str, ...] = ("road", "bundled", "mixed")


@dataclass(frozen=True)
class OnlineSpec:
    """What an :class:`OnlineRainDataset` renders (see the module docstring)."""

    num_items: int
    num_frames: int
    size: tuple[int, int]
    clip_length: int
    crop_size: int
    clips_per_item: int = 1
    clean: str = "road"
    scene: str = "default"
    augment: bool = True
    seed: int = 0
    clear_fraction: float = 0.0
    footage: tuple[str, ...] = ()
    footage_fraction: float = 0.0

    def __post_init__(self) -> None:
        """Reject combinations that cannot make a clip."""
        width, height = self.size
        for name in ("clear_fraction", "footage_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DatasetError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if bool(self.footage) != (self.footage_fraction > 0):
            raise DatasetError(
                "footage and footage_fraction go together: name the footage (image folders, video files) "
                f"and the share of items cut from it (got {len(self.footage)} paths, fraction {self.footage_fraction})"
            )
        if self.clean not in ONLINE_CLEAN:
            raise DatasetError(f"online clean source must be one of {ONLINE_CLEAN}, got {self.clean!r}")
        if self.num_items < 1 or self.clips_per_item < 1:
            raise DatasetError("an online dataset needs num_items >= 1 and clips_per_item >= 1")
        if self.num_frames < self.clip_length:
            raise DatasetError(f"num_frames ({self.num_frames}) must be >= clip_length ({self.clip_length})")
        if min(width, height) < self.crop_size:
            raise DatasetError(f"rendered size {width}x{height} is smaller than the crop {self.crop_size}")
        road_preset(self.scene)  # raises for an unknown preset


class OnlineRainDataset(Dataset[dict[str, Any]]):
    """Rainy training clips rendered on demand; item ``i`` depends only on (seed, i).

    ``rain``: the renderer's ranges. Returns ``{stream: (k, t, c, h, w) float32 in [0, 1]}``
    for the five VRDS streams (``01drop`` and ``mstreak`` have c = 1).
    """

    def __init__(self, spec: OnlineSpec, rain: RainConfig | None = None) -> None:
        self.spec = spec
        self.rain = rain or RainConfig()
        # Listed now, so missing or too short footage fails before training starts.
        self.footage = FootageIndex(spec.footage, spec.num_frames) if spec.footage else None
        # The same camera without rain: exposure, noise and JPEG as in the rainy clips.
        self.clear = self.rain.without(streaks=True, drops=True)

    def __len__(self) -> int:
        return self.spec.num_items

    def set_epoch(self, epoch: int) -> None:
        """Kept for the trainer's interface; items do not depend on the epoch (the sampler's order does)."""

    def clean_clip(self, item: int) -> np.ndarray:
        """The clean clip of item ``item``: (num_frames, h, w, 3) uint8 RGB."""
        spec = self.spec
        rng = np.random.default_rng([spec.seed, item])
        if self.footage is not None:
            footage_rng = np.random.default_rng([spec.seed, item, 2])  # apart, so the other items stay as they were
            if footage_rng.random() < spec.footage_fraction:
                return self.footage.clip(footage_rng, spec.num_frames, spec.size)
        if spec.clean == "road" or (spec.clean == "mixed" and item % 4 != 3):
            return make_road_clip(spec.num_frames, spec.size, rng, road_preset(spec.scene))
        name = BUNDLED_IMAGES[item % len(BUNDLED_IMAGES)]
        return make_clean_clip(name, spec.num_frames, spec.size, rng)

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} out of range for an online dataset of {len(self)}")
        spec = self.spec
        clean = self.clean_clip(item)
        samples = []
        for clip in range(spec.clips_per_item):
            rng = np.random.default_rng([spec.seed, item, clip, 1])
            start = int(rng.integers(0, spec.num_frames - spec.clip_length + 1))
            clear = rng.random() < spec.clear_fraction
            video = render_video(clean[start : start + spec.clip_length], self.clear if clear else self.rain, rng)
            if clear:
                video = without_rain(video)
            crop = (spec.crop_size, spec.crop_size)
            samples.append(_crop(video, Augmentation.draw(rng, clean.shape[1:3], crop, spec.augment)))
        return {stream: torch.stack([sample[stream] for sample in samples]) for stream in STREAMS}


def without_rain(video: RenderedVideo) -> RenderedVideo:
    """A rain-free rendering whose targets are its input: the camera's noise and JPEG are not rain to remove."""
    return dataclasses.replace(
        video,
        gt=video.lq.copy(),
        drop=video.lq.copy(),
        drop_mask=np.zeros_like(video.drop_mask),
        streak_map=np.zeros_like(video.streak_map),
    )


def _crop(video: RenderedVideo, augmentation: Augmentation) -> dict[str, torch.Tensor]:
    """The five streams of a rendered window as (t, c, h, w) float32 tensors in [0, 1], cropped and flipped."""
    return {
        stream: to_tensor(augmentation.apply(frames)).float().div_(255.0)
        for stream, frames in vrds_arrays(video).items()
    }


def collate_items(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate items of (k, t, c, h, w) tensors into (n * k, t, c, h, w) batches."""
    return {stream: torch.cat([item[stream] for item in items]) for stream in items[0]}


def worker_init(_: int) -> None:
    """DataLoader worker set-up: one OpenCV and one torch thread each (the workers are the parallelism)."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
