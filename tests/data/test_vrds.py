"""VRDS-layout loader: scanning errors, shared augmentation, determinism with workers and samplers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from vimpnet_ros.data.layout import STREAMS, frame_name, scan_vrds
from vimpnet_ros.data.vrds import VRDSDataset, VRDSTestDataset
from vimpnet_ros.errors import DatasetError


def test_scan_finds_videos_and_sizes(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"b": (7, 20, 24), "a": (6, 20, 24)})
    index = scan_vrds(root)
    assert [video.name for video in index.videos] == ["a", "b"]
    assert [video.num_frames for video in index.videos] == [6, 7]
    assert (index.videos[0].height, index.videos[0].width) == (20, 24)
    assert index.num_frames == 13
    assert index.videos[0].frames["lq"][0].name == frame_name(0)


def test_missing_root_and_stream_folder(make_vrds: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_vrds(tmp_path / "nowhere")
    root = make_vrds({"a": (5, 16, 16)}, streams=("lq", "gt"))
    with pytest.raises(DatasetError, match=r"lacks the stream folder.*01drop"):
        scan_vrds(root)
    assert len(scan_vrds(root, ("lq", "gt")).videos) == 1


def test_video_missing_from_one_stream(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (5, 16, 16), "b": (5, 16, 16)})
    for frame in (root / "drop" / "b").iterdir():
        frame.unlink()
    (root / "drop" / "b").rmdir()
    with pytest.raises(DatasetError, match=r"missing in 'drop': \['b'\]"):
        scan_vrds(root)


def test_mismatched_frame_counts(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (5, 16, 16)})
    (root / "mstreak" / "a" / frame_name(4)).unlink()
    with pytest.raises(DatasetError, match="mismatched frame counts"):
        scan_vrds(root)


def test_mismatched_sizes(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (5, 16, 16)})
    cv2.imwrite(str(root / "gt" / "a" / frame_name(2)), np.zeros((16, 18, 3), np.uint8))
    with pytest.raises(DatasetError, match="size mismatch"):
        scan_vrds(root)
    # Without the up-front check the loader still refuses the frame when it reads it.
    dataset = VRDSDataset.from_folder(root, check_sizes=False, patch_size=8, clip_length=5)
    with pytest.raises(DatasetError, match="must have one size"):
        dataset[0]


def test_unreadable_and_non_png_frames(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (5, 16, 16)})
    broken = root / "lq" / "a" / frame_name(1)
    broken.write_bytes(broken.read_bytes()[:40])  # valid header, truncated data
    dataset = VRDSDataset.from_folder(root, patch_size=8, clip_length=5)
    with pytest.raises(DatasetError, match="cannot decode"):
        dataset[0]
    broken.write_bytes(b"not a png at all, really not")
    with pytest.raises(DatasetError, match="not a PNG"):
        scan_vrds(root)


def test_clip_and_patch_larger_than_data(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (4, 16, 16)})
    with pytest.raises(DatasetError, match="fewer than clip_length"):
        VRDSDataset.from_folder(root, clip_length=5, patch_size=8)
    with pytest.raises(DatasetError, match="smaller than the patch"):
        VRDSDataset.from_folder(root, clip_length=3, patch_size=32)


def test_sample_shapes_dtypes_and_ranges(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (8, 24, 32), "b": (6, 24, 32)})
    dataset = VRDSDataset.from_folder(root, clip_length=5, patch_size=16)
    sample = dataset[1]
    assert sample["video"] == "b"
    for stream in STREAMS:
        tensor = sample[stream]
        assert tensor.dtype == torch.float32
        assert tensor.shape == (5, 1 if stream in ("01drop", "mstreak") else 3, 16, 16)
        assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    assert set(torch.unique(sample["01drop"]).tolist()) <= {0.0, 1.0}
    assert sample["frames"].dtype == torch.int64
    assert sample["frames"].tolist() == list(range(int(sample["frames"][0]), int(sample["frames"][0]) + 5))


def _coords(sample: dict, stream: str) -> tuple[np.ndarray, np.ndarray]:
    """Recover the (x, y) source coordinates per output pixel from a coordinate-coded sample."""
    if stream in ("lq", "gt", "drop"):
        values = np.round(sample[stream].numpy() * 255).astype(int)
        return values[:, 0], values[:, 1]
    raise ValueError(stream)


def test_augmentation_identical_across_streams(make_vrds: Callable[..., Path]) -> None:
    """Every stream must show the same source pixels: decode coordinates and compare them stream by stream."""
    root = make_vrds({"a": (9, 40, 40), "b": (7, 40, 40)})
    dataset = VRDSDataset.from_folder(root, clip_length=5, patch_size=24, repeat=16, seed=3)
    seen = {"hflip": set(), "vflip": set(), "transpose": set()}
    for item in range(len(dataset)):
        sample = dataset[item]
        video, indices, plan = dataset.sample_plan(item)
        for flag in seen:
            seen[flag].add(getattr(plan, flag))
        x, y = _coords(sample, "lq")
        for stream in ("gt", "drop"):
            x_other, y_other = _coords(sample, stream)
            np.testing.assert_array_equal(x_other, x)
            np.testing.assert_array_equal(y_other, y)
        np.testing.assert_array_equal(np.round(sample["mstreak"].numpy()[:, 0] * 255).astype(int), x)
        np.testing.assert_array_equal(sample["01drop"].numpy()[:, 0], (x >= y).astype(np.float32))
        # Frame indices in the blue channel match the reported indices.
        offset = sorted(["a", "b"]).index(video.name)
        blue = np.round(sample["lq"].numpy()[:, 2] * 255).astype(int)
        assert (blue == (10 * sample["frames"].numpy() + offset)[:, None, None]).all()
        assert sample["frames"].tolist() == indices
        # The decoded coordinates are exactly the planned crop, flip and transpose of the full frame.
        grid_y, grid_x = np.mgrid[0:40, 0:40]
        expected_x = plan.apply(np.repeat(grid_x[None], 5, axis=0))
        expected_y = plan.apply(np.repeat(grid_y[None], 5, axis=0))
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y, expected_y)
    assert all(values == {False, True} for values in seen.values()), seen


def test_transpose_moves_x_to_the_height_axis(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (5, 32, 32)})
    dataset = VRDSDataset.from_folder(root, clip_length=5, patch_size=16, repeat=32)
    for item in range(len(dataset)):
        _, _, plan = dataset.sample_plan(item)
        if plan.transpose and not plan.hflip and not plan.vflip:
            x, _ = _coords(dataset[item], "lq")
            assert (np.diff(x[0], axis=0) == 1).all() and (np.diff(x[0], axis=1) == 0).all()
            return
    pytest.fail("no pure transpose drawn in 32 samples")


def test_no_augmentation_and_non_square_patches(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (5, 32, 40)})
    plain = VRDSDataset.from_folder(root, clip_length=5, patch_size=None, augment=False)
    x, _y = _coords(plain[0], "lq")
    np.testing.assert_array_equal(x[0], np.mgrid[0:32, 0:40][1])
    rect = VRDSDataset.from_folder(root, clip_length=5, patch_size=(8, 24), repeat=20)
    assert {tuple(rect[i]["lq"].shape) for i in range(len(rect))} == {(5, 3, 8, 24)}


def test_determinism_seed_and_epoch(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (12, 40, 40)})
    first = VRDSDataset.from_folder(root, patch_size=16, repeat=8, seed=5)
    second = VRDSDataset.from_folder(root, patch_size=16, repeat=8, seed=5)
    other_seed = VRDSDataset.from_folder(root, patch_size=16, repeat=8, seed=6)
    plans = [first.sample_plan(i) for i in range(8)]
    assert plans == [second.sample_plan(i) for i in range(8)]
    assert plans != [other_seed.sample_plan(i) for i in range(8)]
    first.set_epoch(1)
    assert plans != [first.sample_plan(i) for i in range(8)]
    first.set_epoch(0)
    assert plans == [first.sample_plan(i) for i in range(8)]


def _batches(loader: DataLoader) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    return [(batch["video"], batch["frames"], batch["lq"]) for batch in loader]


def test_dataloader_workers_do_not_change_samples(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (8, 24, 24), "b": (8, 24, 24)})
    dataset = VRDSDataset.from_folder(root, patch_size=16, repeat=3, seed=1)
    single = _batches(DataLoader(dataset, batch_size=2, num_workers=0))
    workers = _batches(DataLoader(dataset, batch_size=2, num_workers=2))
    assert len(single) == len(workers) == 3
    for (videos_a, frames_a, lq_a), (videos_b, frames_b, lq_b) in zip(single, workers, strict=True):
        assert videos_a == videos_b
        assert torch.equal(frames_a, frames_b)
        assert torch.equal(lq_a, lq_b)


def test_distributed_sampler_split_is_disjoint_and_deterministic(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (8, 24, 24), "b": (8, 24, 24)})
    dataset = VRDSDataset.from_folder(root, patch_size=16, repeat=4, seed=2)

    def rank_samples(rank: int, epoch: int) -> list[tuple[str, tuple[int, ...]]]:
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=2)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=1, sampler=sampler)
        return [(batch["video"][0], tuple(batch["frames"][0].tolist())) for batch in loader]

    indices = [list(DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=2)) for rank in range(2)]
    assert not set(indices[0]) & set(indices[1])
    assert sorted(indices[0] + indices[1]) == list(range(len(dataset)))
    assert rank_samples(0, 0) == rank_samples(0, 0)
    assert rank_samples(0, 0) != rank_samples(0, 1)


def test_test_dataset_whole_videos_and_sequential_clips(make_vrds: Callable[..., Path]) -> None:
    root = make_vrds({"a": (7, 16, 20), "b": (5, 16, 20)}, streams=("lq", "gt"))
    whole = VRDSTestDataset.from_folder(root)
    assert len(whole) == 2
    sample = whole[0]
    assert set(sample) == {"lq", "gt", "video", "frames"}
    assert sample["lq"].shape == (7, 3, 16, 20)
    assert sample["frames"].tolist() == list(range(7))
    clips = VRDSTestDataset.from_folder(root, clip_length=5)
    starts = [(clips[i]["video"], clips[i]["frames"].tolist()[0]) for i in range(len(clips))]
    assert starts == [("a", 0), ("a", 2), ("b", 0)]
    strided = VRDSTestDataset.from_folder(root, clip_length=5, stride=1)
    assert len(strided) == 3 + 1
    blue = np.round(clips[1]["gt"].numpy()[:, 2, 0, 0] * 255).astype(int)
    assert blue.tolist() == [10 * f for f in range(2, 7)]
    with pytest.raises(DatasetError, match="fewer than clip_length"):
        VRDSTestDataset.from_folder(root, clip_length=6)
