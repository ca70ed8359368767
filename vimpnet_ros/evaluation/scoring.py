"""Per-frame scores of a restored camera stream and their summary (bag-eval and the demo's live scoring).

Each frame is scored against its ground truth where the bag has it: RGB PSNR and SSIM of the
input and of the output; PSNR inside the ground-truth drop mask and outside it (how well drops
are removed, and whether the rest of the frame is kept); and the published raindrop mask's
precision, recall, IoU and F1 at the published threshold. The summary averages frames and
also sums the mask's pixel counts over the topic, so its IoU weighs every pixel once; it also counts
the frames the model made worse (``frames_worse``) and names the largest loss (``worst_psnr_gain``),
which a mean over frames hides. A frame the node decoded smaller than its camera sent it (the
frame cost budget, ``frame_cost_periods``) is scored against its ground truth resized to the same
size, and named in the report's notes (:func:`gt_resized_note`); ground truth of another shape stops the scoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

from vimpnet_ros.bags.stats import Percentiles
from vimpnet_ros.errors import InputError
from vimpnet_ros.evaluation.metrics import (
    MaskCounts,
    capped_psnr,
    frames_worse,
    mask_confusion,
    psnr,
    psnr_in_mask,
    psnr_outside_mask,
    ssim,
)
from vimpnet_ros.pipeline.rain import mask_level

#: Frames smaller than this are not scored with SSIM (its window).
SSIM_MIN_SIZE = 11


@dataclass
class FrameRecord:
    """One output frame: quality against GT (None without GT), rain estimate and timing."""

    topic: str
    index: int
    stamp_ns: int
    psnr_in: float | None = None
    psnr_out: float | None = None
    ssim_in: float | None = None
    ssim_out: float | None = None
    psnr_drop_in: float | None = None  # inside the ground-truth drop mask
    psnr_drop_out: float | None = None
    psnr_clear_in: float | None = None  # outside it
    psnr_clear_out: float | None = None
    mask_precision: float | None = None
    mask_recall: float | None = None
    mask_iou: float | None = None
    mask_f1: float | None = None
    psnr_vs_input: float | None = None  # the output against the input (capped): how much the frame was changed
    raindrop_coverage: float = 0.0
    streak_intensity: float = 0.0
    rain_detected: bool = False
    processing: str = "restored"  # restored | gated (passed through: dry) | fallback (passed through: model failed)
    window_frames: int = 0  # frames in the model's window for this frame
    warmup: bool = False  # the stream's cold start: left out of the latency percentiles
    inference_ms: float | None = None
    latency_ms: float | None = None
    valid: bool = True
    counts: MaskCounts | None = None  # mask pixel counts, summed over the topic (not in report.json)
    gt_resized: bool = False  # the frame was decoded smaller (frame cost budget): its GT resized to it


def _or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def score_frame(
    record: FrameRecord,
    rainy: np.ndarray,
    derained: np.ndarray,
    mask: np.ndarray,
    gt: np.ndarray | None,
    gt_mask: np.ndarray | None,
) -> None:
    """Fill the quality fields of ``record``.

    ``rainy``/``derained``/``gt``: (h, w, 3) uint8 RGB; ``mask``: the published mono8 plane (probability x 255,
    or 0/255), thresholded at 128 = the published threshold 0.5 (or the node's binary mask as published);
    ``gt_mask``: (h, w) bool. ``psnr_vs_input`` (no ground truth needed) is filled for restored frames.
    """
    if record.processing == "restored":
        record.psnr_vs_input = capped_psnr(derained, rainy)
    if gt is not None and gt.shape != rainy.shape:
        if not _decoded_smaller(gt.shape, rainy.shape):
            raise InputError(f"ground truth {gt.shape} and frame {rainy.shape} differ in size on {record.topic}")
        size = (rainy.shape[1], rainy.shape[0])
        gt = cv2.resize(gt, size, interpolation=cv2.INTER_AREA)
        if gt_mask is not None:
            gt_mask = cv2.resize(gt_mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
        record.gt_resized = True
    if gt is not None:
        record.psnr_in, record.psnr_out = psnr(rainy, gt), psnr(derained, gt)
        if min(gt.shape[:2]) >= SSIM_MIN_SIZE:
            record.ssim_in, record.ssim_out = ssim(rainy, gt), ssim(derained, gt)
    if gt_mask is None or gt_mask.shape != mask.shape:
        return
    counts = mask_confusion(mask >= mask_level(0.5), gt_mask)
    record.counts = counts
    record.mask_precision, record.mask_recall = _or_none(counts.precision), _or_none(counts.recall)
    record.mask_iou, record.mask_f1 = counts.iou, counts.f1
    if gt is not None:
        record.psnr_drop_in = _or_none(psnr_in_mask(rainy, gt, gt_mask))
        record.psnr_drop_out = _or_none(psnr_in_mask(derained, gt, gt_mask))
        record.psnr_clear_in = _or_none(psnr_outside_mask(rainy, gt, gt_mask))
        record.psnr_clear_out = _or_none(psnr_outside_mask(derained, gt, gt_mask))


def _decoded_smaller(gt_shape: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a frame of ``shape`` is its ground truth's ``gt_shape`` decoded smaller at the same aspect.

    The budget scales both sides alike, each rounded (a JPEG decoded at 1/2, 1/4 or 1/8 scale rounds
    up): the two sides' scales agree to a pixel of either.
    """
    (gt_h, gt_w), (h, w) = gt_shape[:2], shape[:2]
    smaller = gt_shape[2:] == shape[2:] and h <= gt_h and w <= gt_w
    return smaller and abs(h * gt_w - w * gt_h) <= max(gt_w, gt_h)


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


#: Per-frame fields averaged into a topic's quality summary, and the (before, after) pairs reported as gains.
AVERAGED = (
    "psnr_in",
    "psnr_out",
    "ssim_in",
    "ssim_out",
    "psnr_drop_in",
    "psnr_drop_out",
    "psnr_clear_in",
    "psnr_clear_out",
)
GAINS = {
    "psnr_gain": ("psnr_in", "psnr_out"),
    "ssim_gain": ("ssim_in", "ssim_out"),
    "psnr_drop_gain": ("psnr_drop_in", "psnr_drop_out"),
    "psnr_clear_gain": ("psnr_clear_in", "psnr_clear_out"),
}


def summarize_quality(records: Sequence[FrameRecord]) -> dict[str, float | None]:
    """Means over frames (finite values: PSNR of identical frames is inf and left out), gains, and the topic's mask.

    ``frames_worse``, ``worst_psnr_gain``: :func:`~vimpnet_ros.evaluation.metrics.frames_worse` over the frames
    with ground truth (None without).
    ``mask_*`` are computed from the pixel counts summed over the topic's frames.
    """
    quality: dict[str, float | None] = {name: _mean([getattr(r, name) for r in records]) for name in AVERAGED}
    for gain, (before, after) in GAINS.items():
        b, a = quality[before], quality[after]
        quality[gain] = None if b is None or a is None else a - b
    quality["frames_worse"], quality["worst_psnr_gain"] = frames_worse(
        [r.psnr_out - r.psnr_in for r in records if r.psnr_in is not None and r.psnr_out is not None]
    )
    counted = [r.counts for r in records if r.counts is not None]
    if counted:
        total = sum(counted, MaskCounts())
        quality.update({f"mask_{key}": _or_none(value) for key, value in total.scores().items()})
    return quality


def gt_resized_note(topic: str, records: Sequence[FrameRecord]) -> list[str]:
    """The report's note on ``topic``'s frames scored against resized ground truth (none if there are none)."""
    resized = sum(r.gt_resized for r in records if r.topic == topic)
    if not resized:
        return []
    return [
        f"{topic}: {resized} frame(s) decoded smaller than sent (frame_cost_periods) were scored against their "
        "ground truth resized to the same size"
    ]


def summarize_rain(records: Sequence[FrameRecord]) -> dict[str, float | int | None]:
    """What the model saw, known without ground truth: frames by processing, rain detected, mask area, streaks.

    ``raindrop_coverage`` is the published drop mask's area (fraction of the frame), ``streak_intensity`` the mean
    positive streak intensity; both over restored frames (gated and fallback frames have empty planes).
    ``output_vs_input_psnr``: mean PSNR of the restored frames against their input (each capped at
    :data:`~vimpnet_ros.evaluation.metrics.MAX_PSNR_DB`): on a bag without rain, how much the model changes
    what it should leave alone.
    """
    restored = [r for r in records if r.processing == "restored"]
    coverage = [r.raindrop_coverage for r in restored]
    streaks = [r.streak_intensity for r in restored]
    total = len(records)
    return {
        "restored": len(restored),
        "gated": sum(r.processing == "gated" for r in records),
        "fallback": sum(r.processing == "fallback" for r in records),
        "rain_detected_fraction": sum(r.rain_detected for r in records) / total if total else None,
        "raindrop_coverage_mean": _mean(coverage),
        "raindrop_coverage_max": max(coverage) if coverage else None,
        "streak_intensity_mean": _mean(streaks),
        "streak_intensity_max": max(streaks) if streaks else None,
        "output_vs_input_psnr": _mean([r.psnr_vs_input for r in restored]),
    }


def warmup_count(window_frames: Sequence[int], window_size: int) -> int:
    """How many leading frames of a stream are its cold start: those before the window first held ``window_size``.

    They run with fewer frames than every later one and the first pays the model's lazy start-up, so they describe
    neither steady-state latency nor throughput. None when the first frame already had a full window (a segment
    that starts after frames run before it); only the first when the window never fills (a short bag).
    """
    for index, frames in enumerate(window_frames):
        if frames >= window_size:
            return index
    return min(1, len(window_frames))


def summarize_timing(records: Sequence[FrameRecord], window_size: int) -> dict[str, Any]:
    """Mark each topic's warm-up frames (``record.warmup``); latency and inference percentiles of the restored rest.

    ``records`` in stream order, one topic. Returns ``warmup_frames``, ``first_frame_ms`` (the first frame's latency:
    the cold start) and ``latency_ms`` / ``inference_ms`` (:class:`Percentiles` dicts over the warm frames).
    """
    warmup = warmup_count([r.window_frames for r in records], window_size)
    for index, record in enumerate(records):
        record.warmup = index < warmup
    warm = [r for r in records[warmup:] if r.processing == "restored"]
    return {
        "warmup_frames": warmup,
        "first_frame_ms": records[0].latency_ms if records else None,
        "latency_ms": Percentiles.of([r.latency_ms for r in warm if r.latency_ms is not None]).to_dict(),
        "inference_ms": Percentiles.of([r.inference_ms for r in warm if r.inference_ms is not None]).to_dict(),
    }


def record_dict(record: FrameRecord) -> dict[str, Any]:
    """The JSON form of a frame record (without the pixel counts)."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name != "counts"}


def clean_json(value: Any) -> Any:
    """Replace NaN/inf floats (not JSON) by None / sentinel strings, recursively."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value
