"""Input/output QoS with real rclpy participants over loopback DDS: auto reliability, QoS overriding options, events.

Each test has two participants (two rclpy contexts on the test's domain): a "node" side
that uses :mod:`vimpnet_ros.node.qos` the way the vimpnet node does, optionally started
with ``--ros-args -p qos_overrides...`` like a user would, and a "camera" side that
publishes or subscribes with its own QoS. What is checked is what DDS matched and
delivered, seen from the graph and from received messages.
"""

from __future__ import annotations

import array
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.node.qos import (
    AUTO_RELIABILITY,
    InputSubscription,
    adapt_reliability,
    create_output_publisher,
    make_qos,
)

pytestmark = pytest.mark.ros

TIMEOUT = 30.0
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


class Side:
    """One participant: a context, a node and an executor that spins it."""

    def __init__(self, domain_id: int, name: str, ros_args: list[str]) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id, args=["test", "--ros-args", *ros_args])
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def sides(ros_env: dict[str, str]) -> Iterator[Callable[..., Side]]:
    """Factory of participants on this test's domain, closed at the end."""
    made: list[Side] = []

    def make(name: str, *ros_args: str) -> Side:
        side = Side(int(ros_env["ROS_DOMAIN_ID"]), name, list(ros_args))
        made.append(side)
        return side

    yield make
    for side in reversed(made):
        side.close()


