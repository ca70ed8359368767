"""Bag reading/writing helpers: both storages, both readers, Humble bags, errors, atomic writes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

from tests.bags.conftest import TINY, make_humble_like
from vimpnet_ros.bags.images import array_to_image, make_header, message_to_rgb, stamp_ns
from vimpnet_ros.bags.io import DEFAULT_OFFERED_QOS, BagReader, BagWriter
from vimpnet_ros.bags.sample import SAMPLE_START_NS, SampleBagConfig, write_sample_bag
from vimpnet_ros.bags.typestore import IMAGE_TYPE, RAIN_STATUS_TYPE, make_typestore
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


def test_a_truncated_mcap_is_read_up_to_the_cut_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bag cut at 60 %: the messages before the cut are read (counts follow), once warned; the rest is gone."""
    bag = tmp_path / "cut"
    config = SampleBagConfig(num_frames=16, size=(320, 192), fps=TINY.fps, seed=1)  # several MCAP chunks
    write_sample_bag(bag, config)
    (storage,) = bag.glob("*.mcap")
    original = storage.read_bytes()
    storage.write_bytes(original[: len(original) * 6 // 10])
    with caplog.at_level(logging.WARNING), BagReader(bag) as reader:
        images = [stamp_ns(reader.deserialize(m).header) for m in reader.messages(["/camera/image"])]
        counts = {t.name: t.count for t in reader.topics()}
        repaired = reader._repaired
    assert 0 < len(images) < config.num_frames and counts["/camera/image"] == len(images)
    assert images == [SAMPLE_START_NS + i * round(1e9 / TINY.fps) for i in range(len(images))]  # in order, whole
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "before the cut" in warnings[0]
    assert repaired is not None and not repaired.exists()  # the repaired copy is removed on close
    for damaged in (b"not an mcap file at all", original[:200]):  # not an MCAP; cut before its first message
        storage.write_bytes(damaged)
        with pytest.raises(BagError, match="cannot read bag"):
            BagReader(bag).open()


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


# --- What `ros2 bag record` writes, per target distro -------------------------------------------------------------
# Sources (ros2/rosbag2): rosbag2_storage/src/rosbag2_storage/qos.cpp encodes each offered profile with integer
# policies below metadata version 9 and with rmw's policy names from 9 on; yaml.hpp writes the profiles into
# metadata.yaml as a YAML string below 9 and as a YAML list from 9 on; rosbag2_storage_mcap/src/mcap_storage.cpp
# (create_topic) stores the same serialization in the channel metadata key "offered_qos_profiles". Recorded
# examples: Humble, https://github.com/ros2/rosbag2/issues/1237 ("- history: 3\n  depth: 0\n  reliability: 1 ...",
# infinite durations as 9223372036 s + 854775807 ns); Jazzy, https://github.com/ros-visualization/rqt_bag/issues/146
# (history: unknown, depth: 0, reliability: reliable, durability: volatile, same durations).
INFINITE = {"sec": 9223372036, "nsec": 854775807}
#: A reliable, volatile publisher as ros2 bag stores it, per metadata version.
ROS2_BAG_QOS = {
    8: {
        "history": 3,
        "depth": 0,
        "reliability": 1,
        "durability": 2,
        "deadline": INFINITE,
        "lifespan": INFINITE,
        "liveliness": 1,
        "liveliness_lease_duration": INFINITE,
        "avoid_ros_namespace_conventions": False,
    },
    9: {
        "history": "unknown",
        "depth": 0,
        "reliability": "reliable",
        "durability": "volatile",
        "deadline": INFINITE,
        "lifespan": INFINITE,
        "liveliness": "automatic",
        "liveliness_lease_duration": INFINITE,
        "avoid_ros_namespace_conventions": False,
    },
}
STAMP = 1_700_000_000_000_000_000


def rosidl_type_hash(msgtype: str) -> str:
    """The RIHS01 hash rosidl generated for ``msgtype`` (``share/<pkg>/msg/<Type>.json`` of the installed package)."""
    package, _, name = msgtype.split("/")
    for prefix in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        path = Path(prefix) / "share" / package / "msg" / f"{name}.json"
        if prefix and path.is_file():
            hashes = json.loads(path.read_text())["type_hashes"]
            return next(h["hash_string"] for h in hashes if h["type_name"] == msgtype)
    raise AssertionError(f"no rosidl type description for {msgtype} under $AMENT_PREFIX_PATH or {sys.prefix}")


def write_small_bag(path: Path, storage: str, distro: str) -> None:
    """Three mono8 images on /camera/image and a declared, empty /rain_status topic."""
    store = make_typestore(distro)
    with BagWriter(path, storage, store, distro=distro) as writer:
        for index in range(3):
            image = array_to_image(store, np.full((4, 4), index, np.uint8), "mono8", make_header(store, STAMP, "cam"))
            writer.write("/camera/image", image, STAMP + index)
        writer.connection("/rain_status", RAIN_STATUS_TYPE)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize(("distro", "version"), [("humble", 8), ("jazzy", 9), ("kilted", 9)])
def test_written_bags_carry_what_ros2_bag_writes(storage: str, distro: str, version: int, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    write_small_bag(bag, storage, distro)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == version
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert {name: t["message_count"] for name, t in topics.items()} == {"/camera/image": 3, "/rain_status": 0}
    expected_hashes = {
        "/camera/image": rosidl_type_hash(IMAGE_TYPE),
        "/rain_status": rosidl_type_hash(RAIN_STATUS_TYPE),
    }
    for name, topic in topics.items():
        metadata = topic["topic_metadata"]
        assert metadata["type_description_hash"] == expected_hashes[name]
        offered = metadata["offered_qos_profiles"]
        if version >= 9:
            assert offered == [ROS2_BAG_QOS[9]], "v9: a YAML list with named policies"
        else:
            assert isinstance(offered, str), "below v9 Humble reads the profiles only as a YAML string"
            assert yaml.safe_load(offered) == [ROS2_BAG_QOS[8]]

    if storage == "sqlite3":
        with sqlite3.connect(bag / "bag.db3") as db:
            rows = db.execute("SELECT name, offered_qos_profiles, type_description_hash FROM topics").fetchall()
        for name, offered, digest in rows:
            assert yaml.safe_load(offered) == [ROS2_BAG_QOS[version]] and digest == expected_hashes[name]
    else:
        with (bag / "bag.mcap").open("rb") as stream:
            reader = make_reader(stream)
            summary = reader.get_summary()
            assert summary is not None
            for channel in summary.channels.values():
                assert yaml.safe_load(channel.metadata["offered_qos_profiles"]) == [ROS2_BAG_QOS[version]]
                schema = summary.schemas[channel.schema_id]
                assert schema.encoding == "ros2msg" and schema.name in (IMAGE_TYPE, RAIN_STATUS_TYPE)
            (record,) = [m for m in reader.iter_metadata() if m.name == "rosbag2"]
            assert yaml.safe_load(record.metadata["serialized_metadata"])["version"] == version

    with BagReader(bag) as reader:  # and we read back what we wrote
        connections = {c.topic: c for c in reader.reader.connections}
        assert connections["/camera/image"].ext.offered_qos_profiles == [DEFAULT_OFFERED_QOS]
        assert [m.timestamp for m in reader.messages(["/camera/image"])] == [STAMP, STAMP + 1, STAMP + 2]


def test_unknown_output_distro_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"unknown ROS distro 'rolling'.*humble, jazzy, kilted"):
        BagWriter(tmp_path / "bag", distro="rolling")


def _make_metadata_disagree(bag: Path, topic: str) -> None:
    """Offer best effort for ``topic`` in metadata.yaml only: the storage keeps its own (reliable) record."""
    path = bag / "metadata.yaml"
    metadata = yaml.safe_load(path.read_text())
    for entry in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if entry["topic_metadata"]["name"] == topic:
            entry["topic_metadata"]["offered_qos_profiles"][0]["reliability"] = "best_effort"
    path.write_text(yaml.safe_dump(metadata))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_metadata_disagreeing_with_storage_falls_back_to_the_storage_records(
    storage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bag = tmp_path / "bag"
    write_small_bag(bag, storage, "kilted")
    _make_metadata_disagree(bag, "/camera/image")
    with AnyReader([bag], default_typestore=make_typestore()) as plain:  # the failure this guards against
        listed = [c for c in plain.connections if c.topic == "/camera/image"]
        assert listed[0].msgcount == 3 and list(plain.messages(connections=listed)) == []
    with caplog.at_level(logging.WARNING), BagReader(bag) as reader:
        assert {t.name: t.count for t in reader.topics()} == {"/camera/image": 3, "/rain_status": 0}
        images = [(m.timestamp, bytes(reader.deserialize(m).data)) for m in reader.messages(["/camera/image"])]
    assert images == [(STAMP + i, bytes([i] * 16)) for i in range(3)]
    assert "disagree on /camera/image" in caplog.text


def test_metadata_disagreeing_with_compressed_storage_fails_loudly(tmp_path: Path) -> None:
    """Compressed records cannot be read on their own: the reader raises rather than yield nothing."""
    bag = tmp_path / "bag"
    store = make_typestore()
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3)
    writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    with writer:
        connection = writer.add_connection(
            "/camera/image", IMAGE_TYPE, typestore=store, offered_qos_profiles=[DEFAULT_OFFERED_QOS]
        )
        image = array_to_image(store, np.zeros((4, 4), np.uint8), "mono8", make_header(store, STAMP, "cam"))
        writer.write(connection, STAMP, store.serialize_cdr(image, IMAGE_TYPE))
    _make_metadata_disagree(bag, "/camera/image")
    with (
        BagReader(bag) as reader,
        pytest.raises(BagError, match=r"lists messages on /camera/image but the storage yielded none.*reindex"),
    ):
        list(reader.messages(["/camera/image"]))
