"""PSNR/SSIM as the reference computes them, cross-checked against scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vimpnet_ros.errors import InputError
from vimpnet_ros.evaluation.metrics import VideoScores, aggregate, mask_iou, psnr, ssim, to_uint8


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
