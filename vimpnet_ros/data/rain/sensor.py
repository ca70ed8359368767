"""Camera effects around the rain: exposure of the clean scene, and noise and JPEG on the rainy frame.

Two kinds, applied at different places so the training targets stay meaningful:

- ``gain`` and ``gamma`` belong to the scene as this camera exposes it (darker or
  brighter footage, another tone curve). They change the clean frame before any rain,
  so every stream (``gt``, ``drop``, ``lq``) shows them and the model is not asked to
  guess an exposure.
- Read noise, signal-dependent (shot) noise and JPEG compression degrade only the
  rainy frame ``lq``, as a real camera's output would be; the model learns to restore
  through them, and the targets stay clean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from vimpnet_ros.data.rain.config import SensorConfig, draw


@dataclass(frozen=True)
class SensorParams:
    """The values drawn for one video; ``jpeg_quality`` 0 means no compression."""

    enabled: bool
    gain: float
    gamma: float
    noise: float
    shot_noise: float
    jpeg_quality: int

    @classmethod
    def sample(cls, config: SensorConfig, rng: np.random.Generator) -> SensorParams:
        """Draw one video's camera effects; always consumes the same amount of randomness."""
        enabled = bool(rng.random() < config.probability)
        gain, gamma = draw(rng, config.gain), draw(rng, config.gamma)
        noise, shot = draw(rng, config.noise), draw(rng, config.shot_noise)
        jpeg = bool(rng.random() < config.jpeg_probability)
        quality = round(draw(rng, config.jpeg_quality))
        if not enabled:
            return cls(False, 1.0, 1.0, 0.0, 0.0, 0)
        return cls(True, gain, gamma, noise, shot, quality if jpeg else 0)

    def to_dict(self) -> dict[str, float | int | bool]:
        """JSON-friendly values, for the dataset's metadata."""
        return asdict(self)

    def expose(self, frames: np.ndarray) -> np.ndarray:
        """Clean frames (t, h, w, 3) uint8 -> the same scene with this camera's gain and tone curve (uint8)."""
        if self.gain == 1.0 and self.gamma == 1.0:
            return frames
        table = np.clip(np.round(255.0 * np.clip(self.gain * np.arange(256) / 255.0, 0.0, 1.0) ** self.gamma), 0, 255)
        return cv2.LUT(frames.reshape(-1, frames.shape[-1]), table.astype(np.uint8)).reshape(frames.shape)

    def degrade(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A rainy frame (h, w, 3) uint8 -> with read and shot noise, then JPEG-compressed (uint8)."""
        if self.noise > 0 or self.shot_noise > 0:
            value = frame.astype(np.float32) / np.float32(255.0)
            std = np.sqrt(np.float32(self.noise) ** 2 + np.float32(self.shot_noise) ** 2 * value)
            noisy = value + std * rng.standard_normal(value.shape, dtype=np.float32)
            frame = np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)
        if self.jpeg_quality:
            ok, encoded = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            if ok:
                frame = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])
        return frame
