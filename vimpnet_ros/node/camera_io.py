"""One camera on the node: its typed publisher set, subscriptions, camera_info cache and statistics.

The processing itself is the ROS-free :class:`~vimpnet_ros.pipeline.camera.CameraPipeline`;
this module only binds it to rclpy objects and publishes its
:class:`~vimpnet_ros.pipeline.outputs.FrameOutputs`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.publisher import Publisher
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vimpnet_ros.node.diagnostics import CameraStats
from vimpnet_ros.node.messages import camera_info_with_header, compressed_message, image_message, status_message
from vimpnet_ros.node.qos import InputSubscription
from vimpnet_ros.pipeline.camera import CameraPipeline, header_stamp_ns
from vimpnet_ros.pipeline.outputs import FrameOutputs, Processing
from vimpnet_ros.pipeline.settings import OutputSettings
from vimpnet_ros.pipeline.topics import CameraTopics

#: CameraInfo messages kept per camera to find the one matching a frame's stamp.
CAMERA_INFO_HISTORY = 8
#: (message type, topic) -> a publisher with the node's output QoS (see node/qos.py create_output_publisher).
PublisherFactory = Callable[[type, str], Publisher]


@dataclass
class CameraPublishers:
    """The publishers of one camera (``info`` only with ``use_camera_info``)."""

    image: Publisher
    compressed: Publisher
    mask: Publisher
    streak: Publisher
    status: Publisher
    info: Publisher | None

    @classmethod
    def create(
        cls, create: PublisherFactory, topics: CameraTopics, status_type: type, with_info: bool
    ) -> CameraPublishers:
        """Create every output of a camera; ``create(type, topic)`` makes one publisher with its QoS."""
        return cls(
            image=create(Image, topics.output("image")),
            compressed=create(CompressedImage, topics.output("compressed")),
            mask=create(Image, topics.output("mask")),
            streak=create(Image, topics.output("streak")),
            status=create(status_type, topics.output("status")),
            info=create(CameraInfo, topics.output("info")) if with_info else None,
        )

    def all(self) -> list[Publisher]:
        """Every publisher (for cleanup)."""
        return [p for p in (self.image, self.compressed, self.mask, self.streak, self.status, self.info) if p]


class CameraIO:
    """A camera's pipeline bound to its topics (see the module docstring)."""

    def __init__(self, topics: CameraTopics, pipeline: CameraPipeline, publishers: CameraPublishers) -> None:
        self.topics = topics
        self.pipeline = pipeline
        self.publishers = publishers
        self.stats = CameraStats(pipeline.label, pipeline.counters)
        self.inputs: list[InputSubscription] = []
        self._infos: deque[CameraInfo] = deque(maxlen=CAMERA_INFO_HISTORY)
        self._info_lock = threading.Lock()

    @property
    def lost_in_transport(self) -> int:
        """Frames the middleware reported lost on this camera's inputs (a best-effort reader missing fragments)."""
        return sum(i.lost for i in self.inputs)

    @property
    def name(self) -> str:
        """The camera's entry in ``cameras`` ('' for the single unnamed camera)."""
        return self.pipeline.name

    def remember_info(self, info: CameraInfo) -> None:
        """Keep a CameraInfo to republish with the derained frame of the same stamp."""
        with self._info_lock:
            self._infos.append(info)

    def info_for(self, stamp_ns: int) -> CameraInfo | None:
        """The CameraInfo with the frame's stamp, else the latest one."""
        with self._info_lock:
            for info in reversed(self._infos):
                if header_stamp_ns(info.header) == stamp_ns:
                    return info
            return self._infos[-1] if self._infos else None

    def publish(self, outputs: FrameOutputs, settings: OutputSettings, status_type: type) -> None:
        """Publish one frame's outputs as the parameters ask, then its RainStatus."""
        header: Any = outputs.meta.header
        pubs = self.publishers
        if settings.publish_image:
            pubs.image.publish(image_message(outputs.image, header))
        if settings.publish_compressed:
            pubs.compressed.publish(compressed_message(outputs.rgb8, header, settings.jpeg_quality))
        if settings.publish_mask:
            pubs.mask.publish(image_message(outputs.mask, header))
        if settings.publish_streak_map:
            pubs.streak.publish(image_message(outputs.streak, header))
        if pubs.info is not None:
            info = self.info_for(outputs.stamp_ns)
            if info is not None:
                pubs.info.publish(camera_info_with_header(info, header))
        pubs.status.publish(status_message(status_type, outputs.status, header))
        restored = outputs.status.processing == Processing.RESTORED
        self.stats.published(outputs.status.inference_time * 1e3 if restored else None, outputs.status.latency * 1e3)
