"""Camera messages -> RGB arrays for the engine: one decoder for the node (rclpy) and bag evaluation (rosbags).

Works on any object with the message's fields (``encoding``, ``height``, ``width``,
``step``, ``is_bigendian``, ``data``; ``format``, ``data`` for compressed images), as
rosbags-image does, so both message flavours take the same path and the same checks.
Written here on NumPy and OpenCV rather than taken from rosbags-image or cv_bridge because
the node must decode on a ROS distro where rosdep can install its dependencies
(rosbags-image has no rosdep key; the PyPI cv_bridge is broken on NumPy 2), because 16-bit
images must keep their levels (rosbags-image's rgb8 conversion drops 8 bits), and because
every size is checked against :class:`DecodeLimits` before a byte is decoded.

Every size a message declares is untrusted: raw images are checked against the limits
and the data length before any copy; compressed images are checked from their own
header (Pillow reads it without decoding the pixels) before OpenCV decodes them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vimpnet_ros.engine import fit_pixels
from vimpnet_ros.errors import InputError

#: Raw encoding -> (channels, bytes per channel, encoding of the published derained image).
#: rgb/bgr keep theirs; alpha is dropped; Bayer is demosaiced to bgr; mono stays mono; 16 bits stay 16 bits.
RAW_ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb8"),
    "bgr8": (3, 1, "bgr8"),
    "rgba8": (4, 1, "rgb8"),
    "bgra8": (4, 1, "bgr8"),
    "mono8": (1, 1, "mono8"),
    "rgb16": (3, 2, "rgb16"),
    "bgr16": (3, 2, "bgr16"),
    "rgba16": (4, 2, "rgb16"),
    "bgra16": (4, 2, "bgr16"),
    "mono16": (1, 2, "mono16"),
    **{f"bayer_{p}8": (1, 1, "bgr8") for p in ("rggb", "bggr", "gbrg", "grbg")},
    **{f"bayer_{p}16": (1, 2, "bgr16") for p in ("rggb", "bggr", "gbrg", "grbg")},
}
#: OpenCV demosaicing codes to RGB (OpenCV names Bayer patterns by the second row; see its docs).
_BAYER_TO_RGB: dict[str, int] = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
#: Compressed formats the node decodes (what image_transport's compressed plugin produces), by Pillow's name.
COMPRESSED_FORMATS: dict[str, str] = {"JPEG": "jpeg", "PNG": "png"}
#: Bit depths a 16-bit camera is assumed to have when its white level is not configured.
SENSOR_BIT_DEPTHS = (8, 10, 12, 14, 16)


@dataclass(frozen=True)
class DecodeLimits:
    """What one input frame may cost: checked from the declared size, before decoding.

    ``max_width``/``max_height``/``max_pixels`` bound the decoded frame; ``max_bytes`` the
    payload (raw data or compressed stream).
    """

    max_width: int = 4096
    max_height: int = 4096
    max_pixels: int = 4096 * 3072
    max_bytes: int = 4096 * 3072 * 8

    def check(self, width: int, height: int, what: str) -> None:
        """Raise InputError when a declared size is empty or over a limit."""
        if width <= 0 or height <= 0:
            raise InputError(f"empty image: {width}x{height} ({what})")
        if width > self.max_width or height > self.max_height or width * height > self.max_pixels:
            raise InputError(
                f"{width}x{height} ({what}) exceeds the input limits (max_input_width {self.max_width}, "
                f"max_input_height {self.max_height}, max_input_pixels {self.max_pixels}); frame rejected before "
                "decoding"
            )

    def check_bytes(self, size: int, what: str) -> None:
        """Raise InputError when a payload is larger than ``max_bytes``."""
        if size > self.max_bytes:
            raise InputError(f"{what} payload of {size} bytes exceeds max_bytes {self.max_bytes}; frame rejected")


@dataclass(frozen=True)
class DecodedFrame:
    """A frame ready for the engine: ``rgb`` is (h, w, 3) uint8 or uint16 RGB, C-contiguous.

    ``white_level`` is the value meaning full scale (255 for 8-bit; for 16-bit the camera's real
    range); ``output_encoding`` is how the derained image of this frame is published.
    """

    rgb: np.ndarray
    white_level: int
    output_encoding: str


def _as_bytes(data: Any) -> np.ndarray:
    """The message's data as a flat uint8 array without copying where the buffer allows it."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints (some message implementations)
        return np.asarray(data, dtype=np.uint8)


