"""Image quality metrics computed exactly as the ViMP-Net reference reports them.

The reference (MMEditing's ``psnr``/``ssim`` with ``crop_border=0`` and no colour
conversion) scores RGB frames after they are quantised to uint8, so the default
``data_range`` here is 255 and the inputs are expected as uint8 (or floats on the
0..255 scale). Pass ``data_range=1.0`` for float images in [0, 1]; the constants of
SSIM scale with it, so both give the same number for the same picture.

- PSNR: ``10 * log10(data_range**2 / MSE)`` over all pixels and channels (inf when equal).
- SSIM: per channel, an 11x11 Gaussian window (sigma 1.5), population (co)variances,
  the 5-pixel border where the window does not fit dropped, then the channel mean.
  This equals ``skimage.metrics.structural_similarity(..., channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
- Aggregation: per frame, mean per video, then mean over videos (:func:`aggregate`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vimpnet_ros.errors import InputError

#: SSIM window as the reference: 11 taps, sigma 1.5 (cv2.getGaussianKernel).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    """Both images must have the same (h, w) or (h, w, c) shape."""
    if a.shape != b.shape:
        raise InputError(f"metric inputs differ in shape: {a.shape} vs {b.shape}; compare frames of equal size")
    if a.ndim not in (2, 3):
        raise InputError(f"metric inputs must be (h, w) or (h, w, c) images, got shape {a.shape}")


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB of two images (h, w[, c]) on the scale ``data_range`` (255 for uint8, 1.0 for [0, 1])."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def _ssim_channel(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """SSIM of one float64 channel (h, w); the window-border of 5 pixels is excluded."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)
    window = np.outer(kernel, kernel.transpose())
    pad = SSIM_WINDOW // 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[pad:-pad, pad:-pad]

    mu_a = blur(a)
    mu_b = blur(b)
    mu_a2, mu_b2, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = blur(a * a) - mu_a2
    var_b = blur(b * b) - mu_b2
    cov = blur(a * b) - mu_ab
    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_a2 + mu_b2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM of two images (h, w[, c]), mean over channels; frames must be at least 11x11."""
    _check_pair(a, b)
    if min(a.shape[0], a.shape[1]) < SSIM_WINDOW:
        raise InputError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[:2]}")
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    if a64.ndim == 2:
        return _ssim_channel(a64, b64, float(data_range))
    return float(np.mean([_ssim_channel(a64[..., c], b64[..., c], float(data_range)) for c in range(a64.shape[2])]))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 as the reference's ``tensor2img`` does (clip, x255, round)."""
    return np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass
class VideoScores:
    """Per-frame scores of one video; the video's score is the mean over its frames."""

    name: str
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)

    def add(self, restored: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> tuple[float, float]:
        """Score one frame pair (h, w, 3) and remember it; returns (psnr, ssim)."""
        p, s = psnr(restored, gt, data_range), ssim(restored, gt, data_range)
        self.psnr.append(p)
        self.ssim.append(s)
        return p, s

    @property
    def mean_psnr(self) -> float:
        """Mean PSNR over the video's frames."""
        return float(np.mean(self.psnr)) if self.psnr else math.nan

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the video's frames."""
        return float(np.mean(self.ssim)) if self.ssim else math.nan


def aggregate(videos: Sequence[VideoScores]) -> dict[str, float]:
    """Mean over videos of the per-video means (each video counts once, whatever its length)."""
    if not videos:
        return {"psnr": math.nan, "ssim": math.nan, "num_videos": 0, "num_frames": 0}
    return {
        "psnr": float(np.mean([v.mean_psnr for v in videos])),
        "ssim": float(np.mean([v.mean_ssim for v in videos])),
        "num_videos": len(videos),
        "num_frames": int(sum(len(v.psnr) for v in videos)),
    }


def mask_iou(predicted: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union of a predicted soft mask (thresholded) and a binary target.

    Returns 1.0 when both masks are empty (nothing to find, nothing found).
    """
    _check_pair(predicted, target)
    p = predicted >= threshold
    t = target >= 0.5
    union = int(np.logical_or(p, t).sum())
    if union == 0:
        return 1.0
    return float(np.logical_and(p, t).sum()) / union


def summarize(scores: Mapping[str, float]) -> str:
    """One line ``PSNR 31.02 dB  SSIM 0.9283`` for logs."""
    return f"PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.4f}"
