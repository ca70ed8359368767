"""rclpy messages from the pipeline's plain outputs (the only place the node fills message fields).

:class:`~vimpnet_ros.pipeline.outputs.FrameOutputs` already holds every value in its
published layout; this module copies them into ``sensor_msgs`` and ``RainStatus``
objects. The PyPI cv_bridge is broken on NumPy 2 and the distro's cv_bridge adds nothing
for planes already in the right layout, so the fields are set here directly.
"""

from __future__ import annotations

import array
import dataclasses
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vimpnet_ros.errors import InputError
from vimpnet_ros.pipeline.outputs import Plane, StatusFields

#: image_transport's compressed plugin writes this format string for JPEG from bgr8.
JPEG_FORMAT = "bgr8; jpeg compressed bgr8"


def _bytes(pixels: np.ndarray) -> array.array[int]:
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(pixels).reshape(-1).view(np.uint8).data)
    return data


def image_message(plane: Plane, header: Any) -> Image:
    """A ``sensor_msgs/Image`` of ``plane`` (little-endian, packed rows) with ``header``."""
    pixels = np.ascontiguousarray(plane.pixels)
    if pixels.dtype.byteorder == ">":
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    msg = Image(header=header, height=int(pixels.shape[0]), width=int(pixels.shape[1]), encoding=plane.encoding)
    msg.is_bigendian = 0
    msg.step = int(pixels.strides[0])
    msg.data = _bytes(pixels)
    return msg


def compressed_message(rgb8: np.ndarray, header: Any, quality: int) -> CompressedImage:
    """JPEG of (h, w, 3) uint8 RGB as image_transport's compressed plugin writes it."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"JPEG encoding failed for a {rgb8.shape[1]}x{rgb8.shape[0]} image")
    msg = CompressedImage(header=header, format=JPEG_FORMAT)
    msg.data = _bytes(encoded)
    return msg


def status_message(message_type: type, fields: StatusFields, header: Any) -> Any:
    """A ``vimpnet_msgs/msg/RainStatus`` from the pipeline's fields (already in the message's ranges)."""
    status = message_type(header=header)
    for name, value in dataclasses.asdict(fields).items():
        setattr(status, name, int(value) if name == "processing" else value)
    return status


def camera_info_with_header(info: CameraInfo, header: Any) -> CameraInfo:
    """A copy of ``info`` carrying ``header`` (the derained image's)."""
    out = CameraInfo()
    for name in CameraInfo.get_fields_and_field_types():
        setattr(out, name, getattr(info, name))
    out.header = header
    return out
