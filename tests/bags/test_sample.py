"""The sample bag: deterministic, ground truth consistent with the rainy frames, both transports."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.bags.conftest import TINY
from vimpnet_ros.bags.images import message_to_rgb
from vimpnet_ros.bags.io import BagReader
from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag


def _frames(bag: Path, topic: str) -> list[np.ndarray]:
    with BagReader(bag) as reader:
        out = []
        for message in reader.messages([topic]):
            msg = reader.deserialize(message)
            if getattr(msg, "encoding", "") == "mono8":
                out.append(np.asarray(msg.data).reshape(msg.height, msg.width))
            else:
                out.append(message_to_rgb(msg, message.msgtype))
        return out


def test_rain_only_where_the_ground_truth_says(tiny_bag_mcap: Path) -> None:
    rainy = _frames(tiny_bag_mcap, "/camera/image")
    clean = _frames(tiny_bag_mcap, "/camera/gt/image")
    masks = _frames(tiny_bag_mcap, "/camera/gt/drop_mask")
    streaks = _frames(tiny_bag_mcap, "/camera/gt/streak_map")
    assert len(rainy) == len(clean) == len(masks) == len(streaks) == TINY.num_frames
    assert rainy[0].shape == (48, 64, 3)
    dry_differences, wet_differences = [], []
    for lq, gt, mask, streak in zip(rainy, clean, masks, streaks, strict=True):
        assert set(np.unique(mask)) <= {0, 255}
        # Drop edges blend softly a pixel or two beyond the binary mask: leave a margin around drops.
        near_drop = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0
        dry = ~near_drop & (streak == 0)
        difference = lq.astype(int) - gt.astype(int)
        dry_differences.append(difference[dry])
        wet_differences.append(difference[~dry])
    dry, wet = np.concatenate(dry_differences), np.concatenate(wet_differences)
    rained_pixels = wet.size
    # Away from rain the rainy frame is the clean one plus the camera's noise and JPEG (rendered on the rainy
    # frame only): small and unbiased; where the ground truth says it rains, the change is several times larger.
    # (Measured on seeds 3-5: dry mean |d| 5.3-6.1 levels, mean -0.3..-0.8; wet 26-36.)
    assert np.abs(dry).mean() < 8.0 and abs(dry.mean()) < 2.0
    assert np.abs(wet).mean() > 3 * np.abs(dry).mean()
    assert rained_pixels > 0, "the sample must actually rain"


def test_same_seed_same_bag_and_compressed_variant(tmp_path: Path, tiny_bag_mcap: Path) -> None:
    again = tmp_path / "again"
    write_sample_bag(again, TINY)
    for a, b in zip(_frames(again, "/camera/image"), _frames(tiny_bag_mcap, "/camera/image"), strict=True):
        np.testing.assert_array_equal(a, b)
    compressed = tmp_path / "jpeg"
    topics = write_sample_bag(compressed, SampleBagConfig(**{**TINY.__dict__, "compressed": True, "jpeg_quality": 100}))
    assert topics.image == "/camera/image/compressed"
    decoded = _frames(compressed, topics.image)
    raw = _frames(tiny_bag_mcap, "/camera/image")
    assert len(decoded) == len(raw)
    assert (
        np.mean(np.abs(decoded[0].astype(float) - raw[0])) < 6.0
    )  # JPEG chroma subsampling; swapped channels would give ~40
