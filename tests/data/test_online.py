"""Clips rendered on the fly: shapes, determinism per item (any worker count), stream consistency, collation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vimpnet_ros.data.layout import STREAMS
from vimpnet_ros.data.online import OnlineRainDataset, OnlineSpec, collate_items, worker_init
from vimpnet_ros.data.rain import DropConfig, RainConfig, SensorConfig, StreakConfig
from vimpnet_ros.errors import DatasetError

SPEC = OnlineSpec(num_items=50, num_frames=6, size=(48, 40), clip_length=3, crop_size=32, clips_per_item=2, seed=4)
#: No camera effects, so lq equals the drop stream where no streak falls.
PLAIN = RainConfig(
    streaks=StreakConfig(probability=1.0),
    drops=DropConfig(probability=1.0, static_probability=0.0),
    sensor=SensorConfig(probability=0.0),
)


@pytest.fixture(scope="module")
def dataset() -> OnlineRainDataset:
    return OnlineRainDataset(SPEC, PLAIN)


def test_an_item_is_k_clips_of_every_stream(dataset: OnlineRainDataset) -> None:
    item = dataset[7]
    assert set(item) == set(STREAMS)
    for stream in ("lq", "gt", "drop"):
        assert item[stream].shape == (2, 3, 3, 32, 32) and item[stream].dtype == torch.float32
    for stream in ("01drop", "mstreak"):
        assert item[stream].shape == (2, 3, 1, 32, 32)
    assert set(torch.unique(item["01drop"]).tolist()) <= {0.0, 1.0}
    assert float(item["lq"].min()) >= 0.0 and float(item["lq"].max()) <= 1.0
    # The crop and flips are shared by the streams: lq is the drop stream wherever no streak falls.
    no_streak = (item["mstreak"] == 0).expand_as(item["lq"])
    torch.testing.assert_close(item["lq"][no_streak], item["drop"][no_streak])
    # Two clips of one item share the scene but not the rain.
    assert not torch.equal(item["mstreak"][0], item["mstreak"][1])
    assert len(dataset) == 50


def test_items_depend_only_on_their_index(dataset: OnlineRainDataset) -> None:
    first, again = dataset[3], dataset[3]
    for stream in STREAMS:
        torch.testing.assert_close(first[stream], again[stream], rtol=0, atol=0)
    assert not torch.equal(dataset[4]["gt"], first["gt"])
    loader = DataLoader(dataset, batch_size=2, sampler=[3, 4, 9, 1], num_workers=2, collate_fn=collate_items,
                        worker_init_fn=worker_init, multiprocessing_context="spawn")  # fmt: skip
    batches = list(loader)
    assert batches[0]["lq"].shape == (4, 3, 3, 32, 32)  # 2 items x 2 clips
    torch.testing.assert_close(batches[0]["lq"][:2], first["lq"], rtol=0, atol=0)  # same in a worker process
    with pytest.raises(IndexError):
        dataset[50]


def test_bundled_photographs_as_the_clean_source() -> None:
    dataset = OnlineRainDataset(dataclasses.replace(SPEC, clean="bundled", clips_per_item=1))
    clean = dataset.clean_clip(0)
    assert clean.shape == (6, 40, 48, 3)
    assert dataset[0]["gt"].shape == (1, 3, 3, 32, 32)


def test_specs_that_cannot_make_a_clip_are_refused() -> None:
    with pytest.raises(DatasetError, match="clip_length"):
        dataclasses.replace(SPEC, num_frames=2)
    with pytest.raises(DatasetError, match="smaller than the crop"):
        dataclasses.replace(SPEC, crop_size=64)
    with pytest.raises(DatasetError, match="clean source"):
        dataclasses.replace(SPEC, clean="photos")
    with pytest.raises(Exception, match="preset"):
        dataclasses.replace(SPEC, scene="mars")
    assert np.all(np.array(SPEC.size) >= SPEC.crop_size)


def test_footage_supplies_the_clean_clips_of_its_share_of_items(tmp_path: Path) -> None:
    import cv2

    frames = np.random.default_rng(0).integers(0, 255, (8, 720, 1280, 3), dtype=np.uint8)
    (tmp_path / "drive").mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / "drive" / f"{i:04d}.png"), frame[..., ::-1])
    spec = dataclasses.replace(SPEC, num_items=12, footage=(str(tmp_path / "drive"),), footage_fraction=0.5)
    dataset = OnlineRainDataset(spec, PLAIN)
    from vimpnet_ros.data.sources import fit_frame

    fitted = [fit_frame(frame, spec.size) for frame in frames]
    from_footage = [
        i for i in range(spec.num_items) if any(np.array_equal(dataset.clean_clip(i)[0], f) for f in fitted)
    ]
    assert 0 < len(from_footage) < spec.num_items  # about half, drawn per item
    plain = OnlineRainDataset(SPEC, PLAIN)
    for i in set(range(spec.num_items)) - set(from_footage):  # the other items are the road scenes they were
        assert np.array_equal(dataset.clean_clip(i), plain.clean_clip(i))
    item = dataset[from_footage[0]]
    assert item["lq"].shape == (2, 3, 3, 32, 32)
    with pytest.raises(DatasetError, match="footage and footage_fraction go together"):
        dataclasses.replace(SPEC, footage_fraction=0.5)
    with pytest.raises(DatasetError, match="no recording of at least 9 frames"):
        OnlineRainDataset(dataclasses.replace(spec, num_frames=9, clip_length=3), PLAIN)
