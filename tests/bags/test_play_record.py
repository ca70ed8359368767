"""bag-play and bag-record against each other, in separate processes over DDS (loopback, own domain)."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from tests.bags.conftest import TINY, cli_command
from vimpnet_ros.bags.images import stamp_ns
from vimpnet_ros.bags.io import DEFAULT_OFFERED_QOS, BagReader

pytestmark = pytest.mark.ros


def _play_and_record(
    bag: Path,
    tmp_path: Path,
    env: dict[str, str],
    topics: list[str],
    play_args: list[str],
    count: int,
    also_record: tuple[str, ...] = (),
) -> tuple[Path, dict, dict, str]:
    """Start the recorder, play the bag into it, return (recorded bag, record stats, play stats, logs)."""
    recorded = tmp_path / "recorded"
    record_stats, play_stats = tmp_path / "record.json", tmp_path / "play.json"
    recorder = subprocess.Popen(
        cli_command(
            "bag_record",
            str(recorded),
            *topics,
            *also_record,
            "--count",
            str(count),
            "--duration",
            "120",
            "--stats",
            str(record_stats),
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        player = subprocess.run(
            cli_command(
                "bag_play",
                str(bag),
                "--topics",
                *topics,
                "--wait-for-subscribers",
                *topics,
                *also_record,
                "--wait-timeout",
                "90",
                "--stats",
                str(play_stats),
                *play_args,
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert player.returncode == 0, player.stdout + player.stderr
        output, _ = recorder.communicate(timeout=120)
    finally:
        recorder.kill()
    assert recorder.returncode == 0, output
    return recorded, json.loads(record_stats.read_text()), json.loads(play_stats.read_text()), output


def test_recorded_bag_equals_the_played_one(tiny_bag_mcap: Path, tmp_path: Path, ros_env: dict[str, str]) -> None:
    topics = ["/camera/image", "/camera/camera_info"]
    recorded, record_stats, play_stats, log = _play_and_record(
        tiny_bag_mcap, tmp_path, ros_env, topics, ["--rate", "2", "--clock"], TINY.num_frames, also_record=("/clock",)
    )
    assert play_stats["messages"] == {"/camera/image": 6, "/camera/camera_info": 6}
    # 6 frames at 10 fps played at 2x: 5 gaps of 50 ms.
    assert 0.2 <= play_stats["wall_s"] < 5.0, play_stats
    assert record_stats["topics"]["/camera/image"]["count"] == TINY.num_frames, log
    with BagReader(tiny_bag_mcap) as source, BagReader(recorded) as copy:
        # As `ros2 bag record`: the player's offer (reliable, volatile) as the graph reports it.
        (offered,) = {c.topic: c for c in copy.reader.connections}["/camera/image"].ext.offered_qos_profiles
        assert offered == DEFAULT_OFFERED_QOS, offered
        original = [(stamp_ns(source.deserialize(m).header), m.raw) for m in source.messages(["/camera/image"])]
        received = [(stamp_ns(copy.deserialize(m).header), m.raw) for m in copy.messages(["/camera/image"])]
        assert [s for s, _ in received] == [s for s, _ in original]
        for (_, a), (_, b) in zip(received, original, strict=True):
            assert copy.typestore.deserialize_cdr(a, "sensor_msgs/msg/Image").data.tobytes() == (
                source.typestore.deserialize_cdr(b, "sensor_msgs/msg/Image").data.tobytes()
            )
        # /clock carried bag time: non-decreasing, within the played span.
        clock = [copy.deserialize(m).clock for m in copy.messages(["/clock"])]
        clock_ns = [c.sec * 1_000_000_000 + c.nanosec for c in clock]
        assert clock_ns == sorted(clock_ns) and len(clock_ns) >= TINY.num_frames
        assert original[0][0] <= clock_ns[0] and clock_ns[-1] <= original[-1][0]
        # The bag timestamps are receive times: spaced like the recorded rate / 2.
        times = [m.timestamp for m in copy.messages(["/camera/image"])]
        gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
        assert 20 < sum(gaps) / len(gaps) < 200, gaps


def test_restamped_replay_gives_latency_and_a_stamp_map(
    tiny_bag_sqlite: Path, tmp_path: Path, ros_env: dict[str, str]
) -> None:
    topics = ["/camera/image"]
    recorded, record_stats, play_stats, log = _play_and_record(
        tiny_bag_sqlite, tmp_path, ros_env, topics, ["--fast", "--restamp"], TINY.num_frames
    )
    latency = record_stats["topics"]["/camera/image"]["latency_ms"]
    assert latency["count"] == TINY.num_frames, log
    assert 0.0 <= latency["p50"] <= latency["max"] < 5000.0
    stamp_map = dict(map(tuple, play_stats["stamp_map"]))
    with BagReader(tiny_bag_sqlite) as source, BagReader(recorded) as copy:
        originals = [stamp_ns(source.deserialize(m).header) for m in source.messages(topics)]
        received = [stamp_ns(copy.deserialize(m).header) for m in copy.messages(topics)]
    assert received != originals, "restamped messages carry the publish time"
    assert [stamp_map[s] for s in received] == originals
