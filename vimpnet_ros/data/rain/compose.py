"""Composition of clean frames, raindrops and rain streaks into the five VRDS streams.

Order (per frame), chosen so the streams match the reference's training targets:

1. ``gt`` = the clean frame.
2. ``drop`` = ``gt`` with raindrops (each drop refracts the clean scene). This is the
   stage-1 target of the reference: the rainy frame with the streaks removed.
3. ``mstreak`` = streak intensity s, attenuated inside drops by (1 - drop alpha)
   (a drop on the lens shows a defocused view in which thin streaks vanish), then
   quantised to 1/255 so the stored PNG is exactly the map that was composed.
4. ``lq`` = screen blend of streaks onto ``drop``: lq = drop + s * (1 - drop).
   Streaks only brighten, never saturate past white, and lq == drop exactly
   wherever s == 0, unless the camera effects below add noise or JPEG to it.

Camera effects (``sensor``, see :mod:`vimpnet_ros.data.rain.sensor`): the clean frame
is first exposed with the video's gain and tone curve (so ``gt`` is that exposure),
and the finished ``lq`` gets read/shot noise and JPEG compression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vimpnet_ros.data.rain.config import RainConfig
from vimpnet_ros.data.rain.drops import DropField, DropParams
from vimpnet_ros.data.rain.sensor import SensorParams
from vimpnet_ros.data.rain.streaks import StreakField, StreakParams
from vimpnet_ros.errors import InputError


@dataclass(frozen=True)
class RenderedVideo:
    """One rendered video; every array has t frames.

    ``lq``, ``gt``, ``drop``: (t, h, w, 3) uint8 RGB; ``drop_mask``: (t, h, w) bool;
    ``streak_map``: (t, h, w) float32 in [0, 1] (multiples of 1/255);
    ``params``: the per-video values drawn from the config (JSON-friendly).
    """

    lq: np.ndarray
    gt: np.ndarray
    drop: np.ndarray
    drop_mask: np.ndarray
    streak_map: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        """Number of frames t."""
        return int(self.gt.shape[0])


def render_video(
    clean_frames: np.ndarray,
    config: RainConfig | None = None,
    rng: np.random.Generator | int = 0,
) -> RenderedVideo:
    """Add temporally consistent raindrops and rain streaks to a clean clip.

    ``clean_frames``: (t, h, w, 3) uint8 RGB. ``rng``: a numpy Generator (consumed)
    or an int seed; the same seed and frames always give the same video.
    """
    frames = np.asarray(clean_frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(
            f"render_video needs clean frames as a (t, h, w, 3) uint8 RGB array, got shape {frames.shape} "
            f"dtype {frames.dtype}"
        )
    count, height, width = frames.shape[:3]
    if count < 1 or height < 8 or width < 8:
        raise InputError(f"render_video needs at least one frame of at least 8x8 pixels, got {frames.shape}")
    config = RainConfig() if config is None else config
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    streak_params = StreakParams.sample(config.streaks, generator, height, width)
    drop_params = DropParams.sample(config.drops, generator, height, width)
    sensor = SensorParams.sample(config.sensor, generator)
    # Separate child generators: the streak stream does not shift when drop dynamics draw more numbers.
    streak_rng, drop_rng, noise_rng = generator.spawn(3)
    frames = sensor.expose(frames)
    streaks = StreakField(streak_params, height, width, streak_rng)
    drops = DropField(drop_params, height, width, drop_rng)

    lq = np.empty_like(frames)
    drop = np.empty_like(frames)
    drop_mask = np.zeros((count, height, width), dtype=bool)
    streak_map = np.zeros((count, height, width), dtype=np.float32)
    for index in range(count):
        gt = frames[index]
        clean = gt.astype(np.float32) / np.float32(255.0)
        layer = drops.render(clean)
        drop[index] = np.where(layer.alpha[..., None] > 0, _to_uint8(layer.image), gt)
        drop_mask[index] = layer.mask
        streak = streaks.render() * (1.0 - layer.alpha)
        streak = np.round(streak * 255.0).astype(np.float32) / np.float32(255.0)
        streak_map[index] = streak
        with_drops = drop[index].astype(np.float32) / np.float32(255.0)
        rainy = with_drops + streak[..., None] * (1.0 - with_drops)
        lq[index] = sensor.degrade(np.where(streak[..., None] > 0, _to_uint8(rainy), drop[index]), noise_rng)
        streaks.step()
        drops.step()
    params = {
        "streaks": streak_params.to_dict(),
        "drops": drop_params.to_dict(),
        "sensor": sensor.to_dict(),
        "size": [width, height],
    }
    return RenderedVideo(lq=lq, gt=frames.copy(), drop=drop, drop_mask=drop_mask, streak_map=streak_map, params=params)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 with rounding."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
