"""The interface package vimpnet_msgs: built into the environment, light to import, and it crosses DDS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytestmark = pytest.mark.ros

PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from vimpnet_msgs.msg import RainStatus

    rclpy.init()
    node = rclpy.create_node("rain_status_publisher")
    publisher = node.create_publisher(RainStatus, "rain_status", 10)
    message = RainStatus()
    message.header.stamp.sec = 1700000000
    message.header.stamp.nanosec = 123456789
    message.header.frame_id = "cam_front_optical"
    message.processing = RainStatus.PROCESSING_GATED
    message.raindrop_coverage = 0.25
    message.streak_intensity = 0.5
    message.rain_detected = True
    message.inference_time = 0.0421
    message.latency = 0.0873
    message.window_frames = 3
    message.window_size = 5
    message.processed_frames = 4000000000
    message.dropped_frames = 17
    message.backend = "torch"
    message.precision = "bf16"
    message.model = "vimpnet_lite"
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        publisher.publish(message)
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_rain_status_fields_and_constants() -> None:
    from vimpnet_msgs.msg import RainStatus

    message = RainStatus()
    assert message.processing == RainStatus.PROCESSING_RESTORED == 0
    assert {RainStatus.PROCESSING_GATED, RainStatus.PROCESSING_FALLBACK} == {1, 2}
    fields = message.get_fields_and_field_types()
    assert fields["header"] == "std_msgs/Header"
    assert fields["raindrop_coverage"] == "float"
    assert fields["inference_time"] == "double"
    assert fields["latency"] == "double"
    assert fields["dropped_frames"] == "uint32"
    assert fields["backend"] == "string"


def test_rain_status_round_trips_between_processes(ros_env: dict[str, str]) -> None:
    import rclpy
    from rclpy.qos import QoSProfile

    from vimpnet_msgs.msg import RainStatus

    domain_id = int(ros_env["ROS_DOMAIN_ID"])
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, "60"],
        env=ros_env,
        cwd="/",
        stderr=subprocess.PIPE,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    received: list[RainStatus] = []
    arrived = threading.Event()
    try:
        node = rclpy.create_node("rain_status_listener", context=context)

        def on_status(message: RainStatus) -> None:
            received.append(message)
            arrived.set()

        node.create_subscription(RainStatus, "rain_status", on_status, QoSProfile(depth=10))
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 60
        while not arrived.is_set() and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        publisher.terminate()
        _, stderr = publisher.communicate(timeout=30)
    assert received, f"no RainStatus arrived over DDS; publisher stderr:\n{stderr}"
    message = received[0]
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (1700000000, 123456789)
    assert message.header.frame_id == "cam_front_optical"
    assert message.processing == RainStatus.PROCESSING_GATED
    assert message.raindrop_coverage == pytest.approx(0.25)
    assert message.streak_intensity == pytest.approx(0.5)
    assert message.rain_detected is True
    assert message.inference_time == 0.0421
    assert message.latency == 0.0873
    assert (message.window_frames, message.window_size) == (3, 5)
    assert (message.processed_frames, message.dropped_frames) == (4000000000, 17)
    assert (message.backend, message.precision, message.model) == ("torch", "bf16", "vimpnet_lite")


def test_messages_import_in_a_clean_environment() -> None:
    """No LD_LIBRARY_PATH, AMENT_PREFIX_PATH or sourcing needed, from any working directory."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("LD_", "AMENT_", "_ROS", "PYTHON"))}
    clean["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(
        [sys.executable, "-c", "from vimpnet_msgs.msg import RainStatus; print(RainStatus.__module__)"],
        env=clean,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "vimpnet_msgs.msg._rain_status"


#: A consumer of RainStatus (a detector): the message, its serialisation, and nothing of the node.
CONSUMER = textwrap.dedent(
    """
    import sys
    from rclpy.serialization import deserialize_message, serialize_message
    from vimpnet_msgs.msg import RainStatus

    message = RainStatus(processing=RainStatus.PROCESSING_FALLBACK, raindrop_coverage=0.5, model="vimpnet_lite")
    message.header.frame_id = "cam_rear_optical"
    message.processed_frames = 123456
    back = deserialize_message(serialize_message(message), RainStatus)
    assert back == message, (back, message)
    heavy = sorted(name for name in ("torch", "cv2", "vimpnet_ros") if name in sys.modules)
    print("heavy:", ",".join(heavy))
    """
)


def test_a_consumer_imports_the_messages_without_the_node() -> None:
    """vimpnet_msgs is a message package: importing and round-tripping RainStatus loads no torch, OpenCV or node."""
    result = subprocess.run([sys.executable, "-c", CONSUMER], cwd="/", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "heavy:", result.stdout
