"""The shipped default weights beat the rainy input on synthetic rain they never saw.

A broken checkpoint, a changed architecture or broken preprocessing fails here. The
held-out clip uses rain seed 1000 (training used seed 1, validation seed 999).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vimpnet_ros.evaluation.vrds_eval import evaluate_vrds
from vimpnet_ros.model.checkpoint import load_model
from vimpnet_ros.training.config import DataSource
from vimpnet_ros.training.data import prepare_source
from vimpnet_ros.training.ship_weights import HELD_OUT_SEED, WEIGHTS_DIR

#: Measured on this exact clip set (3 videos x 8 frames, seed 1000, stride-1 clips): PSNR gain +2.26 dB
#: (per video +0.29 / +1.28 / +5.21), SSIM gain +0.043. The full held-out set (6 videos x 12 frames) gives
#: +3.35 dB / +0.059 (vimpnet_ros/weights/vimpnet_lite.json). The floors leave ~0.75 dB / ~0.02 of margin;
#: the previous, identity-like release (+0.26 dB / -0.0007 here) fails them, and so does a broken
#: checkpoint, architecture or preprocessing.
MIN_PSNR_GAIN_DB = 1.5
MIN_SSIM_GAIN = 0.02


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three held-out videos of 8 frames at 192x128."""
    root = tmp_path_factory.mktemp("held_out") / "vrds"
    source = DataSource(
        type="synthetic", root=str(root), num_videos=3, num_frames=8, size=(192, 128), seed=HELD_OUT_SEED
    )
    return prepare_source(source)


def test_shipped_weights_load_and_beat_the_rainy_input(held_out: Path) -> None:
    path = WEIGHTS_DIR / "vimpnet_lite.pth"
    assert path.is_file(), f"the package must ship {path}"
    model = load_model(path, "vimpnet_lite")  # strict: fails if the architecture changed
    result = evaluate_vrds(model, held_out, clip_length=5, stride=1)
    gain_psnr = result.restored["psnr"] - result.rainy_input["psnr"]
    gain_ssim = result.restored["ssim"] - result.rainy_input["ssim"]
    assert gain_psnr >= MIN_PSNR_GAIN_DB, result.to_dict()
    assert gain_ssim >= MIN_SSIM_GAIN, result.to_dict()
