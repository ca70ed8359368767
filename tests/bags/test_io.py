"""Bag reading/writing helpers: both storages, both readers, Humble bags, errors, atomic writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from tests.bags.conftest import TINY, make_humble_like
from vimpnet_ros.bags.images import array_to_image, make_header, message_to_rgb, stamp_ns
from vimpnet_ros.bags.io import BagReader, BagWriter
from vimpnet_ros.bags.sample import SAMPLE_START_NS
from vimpnet_ros.bags.typestore import RAIN_STATUS_TYPE, make_typestore
from vimpnet_ros.errors import BagError


def _stamps(reader: BagReader, topic: str) -> list[int]:
    return [stamp_ns(reader.deserialize(m).header) for m in reader.messages([topic])]


@pytest.mark.parametrize("fixture", ["tiny_bag_mcap", "tiny_bag_sqlite"])
def test_sample_bag_topics_and_stamps(fixture: str, request: pytest.FixtureRequest) -> None:
    bag = request.getfixturevalue(fixture)
    period = round(1e9 / TINY.fps)
    with BagReader(bag) as reader:
        topics = {t.name: (t.msgtype, t.count) for t in reader.topics()}
        assert topics == {
            "/camera/image": ("sensor_msgs/msg/Image", 6),
            "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", 6),
            "/camera/gt/image": ("sensor_msgs/msg/Image", 6),
            "/camera/gt/drop_mask": ("sensor_msgs/msg/Image", 6),
            "/camera/gt/streak_map": ("sensor_msgs/msg/Image", 6),
        }
        expected = [SAMPLE_START_NS + i * period for i in range(6)]
        assert _stamps(reader, "/camera/image") == expected
        assert [m.timestamp for m in reader.messages(["/camera/gt/image"])] == expected


def test_mcap_is_readable_by_mcap_ros2_with_the_same_stamps(tiny_bag_mcap: Path) -> None:
    by_topic: dict[str, list[tuple[int, int]]] = {}
    with next(tiny_bag_mcap.glob("*.mcap")).open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, message, decoded in reader.iter_decoded_messages():
            stamp = decoded.header.stamp.sec * 1_000_000_000 + decoded.header.stamp.nanosec
            by_topic.setdefault(channel.topic, []).append((message.log_time, stamp))
    with BagReader(tiny_bag_mcap) as reader:
        for topic in ("/camera/image", "/camera/gt/drop_mask"):
            ours = [(m.timestamp, stamp_ns(reader.deserialize(m).header)) for m in reader.messages([topic])]
            assert by_topic[topic] == ours


def test_humble_bag_without_definitions_reads_with_the_humble_typestore(tiny_bag_sqlite: Path, tmp_path: Path) -> None:
    bag = tmp_path / "humble"
    shutil.copytree(tiny_bag_sqlite, bag)
    make_humble_like(bag)
    with BagReader(tiny_bag_sqlite) as original, BagReader(bag) as humble:
        assert [t.name for t in humble.topics()] == [t.name for t in original.topics()]
        first = next(humble.messages(["/camera/image"]))
        expected = next(original.messages(["/camera/image"]))
        np.testing.assert_array_equal(
            message_to_rgb(humble.deserialize(first), first.msgtype),
            message_to_rgb(original.deserialize(expected), expected.msgtype),
        )


@pytest.mark.parametrize("distro", ["humble", "jazzy", "kilted"])
def test_typestores_know_our_message(distro: str) -> None:
    store = make_typestore(distro)
    status = store.types[RAIN_STATUS_TYPE]
    assert status.PROCESSING_FALLBACK == 2
    assert "sensor_msgs/msg/CompressedImage" in store.fielddefs


def test_missing_topic_lists_the_bag_topics(tiny_bag_mcap: Path) -> None:
    with BagReader(tiny_bag_mcap) as reader, pytest.raises(BagError, match=r"/camera/nope.*/camera/gt/image"):
        list(reader.messages(["/camera/nope"]))


def test_unreadable_bags_raise_bag_error(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "missing").open()
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 folder"):
        BagReader(tmp_path / "plain").open()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    with pytest.raises(BagError, match="cannot read bag"):
        BagReader(corrupt).open()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_writer_is_atomic(storage: str, tmp_path: Path) -> None:
    store = make_typestore()
    target = tmp_path / "out"
    header = make_header(store, 5, "f")
    with pytest.raises(RuntimeError), BagWriter(target, storage, store) as writer:
        writer.write("/x", array_to_image(store, np.zeros((4, 4), np.uint8), "mono8", header), 5)
        raise RuntimeError("fail mid-way")
    assert list(tmp_path.iterdir()) == [], "an aborted bag leaves nothing behind"
    with BagWriter(target, storage, store) as writer:
        writer.write("/x", array_to_image(store, np.full((4, 4), 7, np.uint8), "mono8", header), 5)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with BagReader(target) as reader:
        (message,) = list(reader.messages())
        assert message.timestamp == 5
        assert bytes(reader.deserialize(message).data) == bytes([7] * 16)
    with pytest.raises(BagError, match="already exists"):
        BagWriter(target, storage, store).open()
