"""bag-play -> the real node -> bag-record, three processes over DDS; then the live report and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bags.conftest import TINY, cli_command, collect_lines, wait_for_line
from vimpnet_ros.bags.images import stamp_ns
from vimpnet_ros.bags.io import BagReader
from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag
from vimpnet_ros.cli.bag_record import MATCHED_LINE

pytestmark = pytest.mark.ros

OUTPUTS = ["/camera/derained/image", "/camera/raindrop_mask", "/camera/rain_status"]


def test_play_node_record_end_to_end(
    checkpoint: Path, tmp_path: Path, ros_env: dict[str, str], start_node: Any
) -> None:
    bag = tmp_path / "bag"
    frames = 4
    write_sample_bag(bag, SampleBagConfig(**{**TINY.__dict__, "num_frames": frames, "fps": 2.0}))
    node = start_node(
        ros_args=["-r", "__ns:=/camera", "-p", f"checkpoint:={checkpoint}", "-p", "backend:=torch", "-p", "device:=cpu"]
    )
    recorded, record_json, play_json = tmp_path / "recorded", tmp_path / "record.json", tmp_path / "play.json"
    recorder = subprocess.Popen(
        cli_command("bag_record", str(recorded), *OUTPUTS, "--idle-timeout", "10", "--duration", "240",
                    "--stats", str(record_json)),
        env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = collect_lines(recorder.stdout)
    try:
        # Start playing once the recorder hears the node's outputs (the node publishes them once loaded).
        assert wait_for_line(lines, MATCHED_LINE, 180.0), "".join(lines) + node.log()
        player = subprocess.run(
            cli_command("bag_play", str(bag), "--topics", "/camera/image", "/camera/camera_info", "--restamp",
                        "--wait-for-subscribers", "/camera/image", "--wait-timeout", "180", "--stats", str(play_json)),
            env=ros_env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert player.returncode == 0, player.stdout + player.stderr + node.log()
        recorder.wait(timeout=240)
    finally:
        recorder.kill()
    output = "".join(lines)
    assert recorder.returncode == 0, output + node.log()
    assert node.alive(), node.log()
    stats = json.loads(record_json.read_text())["topics"]
    play = json.loads(play_json.read_text())
    stamp_map = {published: original for published, original in play["stamp_map"]}
    restored = stats["/camera/derained/image"]
    # The recorder stops at `frames` derained images or after its duration (latest-wins may skip inputs).
    assert play["messages"]["/camera/image"] == frames
    latency = restored["latency_ms"]
    assert latency["count"] == restored["count"] >= 1
    assert 0.0 < latency["p50"] <= latency["max"] < 120_000.0, latency
    with BagReader(recorded) as reader:
        out_stamps = [stamp_ns(reader.deserialize(m).header) for m in reader.messages(["/camera/derained/image"])]
        statuses = [reader.deserialize(m) for m in reader.messages(["/camera/rain_status"])]
    assert set(out_stamps) <= set(stamp_map), "every output carries the stamp of a played frame"
    assert all(0.0 < s.latency < 120.0 and s.inference_time > 0.0 for s in statuses)
    # The live report (bag-eval --recording) scores the recording against the bag's ground truth.
    from vimpnet_ros.cli import main

    report_dir = tmp_path / "report"
    argv = ["bag-eval", str(bag), "--recording", str(recorded), "--play-stats", str(play_json)]
    assert main([*argv, "--report", str(report_dir), "--checkpoint", str(checkpoint)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    (topic,) = report["topics"]
    assert report["mode"] == "live" and topic["input_rate_hz"] == pytest.approx(2.0)
    assert topic["frames_in"] == frames and topic["frames_out"] == len(set(out_stamps))
    assert topic["frames_with_gt"] == topic["frames_out"] and topic["quality"]["psnr_in"] is not None
    assert topic["rate_fraction"] == pytest.approx(topic["frames_out"] / frames)
    assert topic["latency_ms"]["p50"] == pytest.approx(latency["p50"], rel=0.5)
    assert (report_dir / "report.md").is_file() and (report_dir / "contact_sheet.png").is_file()


@pytest.mark.slow
def test_demo_fast(checkpoint: Path, tmp_path: Path, ros_env: dict[str, str]) -> None:
    """The README's main-job command, in fast mode (tiny bag), through the real `vimpnet-ros` entry point.

    About a minute on an idle 2-core machine (node start-up, replay, scoring), hence ``slow``.
    """
    output = tmp_path / "demo"
    command = [sys.executable, "-m", "vimpnet_ros", "demo", "--output", str(output), "--fast",
               "--checkpoint", str(checkpoint), "--domain-id", ros_env["ROS_DOMAIN_ID"], "--offline"]  # fmt: skip
    done = subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=420)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log + (output / "node.log").read_text(errors="replace")
    assert "[5/5] report written" in log and "summary: frames in 8, out " in log
    report = json.loads((output / "report" / "report.json").read_text())
    (topic,) = report["topics"]
    assert report["mode"] == "live" and topic["frames_in"] == 8 and topic["frames_out"] >= 1
    assert topic["latency_ms"]["p50"] > 0 and topic["quality"]["psnr_gain"] is not None
    assert (output / "sample_bag" / "metadata.yaml").is_file() and (output / "recorded_bag").is_dir()
    for name in ("report.md", "contact_sheet.png", "psnr.png", "latency.png"):
        assert (output / "report" / name).is_file(), name
    offline = json.loads((output / "offline_report" / "report.json").read_text())
    assert offline["mode"] == "offline" and offline["topics"][0]["frames_out"] == 8
    assert "offline (every frame" in log


def test_demo_reuses_a_matching_sample_bag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vimpnet_ros.cli.demo import _ensure_sample_bag

    config = SampleBagConfig(**{**TINY.__dict__, "num_frames": 2, "namespace": "/camera"})
    bag = tmp_path / "sample_bag"
    _ensure_sample_bag(bag, config)
    first = (bag / "metadata.yaml").stat().st_mtime_ns
    _ensure_sample_bag(bag, config)
    assert "already there" in capsys.readouterr().out
    assert (bag / "metadata.yaml").stat().st_mtime_ns == first
    _ensure_sample_bag(bag, SampleBagConfig(**{**config.__dict__, "num_frames": 3}))
    with BagReader(bag) as reader:
        assert reader.topics()[0].count == 3
