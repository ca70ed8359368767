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

Two scores isolate the halves of the job: PSNR inside and outside the
ground-truth raindrop mask (:func:`psnr_in_mask`, :func:`psnr_outside_mask`: how well
drops are removed, and whether the rest of the frame is kept), and the predicted
mask's precision, recall and IoU at the published threshold 0.5
(:func:`mask_confusion`, :func:`mask_scores`: whether drops are found).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vimpnet_ros.errors import InputError
from vimpnet_ros.model.config import MASK_THRESHOLD

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
    return _psnr_of_values(a, b, data_range)


#: PSNR of identical images is infinite; where a mean over frames must stay finite (how much a model changes a
#: frame it should leave alone), each frame's PSNR is capped here. 100 dB: one value in about 150,000 off by one
#: grey level.
MAX_PSNR_DB = 100.0
#: A frame counts as made worse when its PSNR against the ground truth falls by more than this (the reports'
#: precision), so a frame left as it was, or changed by rounding, is not counted.
WORSE_BY_DB = 0.01


def frames_worse(gains: Sequence[float]) -> tuple[int | None, float | None]:
    """(How many per-frame PSNR gains fall below -:data:`WORSE_BY_DB`, the lowest gain); (None, None) for none.

    Infinite or NaN gains (identical frames on both sides) are left out.
    """
    finite = [gain for gain in gains if math.isfinite(gain)]
    if not finite:
        return None, None
    return sum(gain < -WORSE_BY_DB for gain in finite), min(finite)


def capped_psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """:func:`psnr`, at most :data:`MAX_PSNR_DB` (identical images score the cap, not inf)."""
    return min(psnr(a, b, data_range), MAX_PSNR_DB)


