"""Topic names of one camera: what the node subscribes and publishes, and what bag evaluation writes.

Names are relative to the camera's namespace (``''`` for a single camera under the node's
namespace, ``front/`` with ``cameras: [front, ...]``, ``/camera/`` for a bag topic
``/camera/image``). The compressed input follows image_transport: the transport is appended
to the *resolved* base topic (after remapping), so ``-r image:=/cam/image_raw`` with the
compressed transport subscribes ``/cam/image_raw/compressed`` (:func:`transport_topic`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Outputs per camera, relative to its namespace (keys are used by the node and bag evaluation).
OUTPUT_TOPICS: dict[str, str] = {
    "image": "derained/image",
    "compressed": "derained/image/compressed",
    "info": "derained/camera_info",
    "mask": "raindrop_mask",
    "streak": "streak_map",
    "status": "rain_status",
}
#: Inputs per camera, relative to its namespace.
INPUT_IMAGE, INPUT_CAMERA_INFO = "image", "camera_info"
#: image_transport transports -> suffix appended to the resolved base topic.
TRANSPORT_SUFFIXES: dict[str, str] = {"raw": "", "compressed": "/compressed"}
#: Camera image topic suffixes found in bags; what precedes them is the camera namespace.
IMAGE_SUFFIXES: tuple[str, ...] = ("/image/compressed", "/image_raw/compressed", "/image", "/image_raw")
#: Topics our own outputs (and ground truth) use: never treated as camera inputs when scanning a bag.
DERIVED_MARKERS: tuple[str, ...] = ("/gt/", "/derained/", "/raindrop_mask", "/streak_map")


def transport_topic(base: str, transport: str) -> str:
    """The topic carrying ``transport`` of the (already resolved) image topic ``base``."""
    return base + TRANSPORT_SUFFIXES[transport]


def camera_info_topic(image_topic: str) -> str:
    """The camera_info beside a resolved image topic, as image_transport's camera publisher names it.

    ``/cam/image_raw`` -> ``/cam/camera_info``; ``/image`` -> ``/camera_info``.
    """
    return f"{image_topic.rpartition('/')[0]}/{INPUT_CAMERA_INFO}"


def camera_namespace(topic: str) -> str:
    """``/camera/image`` -> ``/camera``; a topic without a known image suffix is its own namespace."""
    for suffix in IMAGE_SUFFIXES:
        if topic.endswith(suffix):
            return topic[: -len(suffix)]
    return topic


@dataclass(frozen=True)
class CameraTopics:
    """A camera's topic names under ``prefix`` (``''``, ``front/`` or ``/camera/``)."""

    prefix: str

    @classmethod
    def for_camera(cls, namespace: str) -> CameraTopics:
        """Topics of a ``cameras`` entry (``front``, ``/rear``) or of the single unnamed camera (``''``)."""
        return cls(f"{namespace.rstrip('/')}/" if namespace else "")

    @classmethod
    def for_image_topic(cls, topic: str) -> CameraTopics:
        """Topics next to a recorded camera topic (``/camera/front/image_raw`` -> prefix ``/camera/front/``)."""
        return cls(f"{camera_namespace(topic)}/")

    @property
    def image(self) -> str:
        """The raw image input (the compressed one is derived from it once resolved)."""
        return self.prefix + INPUT_IMAGE

    @property
    def camera_info(self) -> str:
        """The camera_info input."""
        return self.prefix + INPUT_CAMERA_INFO

    def output(self, key: str) -> str:
        """One output topic (``image``, ``compressed``, ``info``, ``mask``, ``streak``, ``status``)."""
        return self.prefix + OUTPUT_TOPICS[key]

    @property
    def outputs(self) -> dict[str, str]:
        """Every output topic by key."""
        return {key: self.prefix + name for key, name in OUTPUT_TOPICS.items()}
