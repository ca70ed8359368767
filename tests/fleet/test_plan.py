"""Inputs to bags and bags to work units (no Ray needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.fleet.conftest import FleetBags
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.evaluation.bag_eval import Segment
from vimpnet_ros.fleet.plan import FleetOptions, find_bags, output_names, plan_bag, segments

MS = 1_000_000


def test_segments_cover_every_frame_once_each_with_its_warm_up() -> None:
    stamps = [i * 100 * MS for i in range(25)]  # 10 Hz
    cut = segments(stamps, 1e9, warmup=4)
    assert [(s.start, s.end) for s in cut] == [(0, 10), (10, 20), (20, 25)]
    assert [(s.read_from, s.read_from_ns) for s in cut] == [(0, None), (6, 600 * MS), (16, 1600 * MS)]
    assert segments(stamps, math.inf, warmup=4) == [Segment(0, 25)]  # gating on: the topic is one unit
    assert segments([], 1e9, warmup=4) == []


def test_reading_starts_at_the_first_frame_sharing_the_warm_ups_bag_time() -> None:
    stamps = [0, 100 * MS, 100 * MS, 200 * MS, 300 * MS, 1000 * MS, 1100 * MS]
    second = segments(stamps, 1e9, warmup=3)[1]
    assert (second.start, second.read_from, second.read_from_ns) == (5, 1, 100 * MS)


def test_inputs_are_bags_folders_and_globs(fleet_bags: FleetBags, tmp_path: Path) -> None:
    inputs = fleet_bags.inputs
    everything = find_bags([inputs])
    assert [b.name for b in everything] == ["drive_corrupt", "drive_nogt", "drive_gt"]
    assert find_bags([inputs / "drive_gt", str(inputs / "cars" / "drive_*")]) == [
        (inputs / "drive_gt").resolve(),
        (inputs / "cars" / "drive_corrupt").resolve(),
        (inputs / "cars" / "drive_nogt").resolve(),
    ]
    assert find_bags([inputs / "drive_gt", inputs]) == [(inputs / "drive_gt").resolve(), *everything[:2]]
    for missing in (tmp_path / "nothing", str(tmp_path / "no_*")):
        with pytest.raises(ConfigError, match="does not exist"):
            find_bags([missing])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no rosbag2 folders"):
        find_bags([tmp_path / "empty"])
    names = output_names([Path("/a/drive"), Path("/b/drive"), Path("/c/other")])
    assert names[Path("/c/other")] == "other" and len(set(names.values())) == 3


def test_a_bag_is_planned_per_camera_topic_with_its_ground_truth(fleet_bags: FleetBags, tmp_path: Path) -> None:
    options = FleetOptions(output=tmp_path, segment_s=0.35)
    plan = plan_bag(fleet_bags.inputs / "drive_gt", "drive_gt", fleet_bags.settings, options)
    assert plan.storage == "mcap" and plan.frames == 12 and {u.topic for u in plan.units} == {"/camera/image"}
    assert [u.segment.start for u in plan.units] == sorted(u.segment.start for u in plan.units)
    assert len({u.key for u in plan.units}) == len(plan.units)
    nogt = plan_bag(fleet_bags.inputs / "cars" / "drive_nogt", "drive_nogt", fleet_bags.settings, options)
    assert nogt.storage == "sqlite3" and nogt.frames == 9
    gated = fleet_bags.settings.replace(gating_enabled=True)
    assert len(plan_bag(fleet_bags.inputs / "drive_gt", "drive_gt", gated, options).units) == 1
    for bad in ({"segment_s": 0}, {"threads_per_worker": 0}, {"workers": 0}, {"retries": -1}):
        with pytest.raises(ConfigError):
            FleetOptions(output=tmp_path, **bad)


def test_a_bag_that_ends_before_its_metadata_says_is_refused_rather_than_cut_short(
    fleet_bags: FleetBags, tmp_path: Path
) -> None:
    """A storage file that lost its last camera frames (a damaged copy) while metadata.yaml still lists them."""
    import shutil

    from vimpnet_ros.bags.io import BagReader, BagWriter
    from vimpnet_ros.errors import BagError

    source, bag = fleet_bags.inputs / "drive_gt", tmp_path / "drive_gt"
    with BagReader(source) as reader, BagWriter(bag, "mcap") as writer:
        frames = 0
        for message in reader.messages():
            frames += message.topic == "/camera/image"
            if frames <= 9:
                writer.write_passthrough(message.connection, message.timestamp, message.raw)
    shutil.copy(source / "metadata.yaml", bag / "metadata.yaml")
    with pytest.raises(BagError, match=r"/camera/image \(9 of 12\)"):
        plan_bag(bag, "drive_gt", fleet_bags.settings, FleetOptions(output=tmp_path / "out"))