def _psnr_of_values(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """PSNR of two equally shaped arrays of any rank (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def _region(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A mask (h, w) of bool or [0, 1] floats as bool, checked against an image (h, w[, c])."""
    region = np.asarray(mask)
    if region.shape != image.shape[:2]:
        raise InputError(f"mask {region.shape} does not match the frame {image.shape[:2]}; pass an (h, w) mask")
    return region >= 0.5 if region.dtype != np.bool_ else region


def psnr_in_mask(a: np.ndarray, b: np.ndarray, mask: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB over the pixels where ``mask`` (h, w) is set (all channels); NaN when the mask is empty.

    ``a``, ``b``: (h, w[, c]) uint8 or float on the scale ``data_range``; ``mask``: bool,
    or floats binarised at 0.5 (a ground-truth ``01drop`` frame). Inside the drop mask
    it says how well drops are removed; a frame without drops has no such score.
    """
    _check_pair(a, b)
    return _psnr_over(a, b, _region(mask, a), data_range)


def psnr_outside_mask(a: np.ndarray, b: np.ndarray, mask: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB over the pixels where ``mask`` (h, w) is not set; NaN when it covers the whole frame.

    Outside the drop mask it says how well streaks are removed and whether the clean
    parts of the frame are kept; see :func:`psnr_in_mask` for the arguments.
    """
    _check_pair(a, b)
    return _psnr_over(a, b, ~_region(mask, a), data_range)


def _psnr_over(a: np.ndarray, b: np.ndarray, region: np.ndarray, data_range: float) -> float:
    """PSNR over the pixels of ``region`` (h, w) bool; NaN when it is empty."""
    if not region.any():
        return math.nan
    return _psnr_of_values(a[region], b[region], data_range)


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


def _finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass
class VideoScores:
    """Per-frame scores of one video; the video's score is the mean over its frames.

    ``psnr_in_mask`` / ``psnr_outside_mask`` are filled when frames are added with a
    ground-truth drop mask; their means skip frames without a value (no drop in the
    frame, or an identical region: NaN/inf), so one clean frame does not make a video's
    score infinite.
    """

    name: str
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    psnr_in_mask: list[float] = field(default_factory=list)
    psnr_outside_mask: list[float] = field(default_factory=list)

    def add(
        self, restored: np.ndarray, gt: np.ndarray, data_range: float = 255.0, mask: np.ndarray | None = None
    ) -> tuple[float, float]:
        """Score one frame pair (h, w, 3) and remember it; returns (psnr, ssim).

        ``mask``: the ground-truth drop mask (h, w) of the frame, to score inside and outside it.
        """
        p, s = psnr(restored, gt, data_range), ssim(restored, gt, data_range)
        self.psnr.append(p)
        self.ssim.append(s)
        if mask is not None:
            self.psnr_in_mask.append(psnr_in_mask(restored, gt, mask, data_range))
            self.psnr_outside_mask.append(psnr_outside_mask(restored, gt, mask, data_range))
        return p, s

    @property
    def mean_psnr(self) -> float:
        """Mean PSNR over the video's frames."""
        return float(np.mean(self.psnr)) if self.psnr else math.nan

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the video's frames."""
        return float(np.mean(self.ssim)) if self.ssim else math.nan

    @property
    def mean_psnr_in_mask(self) -> float:
        """Mean PSNR inside the drop mask over the frames that have one (NaN if none)."""
        return _finite_mean(self.psnr_in_mask)

    @property
    def mean_psnr_outside_mask(self) -> float:
        """Mean PSNR outside the drop mask over the frames where it is finite (NaN if none)."""
        return _finite_mean(self.psnr_outside_mask)


def aggregate(videos: Sequence[VideoScores]) -> dict[str, float]:
    """Mean over videos of the per-video means (each video counts once, whatever its length).

    With masks, ``psnr_in_mask`` / ``psnr_outside_mask`` average the videos that have a value.
    """
    if not videos:
        return {"psnr": math.nan, "ssim": math.nan, "num_videos": 0, "num_frames": 0}
    result: dict[str, float] = {
        "psnr": float(np.mean([v.mean_psnr for v in videos])),
        "ssim": float(np.mean([v.mean_ssim for v in videos])),
        "num_videos": len(videos),
        "num_frames": int(sum(len(v.psnr) for v in videos)),
    }
    if any(v.psnr_in_mask for v in videos):
        result["psnr_in_mask"] = _finite_mean([v.mean_psnr_in_mask for v in videos])
        result["psnr_outside_mask"] = _finite_mean([v.mean_psnr_outside_mask for v in videos])
    return result


@dataclass(frozen=True)
class MaskCounts:
    """Pixel counts of a binarised predicted mask against a binary target; they add up over frames and videos.

    Scores from summed counts weigh every pixel once (a dataset's IoU is its total
    intersection over its total union), as the validation IoU has always been computed.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: MaskCounts) -> MaskCounts:
        return MaskCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def precision(self) -> float:
        """Share of the predicted drop pixels that are drops; NaN when nothing was predicted."""
        predicted = self.tp + self.fp
        return self.tp / predicted if predicted else math.nan

    @property
    def recall(self) -> float:
        """Share of the drop pixels that were found; NaN when there is no drop."""
        actual = self.tp + self.fn
        return self.tp / actual if actual else math.nan

    @property
    def iou(self) -> float:
        """Intersection over union; 1.0 when both masks are empty (nothing to find, nothing found)."""
        union = self.tp + self.fp + self.fn
        return self.tp / union if union else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (= Dice); 1.0 when both masks are empty."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    def scores(self) -> dict[str, float]:
        """``{"precision", "recall", "iou", "f1", "target_fraction", "predicted_fraction"}`` for reports."""
        total = max(1, self.tp + self.fp + self.fn + self.tn)
        return {
            "precision": self.precision,
            "recall": self.recall,
            "iou": self.iou,
            "f1": self.f1,
            "target_fraction": (self.tp + self.fn) / total,
            "predicted_fraction": (self.tp + self.fp) / total,
        }


def mask_confusion(predicted: np.ndarray, target: np.ndarray, threshold: float = MASK_THRESHOLD) -> MaskCounts:
    """Counts of a predicted soft mask (binarised at ``threshold``) against a binary target (at 0.5).

    ``predicted``: (..., h, w) probabilities in [0, 1] (float) or bool; ``target``: the
    same shape, bool, 0/1 or 0/255.
    """
    _check_mask_pair(predicted, target)
    p = np.asarray(predicted) >= threshold
    t = np.asarray(target) >= 0.5
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return MaskCounts(tp=tp, fp=fp, fn=fn, tn=int(p.size) - tp - fp - fn)


def mask_scores(predicted: np.ndarray, target: np.ndarray, threshold: float = MASK_THRESHOLD) -> dict[str, float]:
    """Precision, recall, IoU and F1 of one predicted mask against its target (see :class:`MaskCounts`)."""
    return mask_confusion(predicted, target, threshold).scores()


def _check_mask_pair(predicted: np.ndarray, target: np.ndarray) -> None:
    """Masks of equal shape, at least (h, w)."""
    if np.shape(predicted) != np.shape(target) or np.ndim(predicted) < 2:
        raise InputError(
            f"mask inputs must be equally shaped (..., h, w) arrays, got {np.shape(predicted)} and {np.shape(target)}"
        )


def mask_iou(predicted: np.ndarray, target: np.ndarray, threshold: float = MASK_THRESHOLD) -> float:
    """Intersection over union of a predicted soft mask (thresholded) and a binary target.

    Returns 1.0 when both masks are empty (nothing to find, nothing found).
    """
    _check_pair(predicted, target)
    return mask_confusion(predicted, target, threshold).iou


def summarize(scores: Mapping[str, float]) -> str:
    """One line ``PSNR 31.02 dB  SSIM 0.9283`` for logs."""
    return f"PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.4f}"
