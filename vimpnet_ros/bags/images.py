"""Images in bags: ``sensor_msgs`` messages (rosbags objects) <-> numpy arrays, without rclpy.

Decoding uses rosbags-image for raw encodings and OpenCV for compressed data;
building messages is ours (rosbags-image has no array-to-message direction).
Everything here works on rosbags message objects of one typestore, so bag
evaluation and the sample-bag writer need no ROS installation.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from rosbags.image import ImageError, image_to_cvimage
from rosbags.typesys.store import Typestore

from vimpnet_ros.bags.typestore import CAMERA_INFO_TYPE, COMPRESSED_TYPE, IMAGE_TYPE
from vimpnet_ros.errors import InputError

#: Raw encodings bag evaluation accepts (converted to RGB by rosbags-image).
SUPPORTED_ENCODINGS: tuple[str, ...] = (
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    *(f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)),
)


def stamp_ns(header: Any) -> int:
    """Header stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(store: Typestore, stamp: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` of ``store`` for ``stamp`` [ns]."""
    time_cls = store.types["builtin_interfaces/msg/Time"]
    header_cls = store.types["std_msgs/msg/Header"]
    return header_cls(
        stamp=time_cls(sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000)), frame_id=frame_id
    )


def message_to_rgb(message: Any, msgtype: str) -> np.ndarray:
    """Decode an Image or CompressedImage message into (h, w, 3) uint8 RGB; InputError if unusable."""
    if msgtype == COMPRESSED_TYPE:
        buffer = np.frombuffer(bytes(message.data), np.uint8)
        decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
        if decoded is None:
            raise InputError(f"cannot decode compressed image (format '{message.format}', {buffer.size} bytes)")
        return np.ascontiguousarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
    if msgtype != IMAGE_TYPE:
        raise InputError(f"unsupported message type {msgtype}; use sensor_msgs/msg/Image or CompressedImage")
    encoding = str(message.encoding)
    if encoding not in SUPPORTED_ENCODINGS:
        raise InputError(f"unsupported image encoding '{encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    height, width, step = int(message.height), int(message.width), int(message.step)
    data = np.asarray(message.data, dtype=np.uint8)
    if height == 0 or width == 0 or data.size != step * height:
        raise InputError(f"malformed {width}x{height} {encoding} image: {data.size} bytes for step {step}")
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding, 1)
    row = width * channels * (2 if encoding.endswith("16") else 1)
    if step != row:  # drop row padding so rosbags-image sees packed rows
        data = np.ascontiguousarray(data.reshape(height, step)[:, :row]).reshape(-1)
        message = type(message)(
            header=message.header,
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=message.is_bigendian,
            step=row,
            data=data,
        )
    try:
        rgb = image_to_cvimage(message, "rgb8")
    except (ImageError, cv2.error, ValueError, TypeError) as error:
        raise InputError(f"cannot convert {width}x{height} {encoding} image: {error}") from error
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return rgb if rgb.flags.writeable else rgb.copy()  # rgb8 input is a view of the read-only message buffer


def array_to_image(store: Typestore, pixels: np.ndarray, encoding: str, header: Any) -> Any:
    """A ``sensor_msgs/Image`` of ``store`` from an (h, w[, c]) array already in ``encoding``'s layout.

    Supported: rgb8/bgr8 (h, w, 3) uint8, mono8 (h, w) uint8, 32FC1 (h, w) float32.
    """
    layouts = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 2), "32FC1": (np.float32, 2)}
    if encoding not in layouts:
        raise InputError(f"cannot write images as '{encoding}'; use one of {', '.join(layouts)}")
    dtype, ndim = layouts[encoding]
    pixels = np.ascontiguousarray(pixels, dtype=np.dtype(dtype).newbyteorder("<"))
    if pixels.ndim != ndim or (ndim == 3 and pixels.shape[2] != 3):
        raise InputError(f"a {encoding} image needs {ndim} dimensions, got shape {pixels.shape}")
    image_cls = store.types[IMAGE_TYPE]
    return image_cls(
        header=header,
        height=int(pixels.shape[0]),
        width=int(pixels.shape[1]),
        encoding=encoding,
        is_bigendian=0,
        step=int(pixels.strides[0]),
        data=np.frombuffer(pixels.tobytes(), dtype=np.uint8),
    )


def rgb_to_compressed(store: Typestore, rgb: np.ndarray, header: Any, quality: int = 90) -> Any:
    """A JPEG ``sensor_msgs/CompressedImage`` (format as image_transport writes it) from (h, w, 3) uint8 RGB."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"JPEG encoding failed for a {rgb.shape[1]}x{rgb.shape[0]} image")
    cls = store.types[COMPRESSED_TYPE]
    return cls(header=header, format="bgr8; jpeg compressed bgr8", data=np.asarray(encoded, dtype=np.uint8).reshape(-1))


def camera_info(store: Typestore, header: Any, width: int, height: int, fov_deg: float = 70.0) -> Any:
    """A pinhole ``sensor_msgs/CameraInfo`` without distortion for a ``width`` x ``height`` camera."""
    focal = 0.5 * width / np.tan(np.radians(fov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cls = store.types[CAMERA_INFO_TYPE]
    roi_cls = store.types["sensor_msgs/msg/RegionOfInterest"]
    return cls(
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=np.array([focal, 0, cx, 0, focal, cy, 0, 0, 1], dtype=np.float64),
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=np.array([focal, 0, cx, 0, 0, focal, cy, 0, 0, 0, 1, 0], dtype=np.float64),
        binning_x=0,
        binning_y=0,
        roi=roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