def _unsupported(encoding: str) -> str:
    return f"unsupported image encoding '{encoding}'; supported: {', '.join(RAW_ENCODINGS)} (or use image/compressed)"


def output_encoding(input_encoding: str) -> str:
    """Encoding the derained image of a frame with ``input_encoding`` is published as."""
    if input_encoding not in RAW_ENCODINGS:
        raise InputError(_unsupported(input_encoding))
    return RAW_ENCODINGS[input_encoding][2]


def declared_size(msg: Any, compressed: bool) -> tuple[int, int]:
    """(width, height) a message declares, read without decoding (a compressed stream's own header)."""
    if not compressed:
        return int(msg.width), int(msg.height)
    data = _as_bytes(msg.data)
    if data.size == 0:
        raise InputError(f"empty compressed image, format '{msg.format}'")
    return compressed_size(data, f"compressed image, format '{msg.format}'")[1:]


def _shrink(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """``rgb`` resized (area averaging) to at most ``max_pixels`` pixels; unchanged when it fits."""
    height, width = rgb.shape[:2]
    size = fit_pixels(width, height, max_pixels)
    if size == (width, height):
        return rgb
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def decode_image(msg: Any, limits: DecodeLimits, max_pixels: int = 0) -> DecodedFrame:
    """Decode a ``sensor_msgs/Image`` (any flavour) into RGB; InputError for anything unusable.

    16-bit encodings come back as uint16 with white level 65535; :class:`WhiteLevelTracker`
    sets the camera's real range. ``max_pixels`` > 0 returns a frame of at most that many
    pixels (rows and columns are skipped before conversion, then area-averaged).
    """
    encoding = str(msg.encoding)
    if encoding not in RAW_ENCODINGS:
        raise InputError(_unsupported(encoding))
    channels, depth, published = RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    limits.check(width, height, encoding)
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than width x bytes per pixel = {row_bytes} for {width}px {encoding}")
    data = _as_bytes(msg.data)
    limits.check_bytes(data.size, encoding)
    if data.size != step * height:
        raise InputError(f"data length {data.size} != step x height = {step} x {height} = {step * height} ({encoding})")
    rows = data.reshape(height, step)[:, :row_bytes]
    skip = _skip_factor(width, height, max_pixels) if not encoding.startswith("bayer_") else 1
    if skip > 1:  # keep every skip-th row and pixel: the conversion below then costs the reduced size only
        pixels = rows.reshape(height, width, channels * depth)[::skip, ::skip]
        height, width = pixels.shape[:2]
        rows = np.ascontiguousarray(pixels).reshape(height, width * channels * depth)
    if depth == 2:
        order = ">" if int(msg.is_bigendian) else "<"
        pixels = np.ascontiguousarray(rows).view(f"{order}u2").astype(np.uint16).reshape(height, width, channels)
    else:
        pixels = rows.reshape(height, width, channels)
    if encoding.startswith("bayer_"):
        rgb = cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), _BAYER_TO_RGB[encoding[6:10]])
    elif channels == 1:
        rgb = np.repeat(pixels, 3, axis=2)
    elif encoding.startswith("bgr"):
        rgb = pixels[:, :, 2::-1]
    else:
        rgb = pixels[:, :, :3]
    return DecodedFrame(_shrink(np.ascontiguousarray(rgb), max_pixels), 255 if depth == 1 else 65535, published)


def _skip_factor(width: int, height: int, max_pixels: int) -> int:
    """The largest whole step that keeps a frame at or above ``max_pixels`` (1 when it fits or there is no cap)."""
    if max_pixels <= 0 or width * height <= max_pixels:
        return 1
    return max(1, int((width * height / max_pixels) ** 0.5))


