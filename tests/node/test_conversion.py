"""Image messages <-> arrays: every supported encoding, padding, and each kind of bad input."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from vimpnet_ros.errors import InputError
from vimpnet_ros.node import conversion

pytestmark = pytest.mark.ros

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def _image(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, step=rows.shape[1])
    msg.data = array.array("B", rows.tobytes())
    return msg


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
    decoded = conversion.image_to_rgb(_image(np.ascontiguousarray(pixels), encoding))
    np.testing.assert_array_equal(decoded.rgb, RGB)
    assert decoded.output_encoding == out and decoded.size == (8, 6)


def test_padded_rows_are_handled() -> None:
    decoded = conversion.image_to_rgb(_image(RGB, "rgb8", pad=5))
    np.testing.assert_array_equal(decoded.rgb, RGB)


def test_mono_encodings_stay_mono() -> None:
    gray = RGB[..., 0]
    decoded = conversion.image_to_rgb(_image(gray, "mono8"))
    assert decoded.output_encoding == "mono8"
    np.testing.assert_array_equal(decoded.rgb[..., 1], gray)
    gray16 = gray.astype(np.uint16) * 257
    decoded16 = conversion.image_to_rgb(_image(gray16, "mono16"))
    assert decoded16.output_encoding == "mono16"
    np.testing.assert_array_equal(decoded16.rgb[..., 2], gray)
    msg = conversion.rgb_to_image(decoded16.rgb, "mono16", Header())
    assert (msg.encoding, msg.step) == ("mono16", 16)
    np.testing.assert_array_equal(np.frombuffer(msg.data, "<u2").reshape(6, 8), gray16)


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8", "bayer_rggb16"])
def test_bayer_is_demosaiced_and_published_as_bgr8(encoding: str) -> None:
    color = np.array([200, 100, 50], np.uint8)  # a flat RGB colour survives demosaicing
    pattern = encoding[6:10]
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.zeros((8, 8), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = color[channel[pattern[dy * 2 + dx]]]
    if encoding.endswith("16"):
        mosaic = mosaic.astype(np.uint16) * 257
    decoded = conversion.image_to_rgb(_image(mosaic, encoding))
    assert decoded.output_encoding == "bgr8"
    np.testing.assert_allclose(decoded.rgb[2:-2, 2:-2].reshape(-1, 3).mean(0), color, atol=2)


@pytest.mark.parametrize("encoding", ["16UC1", "yuv422", "32FC1", "8UC3", "nv12"])
def test_unsupported_encodings_are_named(encoding: str) -> None:
    msg = Image(height=2, width=2, encoding=encoding, step=8)
    msg.data = array.array("B", bytes(16))
    with pytest.raises(InputError, match=f"unsupported image encoding '{encoding}'"):
        conversion.image_to_rgb(msg)


def test_bad_sizes() -> None:
    short = _image(RGB, "rgb8")
    short.data = array.array("B", bytes(len(short.data) - 3))
    with pytest.raises(InputError, match="data length"):
        conversion.image_to_rgb(short)
    empty = Image(height=0, width=8, encoding="rgb8", step=24)
    with pytest.raises(InputError, match="empty image"):
        conversion.image_to_rgb(empty)
    narrow = _image(RGB, "rgb8")
    narrow.step = 10
    narrow.data = array.array("B", bytes(60))
    with pytest.raises(InputError, match="step"):
        conversion.image_to_rgb(narrow)


def test_compressed_jpeg_png_and_corrupt() -> None:
    smooth = np.zeros((16, 24, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 24, dtype=np.uint8)
    smooth[..., 2] = 120
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    decoded = conversion.compressed_to_rgb(CompressedImage(format="jpeg", data=array.array("B", jpeg.tobytes())))
    assert decoded.output_encoding == "bgr8" and decoded.rgb.shape == (16, 24, 3)
    assert np.abs(decoded.rgb.astype(int) - smooth).mean() < 5
    ok, png = cv2.imencode(".png", RGB[..., 0])
    decoded = conversion.compressed_to_rgb(CompressedImage(format="png", data=array.array("B", png.tobytes())))
    np.testing.assert_array_equal(decoded.rgb[..., 0], RGB[..., 0])
    corrupt = bytes(jpeg.tobytes()[:20]) + b"garbage" * 10
    with pytest.raises(InputError, match="cannot decode"):
        conversion.compressed_to_rgb(CompressedImage(format="jpeg", data=array.array("B", corrupt)))
    with pytest.raises(InputError, match="empty"):
        conversion.compressed_to_rgb(CompressedImage(format="jpeg"))


def test_outgoing_messages() -> None:
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    for encoding in ("rgb8", "bgr8", "mono8"):
        msg = conversion.rgb_to_image(RGB, encoding, header)
        back = conversion.image_to_rgb(msg)
        assert (msg.header.frame_id, msg.header.stamp.nanosec, msg.encoding) == ("cam", 345, encoding)
        if encoding != "mono8":
            np.testing.assert_array_equal(back.rgb, RGB)
    jpeg = conversion.rgb_to_compressed(RGB, header, quality=95)
    assert jpeg.format.startswith("bgr8; jpeg")
    assert conversion.compressed_to_rgb(jpeg).rgb.shape == RGB.shape
    mask = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    prob = np.frombuffer(conversion.mask_to_image(mask, header, 0.0).data, np.uint8)
    assert prob.min() == 0 and prob.max() == 255 and len(np.unique(prob)) > 10
    binary = np.frombuffer(conversion.mask_to_image(mask, header, 0.5).data, np.uint8)
    assert set(np.unique(binary)) == {0, 255} and (binary == 255).sum() == (mask >= 0.5).sum()
    streak = conversion.streak_to_image(mask * 3 - 1, header, "32FC1")
    assert streak.encoding == "32FC1" and streak.step == 32
    np.testing.assert_allclose(np.frombuffer(streak.data, "<f4").reshape(6, 8), mask * 3 - 1)