def spin_until(predicate: Callable[[], bool], *parts: Side, timeout: float = TIMEOUT) -> bool:
    """Spin every participant until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        for side in parts:
            side.executor.spin_once(timeout_sec=0.02)
    return predicate()


def frame(index: int, width: int = 8, height: int = 4) -> Image:
    """A small rgb8 Image whose stamp carries ``index``."""
    msg = Image(width=width, height=height, encoding="rgb8", step=width * 3)
    msg.header.stamp.sec = index
    msg.data = array.array("B", bytes(width * height * 3))
    return msg


def subscriber_qos(observer: Side, topic: str, *others: Side) -> QoSProfile:
    """The QoS ``observer`` sees in the graph for the one subscription on ``topic`` (once discovered)."""
    infos = observer.node.get_subscriptions_info_by_topic
    assert spin_until(lambda: len(infos(topic)) == 1, observer, *others), infos(topic)
    return infos(topic)[0].qos_profile


def test_adapt_reliability_follows_rosbag2() -> None:
    assert adapt_reliability([]) is None
    assert adapt_reliability([RELIABLE, RELIABLE]) == "reliable"
    assert adapt_reliability([RELIABLE, BEST_EFFORT]) == "best_effort"
    assert adapt_reliability([BEST_EFFORT]) == "best_effort"


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="reliability"):
        make_qos(AUTO_RELIABILITY, 5)  # auto is resolved by InputSubscription, never a profile
    with pytest.raises(ConfigError, match="depth"):
        InputSubscription(None, Image, "/image", print, AUTO_RELIABILITY, 0, print)
    with pytest.raises(ConfigError, match="reliability"):
        InputSubscription(None, Image, "/image", print, "sometimes", 5, print)


@pytest.mark.parametrize(("offered", "expected"), [(RELIABLE, "reliable"), (BEST_EFFORT, "best_effort")])
def test_auto_waits_for_the_camera_then_matches_its_reliability(
    sides: Callable[..., Side], offered: QoSProfile, expected: str
) -> None:
    node, camera = sides("vimpnet"), sides("camera")
    received: list[int] = []
    reports: list[str] = []
    inputs = InputSubscription(
        node.node, Image, "/image", lambda m: received.append(m.header.stamp.sec), AUTO_RELIABILITY, 5, reports.append
    )
    assert not inputs.poll() and inputs.subscription is None  # no publisher yet: nothing to adapt to
    publisher = camera.node.create_publisher(Image, "/image", offered)
    assert spin_until(inputs.poll, node, camera), "the camera's publisher was never seen"
    assert inputs.effective_reliability == expected
    assert subscriber_qos(camera, "/image", node).reliability == offered.reliability
    assert spin_until(lambda: publisher.get_subscription_count() == 1, node, camera)
    time.sleep(0.5)  # discovery settles both ways before a best-effort sample is sent
    for index in range(1, 4):
        publisher.publish(frame(index))
        assert spin_until(lambda i=index: i in received, node, camera), f"frame {index} not received"
    assert reports == []


def test_rep2003_override_wins_over_auto_and_explains_an_incompatible_camera(sides: Callable[..., Side]) -> None:
    """``-p qos_overrides./image.subscription.reliability:=reliable`` beats auto, which would pick best effort."""
    node = sides(
        "vimpnet",
        "-p",
        "qos_overrides./image.subscription.reliability:=reliable",
        "-p",
        "qos_overrides./image.subscription.depth:=3",
    )
    camera = sides("camera")
    reports: list[str] = []
    camera.node.create_publisher(Image, "/image", BEST_EFFORT)
    inputs = InputSubscription(node.node, Image, "/image", print, AUTO_RELIABILITY, 5, reports.append)
    assert spin_until(inputs.poll, node, camera)
    assert inputs.effective_reliability == "reliable"
    assert node.node.get_parameter("qos_overrides./image.subscription.reliability").value == "reliable"
    assert node.node.get_parameter("qos_overrides./image.subscription.depth").value == 3
    assert subscriber_qos(camera, "/image", node).reliability == ReliabilityPolicy.RELIABLE
    local = inputs.subscription.qos_profile
    assert (local.history, local.depth) == (HistoryPolicy.KEEP_LAST, 3)
    # the best-effort camera cannot serve a reliable subscription: the node says so and names the fix
    assert spin_until(lambda: bool(reports), node, camera), "no incompatible-QoS report"
    assert "qos_overrides./image.subscription.reliability" in reports[0] and "RELIABILITY" in reports[0]


def test_without_overrides_the_node_parameters_are_the_defaults(sides: Callable[..., Side]) -> None:
    node, camera = sides("vimpnet"), sides("camera")
    camera.node.create_publisher(Image, "/cam/image_raw", RELIABLE)
    inputs = InputSubscription(node.node, Image, "/cam/image_raw", print, "best_effort", 7, print)
    assert inputs.poll()  # a fixed reliability does not wait for a publisher
    assert inputs.effective_reliability == "best_effort"
    names = {"reliability": "best_effort", "depth": 7, "history": "keep_last"}
    for policy, value in names.items():
        assert node.node.get_parameter(f"qos_overrides./cam/image_raw.subscription.{policy}").value == value
    assert subscriber_qos(camera, "/cam/image_raw", node).reliability == ReliabilityPolicy.BEST_EFFORT
    assert inputs.subscription.qos_profile.depth == 7  # DDS discovery does not carry the depth: read it locally


@pytest.mark.parametrize(
    ("override", "message"),
    [("depth:=0", "depth >= 1"), ("reliability:=sometimes", "sometimes"), ("depth:=deep", "depth")],
)
def test_bad_override_is_a_config_error_naming_the_parameter(
    sides: Callable[..., Side], override: str, message: str
) -> None:
    node = sides("vimpnet", "-p", f"qos_overrides./image.subscription.{override}")
    for reliability in ("reliable", "auto"):  # auto: found before any publisher appears, not when the camera starts
        with pytest.raises(ConfigError, match=message) as error:
            InputSubscription(node.node, Image, "/image", print, reliability, 5, print)
        assert "qos_overrides./image" in str(error.value)


def test_output_override_applies_to_its_topic_only_and_explains_an_incompatible_viewer(
    sides: Callable[..., Side],
) -> None:
    node = sides("vimpnet", "-p", "qos_overrides./derained/image.publisher.reliability:=best_effort")
    viewer = sides("viewer")
    reports: list[str] = []
    image, mask = (
        create_output_publisher(node.node.create_publisher, node.node, Image, topic, "reliable", 5, reports.append)
        for topic in ("derained/image", "raindrop_mask")
    )
    assert image.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert mask.qos_profile.reliability == ReliabilityPolicy.RELIABLE  # the override did not leak
    assert node.node.get_parameter("qos_overrides./raindrop_mask.publisher.reliability").value == "reliable"
    viewer.node.create_subscription(Image, "/derained/image", print, RELIABLE)
    assert spin_until(lambda: bool(reports), node, viewer), "no incompatible-QoS report"
    assert "qos_overrides./derained/image.publisher.reliability" in reports[0]


#: A best-effort camera in its own process (Fast DDS delivers within one process without any transport).
CAMERA_PROCESS = """
import array, sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("camera")
publisher = node.create_publisher(Image, "/image", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
while publisher.get_subscription_count() == 0:
    rclpy.spin_once(node, timeout_sec=0.05)
time.sleep(1.0)
msg = Image(width=1280, height=720, encoding="rgb8", step=1280 * 3)
msg.data = array.array("B", bytes(1280 * 720 * 3))
for index in range(1, 21):
    msg.header.stamp.sec = index
    publisher.publish(msg)
    time.sleep(0.1)
time.sleep(1.0)
"""


@pytest.mark.slow
def test_lost_frames_are_reported_with_the_hint(sides: Callable[..., Side], ros_env: dict[str, str]) -> None:
    """A best-effort camera process sends 1280x720 frames through Fast DDS's defaults: the losses are reported."""
    node = sides("vimpnet")
    reports: list[str] = []
    received: list[int] = []
    inputs = InputSubscription(
        node.node, Image, "/image", lambda m: received.append(1), AUTO_RELIABILITY, 5, reports.append
    )
    camera = subprocess.Popen([sys.executable, "-c", CAMERA_PROCESS], env=ros_env)
    try:
        assert spin_until(inputs.poll, node), "the camera's publisher was never seen"
        assert inputs.effective_reliability == "best_effort"
        spin_until(lambda: camera.poll() is not None, node, timeout=60.0)
        spin_until(lambda: False, node, timeout=1.0)
    finally:
        camera.kill()
        camera.wait()
    assert inputs.lost > 0 and len(received) + inputs.lost <= 20, (len(received), inputs.lost)
    assert "lost in transport" in reports[0] and "Camera-sized frames" in reports[0]