def compressed_size(data: np.ndarray, label: str = "compressed image") -> tuple[str, int, int]:
    """(format, width, height) from a compressed image's own header, without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            name = str(image.format)
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise InputError(f"cannot decode {label}: its header declares a decompression bomb ({error})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError(f"cannot decode {label} ({data.size} bytes): not a readable JPEG or PNG") from None
    if name not in COMPRESSED_FORMATS:
        raise InputError(f"cannot decode {label}: {name} is not supported; send {' or '.join(COMPRESSED_FORMATS)}")
    return COMPRESSED_FORMATS[name], int(width), int(height)


#: JPEG decoding at 1/2, 1/4, 1/8 scale (libjpeg scales in the DCT: the cost is that of the reduced image).
_JPEG_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def decode_compressed(msg: Any, limits: DecodeLimits, max_pixels: int = 0) -> DecodedFrame:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG, whatever ``format`` claims) into RGB.

    The size in the stream's header is checked against ``limits`` first, so a small file that
    declares a huge image is rejected without allocating it. 16-bit PNGs keep 16 bits.
    ``max_pixels`` > 0 returns a frame of at most that many pixels; a JPEG is then decoded at
    the smallest 1/2, 1/4 or 1/8 scale still at least that large, so it never costs its full size.
    """
    data = _as_bytes(msg.data)
    label = f"compressed image, format '{msg.format}'"
    if data.size == 0:
        raise InputError(f"empty {label}")
    limits.check_bytes(data.size, label)
    kind, width, height = compressed_size(data, label)
    limits.check(width, height, f"{kind} {label}")
    flag, scale = cv2.IMREAD_UNCHANGED, 1
    if kind == "jpeg" and max_pixels > 0:
        for factor, reduced in _JPEG_REDUCED:
            if (width // factor) * (height // factor) >= max_pixels:
                flag, scale = reduced, factor
                break
    image = cv2.imdecode(data, flag)
    expected = (-(-height // scale), -(-width // scale))  # libjpeg rounds a reduced size up
    if image is None or image.size == 0 or image.shape[:2] != expected:
        raise InputError(f"cannot decode {label} ({data.size} bytes)")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{label} decodes to {image.dtype}; only 8- and 16-bit images are supported")
    if image.ndim == 2:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    sixteen = rgb.dtype == np.uint16
    return DecodedFrame(_shrink(np.ascontiguousarray(rgb), max_pixels), 65535 if sixteen else 255,
                        "bgr16" if sixteen else "bgr8")  # fmt: skip


def decode_message(msg: Any, compressed: bool, limits: DecodeLimits, max_pixels: int = 0) -> DecodedFrame:
    """A ``sensor_msgs/CompressedImage`` (``compressed``) or ``sensor_msgs/Image`` into RGB; InputError if unusable.

    ``max_pixels`` > 0: at most that many pixels, never decoding the full size where the format allows.
    """
    decode = decode_compressed if compressed else decode_image
    return decode(msg, limits, max_pixels)


def sensor_white_level(max_value: int) -> int:
    """The smallest common sensor range (8, 10, 12, 14 or 16 bits) that holds ``max_value``: 2^bits - 1."""
    for bits in SENSOR_BIT_DEPTHS:
        if max_value < 2**bits:
            return 2**bits - 1
    return 65535


class WhiteLevelTracker:
    """Per-camera white level of 16-bit frames: configured, or the sensor range the frames have shown so far.

    With ``configured`` 0 the level starts at the range of the first frame's maximum and only
    grows (a 12-bit camera settles at 4095 once any pixel exceeds 1023), so the normalisation
    never jumps back and forth between frames.
    """

    def __init__(self, configured: int = 0) -> None:
        self.configured = configured
        self.level = 0

    def update(self, frame: DecodedFrame) -> DecodedFrame:
        """The frame with its white level set (8-bit frames pass through)."""
        if frame.rgb.dtype != np.uint16:
            return frame
        if self.configured:
            level = self.configured
            if int(frame.rgb.max()) > level:
                raise InputError(
                    f"16-bit frame has values up to {int(frame.rgb.max())}, above input_white_level {level}"
                )
        else:
            self.level = max(self.level, sensor_white_level(int(frame.rgb.max())))
            level = self.level
        return DecodedFrame(frame.rgb, level, frame.output_encoding)
