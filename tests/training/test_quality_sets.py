"""The quality sets: one registry, seeds no training config uses, and the model card's summary of a result."""

from __future__ import annotations

import pytest

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.training.config import load_train_config, packaged_configs
from vimpnet_ros.training.ship_weights import QUALITY_SETS, quality_set, quality_set_source, set_summary


def test_sets_are_registered_once_with_seeds_no_training_config_uses() -> None:
    assert set(QUALITY_SETS) == {"heldout", "light", "clean"}
    used = set()
    for name in packaged_configs():
        config = load_train_config(name)
        used |= {config.data.train.seed} | ({config.data.val.seed} if config.data.val else set())
    assert not used & {spec.seed for spec in QUALITY_SETS.values()}
    source = quality_set_source("clean", "/tmp/unused", videos=2, frames=6)
    assert (source.rain_config, source.seed, source.scene, source.num_videos) == ("none", 1002, "heldout", 2)
    with pytest.raises(ConfigError, match="heldout"):
        quality_set("dry")


def test_summary_scores_rain_sets_by_gain_and_the_clean_set_by_change() -> None:
    result = {
        "restored": {"psnr": 25.0},
        "rainy_input": {"psnr": 20.0},
        "gain": {"psnr": 5.0, "psnr_in_mask": 2.0, "psnr_outside_mask": 6.0},
        "drop_mask_iou": 0.5,
        "output_vs_input": {"psnr": 41.0},
        "frames_worse": {"count": 2, "frames": 96, "worst_psnr_gain": -0.3},
    }
    rain = set_summary(QUALITY_SETS["heldout"], result)
    assert (rain["gain_psnr"], rain["gain_psnr_in_mask"], rain["drop_mask_iou"]) == (5.0, 2.0, 0.5)
    assert (rain["frames_worse"], rain["worst_psnr_gain"]) == (2, -0.3)
    assert set_summary(QUALITY_SETS["heldout"], {**result, "frames_worse": None})["frames_worse"] is None
    clean = set_summary(QUALITY_SETS["clean"], result)
    assert clean["output_vs_input_psnr"] == 41.0 and "gain_psnr" not in clean
