"""PSNR/SSIM as the reference computes them (cross-checked against scikit-image), masked PSNR, mask scores and the
quality summary of a stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vimpnet_ros.errors import InputError
from vimpnet_ros.evaluation.metrics import (
    MASK_THRESHOLD,
    VideoScores,
    aggregate,
    mask_confusion,
    mask_iou,
    mask_scores,
    psnr,
    psnr_in_mask,
    psnr_outside_mask,
    ssim,
    to_uint8,
)
from vimpnet_ros.evaluation.scoring import FrameRecord, summarize_quality


def _pair(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.integers(-25, 26, shape)
    b = np.clip(a.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    return a, b


def _skimage_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        a,
        b,
        data_range=data_range,
        channel_axis=-1 if a.ndim == 3 else None,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


@pytest.mark.parametrize("shape", [(32, 45, 3), (17, 23, 3), (40, 40)])
def test_uint8_scores_match_skimage(shape: tuple[int, ...]) -> None:
    a, b = _pair(shape, seed=len(shape) + shape[0])
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-10)
    assert ssim(a, b) == pytest.approx(_skimage_ssim(a, b, 255), abs=1e-9)


def test_float_scores_with_data_range_one_match_skimage_and_uint8() -> None:
    a, b = _pair((36, 28, 3), seed=3)
    af, bf = a / 255.0, b / 255.0
    assert psnr(af, bf, data_range=1.0) == pytest.approx(peak_signal_noise_ratio(af, bf, data_range=1.0))
    assert ssim(af, bf, data_range=1.0) == pytest.approx(_skimage_ssim(af, bf, 1.0), abs=1e-9)
    # Same picture on two scales: the same numbers.
    assert psnr(af, bf, 1.0) == pytest.approx(psnr(a, b))
    assert ssim(af, bf, 1.0) == pytest.approx(ssim(a, b), abs=1e-9)


def test_identical_frames() -> None:
    a, _ = _pair((20, 20, 3), seed=1)
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0)


def test_known_psnr_value() -> None:
    a = np.zeros((16, 16, 3), dtype=np.uint8)
    b = np.full((16, 16, 3), 16, dtype=np.uint8)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 16))


def test_mean_per_video_then_over_videos() -> None:
    short, long = VideoScores("short"), VideoScores("long")
    frames = [_pair((24, 24, 3), seed=s) for s in range(5)]
    for a, b in frames[:1]:
        short.add(b, a)
    for a, b in frames[1:]:
        long.add(b, a)
    result = aggregate([short, long])
    per_video = [psnr(frames[0][1], frames[0][0]), np.mean([psnr(b, a) for a, b in frames[1:]])]
    assert result["psnr"] == pytest.approx(np.mean(per_video))
    # Not the mean over all frames: each video counts once.
    assert result["psnr"] != pytest.approx(np.mean([psnr(b, a) for a, b in frames]))
    assert result["num_videos"] == 2 and result["num_frames"] == 5


def test_to_uint8_rounds_like_tensor2img() -> None:
    values = np.array([-0.1, 0.0, 0.5 / 255, 1.49 / 255, 0.999, 1.2])
    assert to_uint8(values).tolist() == [0, 0, 0, 1, 255, 255]


def test_mask_iou() -> None:
    target = np.zeros((4, 4))
    target[:2] = 1
    predicted = np.zeros((4, 4))
    predicted[1:3] = 0.9
    assert mask_iou(predicted, target) == pytest.approx(4 / 12)
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


def test_errors_are_input_errors() -> None:
    with pytest.raises(InputError, match="differ in shape"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(InputError, match="at least 11x11"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_psnr_inside_and_outside_a_mask() -> None:
    gt = np.zeros((4, 6, 3), np.uint8)
    restored = gt.copy()
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:4] = True  # 4 pixels
    restored[mask] = 10  # error only inside
    restored[0, 0] = 1  # a small error outside
    assert psnr_in_mask(restored, gt, mask) == pytest.approx(10 * math.log10(255**2 / 100.0))
    assert psnr_outside_mask(restored, gt, mask) == pytest.approx(10 * math.log10(255**2 / (3 / (20 * 3))))
    # Float masks (a 01drop frame read as 0/1) are binarised at 0.5; empty regions give NaN.
    assert psnr_in_mask(restored, gt, mask.astype(np.float32) * 0.9) == psnr_in_mask(restored, gt, mask)
    assert math.isnan(psnr_in_mask(restored, gt, np.zeros((4, 6), bool)))
    assert math.isnan(psnr_outside_mask(restored, gt, np.ones((4, 6), bool)))
    with pytest.raises(InputError, match="does not match"):
        psnr_in_mask(restored, gt, np.zeros((4, 5), bool))


def test_mask_counts_precision_recall_iou_f1() -> None:
    target = np.zeros((2, 4, 4))
    target[:, :2] = 1  # 16 drop pixels
    predicted = np.zeros((2, 4, 4))
    predicted[:, 1:3] = 0.7  # 16 predicted, 8 of them right
    counts = mask_confusion(predicted, target)
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (8, 8, 8, 8)
    scores = mask_scores(predicted, target)
    assert scores["precision"] == pytest.approx(0.5) and scores["recall"] == pytest.approx(0.5)
    assert scores["iou"] == pytest.approx(8 / 24) and scores["f1"] == pytest.approx(0.5)
    assert scores["target_fraction"] == pytest.approx(0.5)
    # The published threshold is 0.5; a higher one finds nothing: precision undefined, recall 0.
    none = mask_confusion(predicted, target, threshold=0.8)
    assert math.isnan(none.precision) and none.recall == 0.0 and none.iou == 0.0
    # Counts add up over frames; both empty = IoU 1 (nothing to find, nothing found), as mask_iou.
    total = counts + none
    assert total.tp == 8 and total.fn == 24
    empty = mask_confusion(np.zeros((3, 3)), np.zeros((3, 3)))
    assert empty.iou == 1.0 and empty.f1 == 1.0 and math.isnan(empty.recall)
    assert MASK_THRESHOLD == 0.5
    with pytest.raises(InputError, match="equally shaped"):
        mask_confusion(np.zeros((3, 3)), np.zeros((3, 4)))


def test_video_scores_with_masks_skip_frames_without_drops() -> None:
    gt = np.full((12, 12, 3), 100, np.uint8)
    noisy = gt.copy()
    noisy[:4] = 110
    with_drop = np.zeros((12, 12), bool)
    with_drop[:4] = True
    scores = VideoScores("v")
    scores.add(noisy, gt, mask=with_drop)
    scores.add(noisy, gt, mask=np.zeros((12, 12), bool))  # no drop: no in-mask score for this frame
    assert scores.mean_psnr_in_mask == pytest.approx(10 * math.log10(255**2 / 100.0))
    assert len(scores.psnr_in_mask) == 2 and math.isnan(scores.psnr_in_mask[1])
    summary = aggregate([scores])
    assert summary["psnr_in_mask"] == pytest.approx(scores.mean_psnr_in_mask)
    assert "psnr_in_mask" not in aggregate([VideoScores("plain", psnr=[30.0], ssim=[0.9])])


def test_the_quality_summary_counts_the_frames_made_worse() -> None:
    """A mean gain hides a frame that lost: the summary counts frames whose PSNR fell by more than 0.01 dB and names
    the worst; frames left as they were (or changed by rounding) are not counted; without ground truth, None."""

    def frame(index: int, psnr_in: float | None, psnr_out: float | None) -> FrameRecord:
        return FrameRecord("/camera/image", index, index, psnr_in=psnr_in, psnr_out=psnr_out)

    frames = [frame(0, 30.0, 33.0), frame(1, 30.0, 29.5), frame(2, 30.0, 29.995), frame(3, 30.0, 30.0)]
    quality = summarize_quality(frames)
    assert quality["psnr_gain"] == pytest.approx(0.62375)
    assert quality["frames_worse"] == 1 and quality["worst_psnr_gain"] == pytest.approx(-0.5)
    unscored = summarize_quality([frame(0, None, None)])
    assert unscored["frames_worse"] is None and unscored["worst_psnr_gain"] is None
