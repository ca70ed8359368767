"""bag-info on real bags: counts, sizes, rates, types and image formats equal what was written; clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.bags.conftest import TINY, make_humble_like
from vimpnet_ros.bags.images import array_to_image, make_header, rgb_to_compressed
from vimpnet_ros.bags.info import format_bag_info, read_bag_info
from vimpnet_ros.bags.io import BagWriter
from vimpnet_ros.bags.sample import SAMPLE_START_NS
from vimpnet_ros.bags.typestore import make_typestore
from vimpnet_ros.cli import main
from vimpnet_ros.errors import BagError

START_NS = 1_700_000_000 * 1_000_000_000
#: topic -> (message type, period [ns], messages) of the bag written by :func:`_write_bag`.
WRITTEN = {
    "/front/image_raw": ("sensor_msgs/msg/Image", 50_000_000, 4),
    "/rear/image/compressed": ("sensor_msgs/msg/CompressedImage", 100_000_000, 3),
    "/note": ("std_msgs/msg/String", 500_000_000, 5),
}


def _write_bag(path: Path, storage: str) -> dict[str, int]:
    """Two 1280x720 cameras at 20 and 10 Hz and a 2 Hz text topic; returns the serialized bytes per topic."""
    store = make_typestore()
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    sizes = dict.fromkeys(WRITTEN, 0)
    with BagWriter(path, storage, store) as writer:
        for topic, (msgtype, period, count) in WRITTEN.items():
            for index in range(count):
                stamp = START_NS + index * period
                header = make_header(store, stamp, "cam")
                if msgtype.endswith("/Image"):
                    message = array_to_image(store, frame, "bgr8", header)
                elif msgtype.endswith("CompressedImage"):
                    message = rgb_to_compressed(store, frame, header, 80)
                else:
                    message = store.types[msgtype](data=f"note {index}")
                sizes[topic] += len(store.serialize_cdr(message, msgtype))
                writer.write(topic, message, stamp)
    return sizes


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_figures_equal_what_was_written(storage: str, tmp_path: Path) -> None:
    sizes = _write_bag(tmp_path / "bag", storage)
    info = read_bag_info(tmp_path / "bag")
    assert (info.storage, info.version, info.files) == (storage, 9, [f"bag.{'mcap' if storage == 'mcap' else 'db3'}"])
    assert info.start_ns == START_NS and info.end_ns == START_NS + 4 * 500_000_000
    assert info.duration_s == pytest.approx(2.0)
    assert info.message_count == sum(count for _, _, count in WRITTEN.values())
    topics = {t.name: t for t in info.topics}
    assert sorted(topics) == sorted(WRITTEN)
    for name, (msgtype, period, count) in WRITTEN.items():
        topic = topics[name]
        assert (topic.msgtype, topic.count, topic.total_bytes) == (msgtype, count, sizes[name])
        assert topic.mean_bytes == pytest.approx(sizes[name] / count)
        assert topic.rate_hz == pytest.approx(1e9 / period)
    assert topics["/front/image_raw"].image == {"width": 1280, "height": 720, "encoding": "bgr8"}
    rear = topics["/rear/image/compressed"].image
    assert rear is not None and (rear["width"], rear["height"], rear["decoded_as"]) == (1280, 720, "jpeg")
    assert topics["/note"].image is None
    text = format_bag_info(info)
    assert f"Storage:      {storage}" in text and "Duration:     2.000 s" in text
    front = next(line for line in text.splitlines() if line.startswith("/front/image_raw"))
    assert front.split()[1:3] == ["sensor_msgs/msg/Image", "4"] and "20.00" in front and "1280x720 bgr8" in front


@pytest.mark.parametrize("fixture", ["tiny_bag_mcap", "tiny_bag_sqlite"])
def test_cli_json_of_a_sample_bag(fixture: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture) -> None:
    bag: Path = request.getfixturevalue(fixture)
    assert main(["bag-info", str(bag), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["storage"] == ("mcap" if fixture.endswith("mcap") else "sqlite3")
    assert info["start_ns"] == SAMPLE_START_NS
    period_ns = round(1e9 / TINY.fps)
    assert info["duration_s"] == pytest.approx((TINY.num_frames - 1) * period_ns / 1e9)
    topics = {t["name"]: t for t in info["topics"]}
    expected_types = {
        "/camera/image": "sensor_msgs/msg/Image",
        "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
        "/camera/gt/image": "sensor_msgs/msg/Image",
        "/camera/gt/drop_mask": "sensor_msgs/msg/Image",
        "/camera/gt/streak_map": "sensor_msgs/msg/Image",
    }
    assert {name: t["msgtype"] for name, t in topics.items()} == expected_types
    width, height = TINY.size
    for name, topic in topics.items():
        assert topic["count"] == TINY.num_frames and topic["rate_hz"] == pytest.approx(TINY.fps)
        if name != "/camera/camera_info":
            encoding = "rgb8" if name in ("/camera/image", "/camera/gt/image") else "mono8"
            assert topic["image"] == {"width": width, "height": height, "encoding": encoding}
            # A raw image's CDR holds its pixels plus the header and fixed fields (under 100 bytes here).
            pixels = width * height * (3 if encoding == "rgb8" else 1)
            assert pixels < topic["mean_bytes"] < pixels + 100


def test_missing_and_corrupt_bags_give_one_line_and_exit_2(
    tmp_path: Path, tiny_bag_mcap: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["bag-info", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"vimpnet-ros bag-info: error: bag {tmp_path / 'missing'} does not exist"
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_bytes((tiny_bag_mcap / "metadata.yaml").read_bytes())
    data = next(tiny_bag_mcap.glob("*.mcap")).read_bytes()
    (corrupt / next(tiny_bag_mcap.glob("*.mcap")).name).write_bytes(data[: len(data) // 2])  # cut off mid-file
    assert main(["bag-info", str(corrupt)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("vimpnet-ros bag-info: error: cannot read bag")
    with pytest.raises(BagError, match="cannot read bag"):
        read_bag_info(corrupt)


def test_humble_bag_without_definitions(tiny_bag_sqlite: Path, tmp_path: Path) -> None:
    bag = tmp_path / "humble"
    shutil.copytree(tiny_bag_sqlite, bag)
    make_humble_like(bag)
    info = read_bag_info(bag)
    assert (info.version, info.ros_distro, info.definitions) == (5, None, "humble")
    topics = {t.name: t for t in info.topics}
    assert topics["/camera/image"].count == TINY.num_frames
    assert topics["/camera/image"].image == {"width": TINY.size[0], "height": TINY.size[1], "encoding": "rgb8"}
    text = format_bag_info(info)
    assert (
        "ROS distro:   not recorded" in text
        and "metadata version 5; definitions the bag lacks are taken from humble" in text
    )
