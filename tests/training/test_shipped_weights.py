"""The shipped default weights remove rain and find drops on held-out, style-shifted rain they never saw,
gain on light rain, and leave frames without rain (nearly) as they are.

A broken checkpoint, a changed architecture or broken preprocessing fails here, and so do weights
that leave the drops alone or damage clean frames. The clips are small parts of the quality sets
(``ship_weights.QUALITY_SETS``: road scenes of the ``heldout`` preset with the shifted ``heldout``
rain, the ``light`` rain, and no rain, seeds 1000-1002, which no training run uses).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vimpnet_ros.evaluation.vrds_eval import evaluate_vrds
from vimpnet_ros.model.checkpoint import load_model
from vimpnet_ros.training.data import prepare_source
from vimpnet_ros.training.ship_weights import WEIGHTS_DIR, heldout_source, quality_set_source

#: Floors below what the shipped weights measure on these clips (3 videos x 8 frames, 192x128,
#: stride-1 5-frame clips; see MEASURED), so a regression fails and noise does not. The previous
#: release (``vimpnet_lite_v1``) scores IoU 0.00 here and fails the mask floor.
MIN_PSNR_GAIN_DB = 2.4
MIN_DROP_PSNR_GAIN_DB = 0.6
MIN_MASK_IOU = 0.35
#: No-harm floor: the output's PSNR against the input on clips without rain (2 videos x 6 frames), and the
#: gain on light rain (2 videos x 6 frames).
MIN_CLEAN_OUTPUT_VS_INPUT_DB = 33.0
MIN_LIGHT_PSNR_GAIN_DB = 0.3
#: What the shipped weights measured on these clips when they were shipped (fp32, Intel Xeon CPU).
MEASURED = {"psnr_gain": 2.96, "drop_psnr_gain": 1.10, "mask_iou": 0.504}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three held-out videos of 8 frames at 192x128."""
    return prepare_source(heldout_source(tmp_path_factory.mktemp("held_out") / "vrds", videos=3, frames=8))


@pytest.fixture(scope="module")
def shipped() -> torch.nn.Module:
    """The shipped default weights, loaded strictly (fails if the architecture changed)."""
    path = WEIGHTS_DIR / "vimpnet_lite.pth"
    assert path.is_file(), f"the package must ship {path}"
    return load_model(path, "vimpnet_lite")


def test_shipped_weights_remove_rain_and_find_drops(held_out: Path, shipped: torch.nn.Module) -> None:
    result = evaluate_vrds(shipped, held_out, clip_length=5, stride=1)
    gain = result.restored["psnr"] - result.rainy_input["psnr"]
    drop_gain = result.restored["psnr_in_mask"] - result.rainy_input["psnr_in_mask"]
    assert gain >= MIN_PSNR_GAIN_DB, result.to_dict()
    assert drop_gain >= MIN_DROP_PSNR_GAIN_DB, result.to_dict()
    assert result.drop_mask_iou >= MIN_MASK_IOU, result.to_dict()


@pytest.mark.parametrize("name", ["clean", "light"])
def test_shipped_weights_do_no_harm(name: str, shipped: torch.nn.Module, tmp_path: Path) -> None:
    """Without rain the output stays close to the input; on light rain the frames still gain."""
    data = prepare_source(quality_set_source(name, tmp_path / name, videos=2, frames=6))
    result = evaluate_vrds(shipped, data, clip_length=5, stride=1)
    if name == "clean":
        assert result.output_vs_input["psnr"] >= MIN_CLEAN_OUTPUT_VS_INPUT_DB, result.to_dict()
    else:
        assert result.gain["psnr"] >= MIN_LIGHT_PSNR_GAIN_DB, result.to_dict()
