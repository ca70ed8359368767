"""``sensor_msgs`` images <-> numpy arrays for the node.

Incoming frames are decoded with rosbags-image (it reads rclpy messages by field
name) after the checks it does not do itself (encoding whitelist, zero size,
``step`` x ``height`` against the data length, row padding). The model works on
H x W x 3 uint8 RGB, so every supported encoding is brought to that, and
:func:`output_encoding` says what the derained image is published as. Outgoing
messages are filled here (rosbags-image has no array-to-message direction and
the PyPI cv_bridge is broken on NumPy 2).
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
from rosbags.image import ImageError, compressed_image_to_cvimage, image_to_cvimage
from sensor_msgs.msg import CompressedImage, Image

from vimpnet_ros.errors import InputError

#: Supported raw encodings -> the encoding of the published derained image.
#: rgb8/bgr8 keep theirs; alpha is dropped; Bayer is demosaiced to bgr8; mono stays mono.
RAW_ENCODINGS: dict[str, str] = {
    "rgb8": "rgb8",
    "bgr8": "bgr8",
    "rgba8": "rgb8",
    "bgra8": "bgr8",
    "mono8": "mono8",
    "mono16": "mono16",
    **{f"bayer_{pattern}{bits}": "bgr8" for pattern in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
}
#: Compressed input (JPEG/PNG) is always published as bgr8.
COMPRESSED_OUTPUT_ENCODING = "bgr8"

_BYTES_PER_PIXEL: dict[str, int] = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "mono16": 2,
    **{name: (1 if name.endswith("8") else 2) for name in RAW_ENCODINGS if name.startswith("bayer_")},
}


@dataclass(frozen=True)
class DecodedFrame:
    """A frame ready for the engine: ``rgb`` is (h, w, 3) uint8 RGB, contiguous."""

    rgb: np.ndarray
    output_encoding: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frame."""
        return (int(self.rgb.shape[1]), int(self.rgb.shape[0]))


def output_encoding(input_encoding: str) -> str:
    """Encoding the derained image of a frame with ``input_encoding`` is published as."""
    try:
        return RAW_ENCODINGS[input_encoding]
    except KeyError:
        raise InputError(_unsupported(input_encoding)) from None


def _unsupported(encoding: str) -> str:
    return f"unsupported image encoding '{encoding}'; supported: {', '.join(RAW_ENCODINGS)} (or use image/compressed)"


def image_to_rgb(msg: Image | Any) -> DecodedFrame:
    """Decode a sensor_msgs/Image into (h, w, 3) uint8 RGB; raise InputError for anything unusable."""
    encoding = str(msg.encoding)
    if encoding not in RAW_ENCODINGS:
        raise InputError(_unsupported(encoding))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise InputError(f"empty image: {width}x{height} ({encoding})")
    row_bytes = width * _BYTES_PER_PIXEL[encoding]
    data = msg.data
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than width x bytes per pixel = {row_bytes} for {width}px {encoding}")
    if len(data) != step * height:
        raise InputError(f"data length {len(data)} != step x height = {step} x {height} = {step * height} ({encoding})")
    if step != row_bytes:  # padded rows: drop the padding so rosbags-image sees a packed buffer
        packed = np.frombuffer(data, np.uint8).reshape(height, step)[:, :row_bytes]
        data = np.ascontiguousarray(packed).data
    view = SimpleNamespace(
        encoding=encoding, height=height, width=width, is_bigendian=bool(msg.is_bigendian), data=data
    )
    try:
        rgb = image_to_cvimage(view, "rgb8")  # type: ignore[arg-type]
    except (ImageError, cv2.error, ValueError, TypeError) as error:
        raise InputError(f"cannot convert {width}x{height} {encoding} image: {error}") from error
    return DecodedFrame(np.ascontiguousarray(rgb, dtype=np.uint8), RAW_ENCODINGS[encoding])


def compressed_to_rgb(msg: CompressedImage | Any) -> DecodedFrame:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG) into (h, w, 3) uint8 RGB."""
    if len(msg.data) == 0:
        raise InputError(f"empty compressed image (format '{msg.format}')")
    try:
        image = compressed_image_to_cvimage(msg)
    except (AssertionError, ImageError, cv2.error, ValueError) as error:
        raise InputError(f"cannot decode compressed image (format '{msg.format}', {len(msg.data)} bytes)") from error
    if image is None or image.size == 0:
        raise InputError(f"cannot decode compressed image (format '{msg.format}', {len(msg.data)} bytes)")
    if image.dtype != np.uint8:
        image = (image.astype(np.float32) * (255.0 / 65535.0)).round().astype(np.uint8)
    if image.ndim == 2:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return DecodedFrame(np.ascontiguousarray(rgb), COMPRESSED_OUTPUT_ENCODING)


def _fill_image(msg: Image, pixels: np.ndarray, encoding: str) -> Image:
    """Set size, encoding, step and data of ``msg`` from a contiguous (h, w[, c]) array."""
    pixels = np.ascontiguousarray(pixels)
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.strides[0])
    data = array.array("B")
    data.frombytes(pixels.reshape(-1).view(np.uint8).data)
    msg.data = data
    return msg


def rgb_to_image(rgb: np.ndarray, encoding: str, header: Any) -> Image:
    """Build a sensor_msgs/Image in ``encoding`` (rgb8, bgr8, mono8 or mono16) from (h, w, 3) uint8 RGB."""
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "mono8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == "mono16":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype("<u2") * np.uint16(257)
    else:
        raise InputError(f"cannot publish images as '{encoding}'; use rgb8, bgr8, mono8 or mono16")
    return _fill_image(Image(header=header), pixels, encoding)


def rgb_to_compressed(rgb: np.ndarray, header: Any, quality: int) -> CompressedImage:
    """JPEG-encode (h, w, 3) uint8 RGB as image_transport's compressed plugin does (format 'bgr8; jpeg ...')."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"JPEG encoding failed for a {rgb.shape[1]}x{rgb.shape[0]} image")
    msg = CompressedImage(header=header, format="bgr8; jpeg compressed bgr8")
    data = array.array("B")
    data.frombytes(encoded.data)
    msg.data = data
    return msg


def mask_to_image(mask: np.ndarray, header: Any, threshold: float) -> Image:
    """mono8 raindrop mask from an (h, w) probability map: p x 255, or 0/255 when ``threshold`` > 0."""
    if threshold > 0.0:
        pixels = np.where(mask >= threshold, np.uint8(255), np.uint8(0))
    else:
        pixels = (np.clip(np.nan_to_num(mask, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return _fill_image(Image(header=header), pixels, "mono8")


def streak_to_image(streak: np.ndarray, header: Any, encoding: str) -> Image:
    """Streak map as mono8 (intensity x 255, clipped to [0, 1]) or 32FC1 (raw intensity)."""
    if encoding == "32FC1":
        return _fill_image(Image(header=header), streak.astype("<f4", copy=False), "32FC1")
    pixels = (np.clip(np.nan_to_num(streak, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return _fill_image(Image(header=header), pixels, "mono8")
