"""Camera messages -> arrays: every supported encoding, padding, limits before decoding, each kind of bad input.

The pipeline decodes rclpy and rosbags messages alike (any object with the fields); here
plain namespaces stand in for both, and rosbags-image is the oracle for 8-bit layouts.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.image import image_to_cvimage

from vimpnet_ros.errors import InputError
from vimpnet_ros.pipeline.decode import (
    RAW_ENCODINGS,
    DecodedFrame,
    DecodeLimits,
    WhiteLevelTracker,
    compressed_size,
    decode_compressed,
    decode_image,
    sensor_white_level,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
LIMITS = DecodeLimits()


def _image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> SimpleNamespace:
    if bigendian:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">"))
    rows = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    return SimpleNamespace(
        height=pixels.shape[0],
        width=pixels.shape[1],
        encoding=encoding,
        step=rows.shape[1],
        is_bigendian=int(bigendian),
        data=rows.tobytes(),
    )


@pytest.mark.parametrize(
    ("encoding", "pixels", "out"),
    [
        ("rgb8", RGB, "rgb8"),
        ("bgr8", RGB[..., ::-1], "bgr8"),
        ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)]), "rgb8"),
        ("bgra8", np.dstack([RGB[..., ::-1], np.zeros(RGB.shape[:2], np.uint8)]), "bgr8"),
    ],
)
def test_color_encodings_decode_exactly(encoding: str, pixels: np.ndarray, out: str) -> None:
    decoded = decode_image(_image(np.ascontiguousarray(pixels), encoding, pad=3), LIMITS)
    np.testing.assert_array_equal(decoded.rgb, RGB)
    assert decoded.output_encoding == out and decoded.white_level == 255 and decoded.rgb.flags.c_contiguous


@pytest.mark.parametrize("encoding", ["mono8", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"])
def test_single_channel_8_bit_layouts_match_rosbags_image(encoding: str) -> None:
    """Mono and every Bayer pattern decode as rosbags-image (the maintained reference) does, exactly."""
    mosaic = RNG.integers(0, 256, (8, 10), dtype=np.uint8)
    msg = _image(mosaic, encoding)
    expected = image_to_cvimage(SimpleNamespace(**{**vars(msg), "data": np.frombuffer(msg.data, np.uint8)}), "rgb8")
    np.testing.assert_array_equal(decode_image(msg, LIMITS).rgb, expected)


def test_sixteen_bit_encodings_keep_every_level() -> None:
    """A 12-bit ramp stays 12-bit (not scaled to 16 levels), in either byte order, and mono16 stays mono16."""
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    for bigendian in (False, True):
        decoded = decode_image(_image(ramp, "mono16", bigendian=bigendian), LIMITS)
        assert decoded.rgb.dtype == np.uint16 and decoded.output_encoding == "mono16"
        np.testing.assert_array_equal(decoded.rgb[..., 1], ramp)
    rgb16 = np.dstack([ramp, ramp // 2, ramp // 3])
    decoded = decode_image(_image(rgb16[..., ::-1].copy(), "bgr16"), LIMITS)
    np.testing.assert_array_equal(decoded.rgb, rgb16)
    assert decoded.output_encoding == "bgr16"
    bayer = decode_image(_image(ramp, "bayer_rggb16"), LIMITS)
    assert bayer.rgb.dtype == np.uint16 and bayer.output_encoding == "bgr16" and bayer.rgb.max() > 3000


def test_white_level_follows_the_sensor_range_or_the_parameter() -> None:
    assert [sensor_white_level(v) for v in (200, 1000, 1024, 4095, 5000, 65535)] == [
        255,
        1023,
        4095,
        4095,
        16383,
        65535,
    ]
    tracker = WhiteLevelTracker()
    frame = DecodedFrame(np.full((2, 2, 3), 900, np.uint16), 65535, "mono16")
    assert tracker.update(frame).white_level == 1023
    brighter = DecodedFrame(np.full((2, 2, 3), 3000, np.uint16), 65535, "mono16")
    assert tracker.update(brighter).white_level == 4095
    assert tracker.update(frame).white_level == 4095  # never shrinks back
    assert WhiteLevelTracker(4095).update(frame).white_level == 4095
    with pytest.raises(InputError, match="input_white_level"):
        WhiteLevelTracker(1023).update(brighter)
    eight = DecodedFrame(RGB, 255, "rgb8")
    assert tracker.update(eight) is eight


@pytest.mark.parametrize("encoding", ["16UC1", "yuv422", "32FC1", "8UC3", "nv12", ""])
def test_unsupported_encodings_are_named(encoding: str) -> None:
    msg = SimpleNamespace(height=2, width=2, encoding=encoding, step=8, is_bigendian=0, data=bytes(16))
    with pytest.raises(InputError, match=f"unsupported image encoding '{encoding}'"):
        decode_image(msg, LIMITS)


def test_bad_sizes() -> None:
    short = _image(RGB, "rgb8")
    short.data = bytes(len(short.data) - 3)
    with pytest.raises(InputError, match="data length"):
        decode_image(short, LIMITS)
    with pytest.raises(InputError, match="empty image"):
        decode_image(SimpleNamespace(height=0, width=8, encoding="rgb8", step=24, is_bigendian=0, data=b""), LIMITS)
    narrow = _image(RGB, "rgb8")
    narrow.step, narrow.data = 10, bytes(60)
    with pytest.raises(InputError, match="step"):
        decode_image(narrow, LIMITS)


def test_declared_sizes_over_the_limits_are_rejected_before_any_data_is_read() -> None:
    """A header claiming 30000x30000 with no data behind it costs nothing: the size check comes first."""
    huge = SimpleNamespace(height=30000, width=30000, encoding="rgb8", step=90000, is_bigendian=0, data=b"")
    with pytest.raises(InputError, match="exceeds the input limits"):
        decode_image(huge, LIMITS)
    small = DecodeLimits(max_width=100, max_height=100, max_pixels=50 * 50, max_bytes=10**6)
    with pytest.raises(InputError, match="max_input_pixels 2500"):
        decode_image(_image(np.zeros((60, 60, 3), np.uint8), "rgb8"), small)
    decode_image(_image(np.zeros((50, 50, 3), np.uint8), "rgb8"), small)


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def test_compressed_jpeg_png_and_corrupt() -> None:
    smooth = np.zeros((16, 24, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 24, dtype=np.uint8)
    smooth[..., 2] = 120
    jpeg = _encode(cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), ".jpg")
    decoded = decode_compressed(SimpleNamespace(format="jpeg", data=jpeg), LIMITS)
    assert decoded.output_encoding == "bgr8" and decoded.rgb.shape == (16, 24, 3)
    assert np.abs(decoded.rgb.astype(int) - smooth).mean() < 5
    png = _encode(RGB[..., 0], ".png")
    decoded = decode_compressed(SimpleNamespace(format="rgb8; jpeg compressed", data=png), LIMITS)  # mislabelled
    np.testing.assert_array_equal(decoded.rgb[..., 0], RGB[..., 0])
    png16 = _encode(np.arange(4096, dtype=np.uint16).reshape(64, 64), ".png")
    decoded = decode_compressed(SimpleNamespace(format="png", data=png16), LIMITS)
    assert decoded.rgb.dtype == np.uint16 and decoded.output_encoding == "bgr16" and decoded.rgb.max() == 4095
    corrupt = jpeg[:20] + b"garbage" * 10
    with pytest.raises(InputError, match="cannot decode compressed image"):
        decode_compressed(SimpleNamespace(format="jpeg", data=corrupt), LIMITS)
    with pytest.raises(InputError, match="empty"):
        decode_compressed(SimpleNamespace(format="jpeg", data=b""), LIMITS)
    gif = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(InputError, match="GIF is not supported"):
        decode_compressed(SimpleNamespace(format="gif", data=gif.getvalue()), LIMITS)


def _forged_jpeg(width: int, height: int) -> bytes:
    """A valid 8x8 JPEG whose frame header claims ``width`` x ``height``."""
    tiny = _encode(np.zeros((8, 8, 3), np.uint8), ".jpg")
    marker = tiny.index(b"\xff\xc0")  # baseline SOF0: length(2) precision(1) height(2) width(2)
    return tiny[: marker + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + tiny[marker + 9 :]


def test_a_tiny_jpeg_declaring_a_huge_image_is_rejected_from_its_header() -> None:
    """The 629-byte JPEG that declared 30000x30000: the header is read, OpenCV never decodes it."""
    forged = _forged_jpeg(6000, 4000)
    assert len(forged) < 1000 and compressed_size(np.frombuffer(forged, np.uint8)) == ("jpeg", 6000, 4000)
    with pytest.raises(InputError, match="exceeds the input limits"):
        decode_compressed(SimpleNamespace(format="jpeg", data=forged), LIMITS)
    with pytest.raises(InputError, match=r"decompression bomb|exceeds the input limits"):
        decode_compressed(SimpleNamespace(format="jpeg", data=_forged_jpeg(30000, 30000)), LIMITS)


def test_every_encoding_has_a_published_encoding() -> None:
    from vimpnet_ros.pipeline.outputs import PUBLISHED_ENCODINGS

    assert {out for _, _, out in RAW_ENCODINGS.values()} <= set(PUBLISHED_ENCODINGS)
