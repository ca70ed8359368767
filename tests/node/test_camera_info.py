"""camera_info is followed by default, image_transport style, and republished with the derained header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from tests.node.rosprobe import START_TIMEOUT, image_msg, make_rgb, stamp_of

pytestmark = pytest.mark.ros

BASE_STAMP = 1_700_000_000_000_000_000


def test_camera_info_beside_a_remapped_image_topic_is_followed(
    start_node: Any, probe_factory: Any, checkpoint: Path
) -> None:
    """-r image:=/cam/image_raw: the node follows /cam/camera_info without configuration (the sibling topic)."""
    params = {"checkpoint": checkpoint, "device": "cpu", "backend": "torch", "precision": "fp32"}
    node = start_node(
        ros_args=["-r", "image:=/cam/image_raw", *[a for k, v in params.items() for a in ("-p", f"{k}:={v}")]]
    )
    probe = probe_factory()
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    images = probe.node.create_publisher(Image, "/cam/image_raw", qos)
    infos = probe.node.create_publisher(CameraInfo, "/cam/camera_info", qos)
    assert probe.spin_until(
        lambda: images.get_subscription_count() > 0 and infos.get_subscription_count() > 0, START_TIMEOUT
    ), node.log()[-3000:]
    probe.spin_for(1.0)
    for i in range(3):
        stamp = BASE_STAMP + i * 50_000_000
        frame = image_msg(make_rgb(i), "rgb8", stamp, "cam_optical")
        info = CameraInfo(header=frame.header, width=64, height=48, distortion_model="plumb_bob")
        info.k = [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]
        infos.publish(info)
        images.publish(frame)
        assert probe.spin_until(lambda s=stamp: probe.has_stamp("/derained/camera_info", s), 60.0), node.log()[-3000:]
    out = next(m for m in probe.messages("/derained/camera_info") if stamp_of(m) == BASE_STAMP)
    image = next(m for m in probe.messages("/derained/image") if stamp_of(m) == BASE_STAMP)
    assert out.header == image.header and out.header.frame_id == "cam_optical"
    assert (out.width, out.height, list(out.k)[:3]) == (64, 48, [50.0, 0.0, 32.0])
    assert "/cam/camera_info" in node.log()
    node.stop()
