"""Helpers for node tests: test frames, a random-weight checkpoint writer, and a probe node that talks to the node.

The probe lives in the test process on the test's own rclpy context (see
``tests/conftest.py``); it publishes camera frames and collects everything the
node publishes. All waits are event driven (spin until a condition holds or a
generous timeout passes) because DDS on a loaded 2-core machine is slow to start.
"""

from __future__ import annotations

import array
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

#: Small frames keep the CPU model fast: (width, height).
SIZE = (64, 48)
#: Seconds to wait for a node subprocess to start, load the model and discover the probe.
START_TIMEOUT = 90.0


def make_rgb(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A deterministic smooth (h, w, 3) uint8 frame that changes with ``index``."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 100 * np.sin(x / 7.0 + index * 0.3)
    g = 127 + 100 * np.cos(y / 5.0 - index * 0.2)
    b = 127 + 60 * np.sin((x + y) / 9.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def image_msg(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "camera_optical") -> Image:
    """A sensor_msgs/Image from (h, w[, c]) pixels."""
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.step = int(pixels.strides[0]) if pixels.size else 0
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.data = array.array("B", np.ascontiguousarray(pixels).tobytes())
    return msg


def stamp_of(msg: Any) -> int:
    """header.stamp in nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Probe:
    """Publishes frames to the node and records what it publishes, per topic."""

    OUTPUTS: tuple[tuple[str, type], ...] = (
        ("derained/image", Image),
        ("derained/image/compressed", CompressedImage),
        ("derained/camera_info", CameraInfo),
        ("raindrop_mask", Image),
        ("streak_map", Image),
    )

    def __init__(self, context: Any, prefixes: tuple[str, ...] = ("",), reliable: bool = True) -> None:
        from vimpnet_msgs.msg import RainStatus

        self.node = rclpy.create_node("probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.received: dict[str, list[Any]] = defaultdict(list)
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        pub_qos = QoSProfile(depth=10, reliability=reliability)
        sub_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pubs = {p: self.node.create_publisher(Image, f"/{p}image", pub_qos) for p in prefixes}
        self.compressed_pubs = {
            p: self.node.create_publisher(CompressedImage, f"/{p}image/compressed", pub_qos) for p in prefixes
        }
        self.info_pubs = {p: self.node.create_publisher(CameraInfo, f"/{p}camera_info", pub_qos) for p in prefixes}
        self.subscriptions = []
        self.status_subscriptions: dict[str, Any] = {}
        for prefix in prefixes:
            for name, kind in (*self.OUTPUTS, ("rain_status", RainStatus)):
                topic = f"/{prefix}{name}"
                self.subscriptions.append(self.node.create_subscription(kind, topic, self._recorder(topic), sub_qos))
            self.status_subscriptions[prefix] = self.subscriptions[-1]
        self.subscriptions.append(
            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("/diagnostics"), sub_qos)
        )

    def _recorder(self, topic: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self.lock:
                self.received[topic].append(msg)

        return record

    def messages(self, topic: str) -> list[Any]:
        """Copy of what arrived on ``topic`` (absolute name)."""
        with self.lock:
            return list(self.received[topic])

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``predicate()`` is true; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for a while (collect, never assert on timing)."""
        self.spin_until(lambda: False, seconds)

    def wait_connected(self, prefix: str = "", timeout: float = START_TIMEOUT, compressed: bool = False) -> bool:
        """Until our input publisher and our rain_status subscription have both matched the node.

        DDS matches each direction on its own: our writer seeing the node's reader does not prove
        that reader already knows our writer (a best-effort reader drops samples from writers it
        has not matched yet), so discovery gets a moment to settle both ways before frames are sent.
        """
        pub = (self.compressed_pubs if compressed else self.image_pubs)[prefix]
        status = self.status_subscriptions[prefix]
        connected = self.spin_until(
            lambda: pub.get_subscription_count() > 0 and status.get_publisher_count() > 0, timeout
        )
        if connected:
            self.spin_for(1.0)
        return connected

    def send(self, msg: Image | CompressedImage, prefix: str = "", info: bool = False) -> None:
        """Publish a frame (and a CameraInfo with the same header)."""
        if isinstance(msg, CompressedImage):
            self.compressed_pubs[prefix].publish(msg)
        else:
            self.image_pubs[prefix].publish(msg)
        if info:
            camera_info = CameraInfo(
                header=msg.header, height=getattr(msg, "height", 0), width=getattr(msg, "width", 0)
            )
            camera_info.distortion_model = "plumb_bob"
            camera_info.k = [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]
            self.info_pubs[prefix].publish(camera_info)

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.received[topic])

    def has_stamp(self, topic: str, stamp_ns: int) -> bool:
        with self.lock:
            return any(stamp_of(m) == stamp_ns for m in self.received[topic])

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
