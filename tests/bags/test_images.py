"""Image messages <-> arrays for bags, and CDR header stamps read from the bytes."""

from __future__ import annotations

import numpy as np
import pytest

from vimpnet_ros.bags.images import array_to_image, make_header, message_to_rgb, rgb_to_compressed
from vimpnet_ros.bags.stats import Percentiles, cdr_header_stamp, cdr_replace_header_stamp, has_header_first
from vimpnet_ros.bags.typestore import COMPRESSED_TYPE, IMAGE_TYPE, make_typestore
from vimpnet_ros.errors import InputError

STORE = make_typestore()
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize(("encoding", "pixels"), [("rgb8", RGB), ("bgr8", RGB[..., ::-1])])
def test_raw_round_trip(encoding: str, pixels: np.ndarray) -> None:
    message = array_to_image(STORE, pixels, encoding, make_header(STORE, 1, "cam"))
    assert (message.height, message.width, message.step) == (6, 5, 15)
    np.testing.assert_array_equal(message_to_rgb(message, IMAGE_TYPE), RGB)


def test_mono_and_padded_rows() -> None:
    grey = RGB[..., 0]
    message = array_to_image(STORE, grey, "mono8", make_header(STORE, 1, "cam"))
    np.testing.assert_array_equal(message_to_rgb(message, IMAGE_TYPE), np.repeat(grey[..., None], 3, axis=2))
    padded = np.zeros((6, 8), np.uint8)
    padded[:, :5] = grey
    message.step, message.data = 8, padded.reshape(-1)
    np.testing.assert_array_equal(message_to_rgb(message, IMAGE_TYPE)[..., 0], grey)


def test_compressed_round_trip_is_close() -> None:
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 1, 3))
    message = rgb_to_compressed(STORE, smooth, make_header(STORE, 1, "cam"), quality=100)
    decoded = message_to_rgb(message, COMPRESSED_TYPE)
    assert np.abs(decoded.astype(int) - smooth).max() <= 4


def test_bad_images_raise_input_error() -> None:
    message = array_to_image(STORE, RGB, "rgb8", make_header(STORE, 1, "cam"))
    message.encoding = "yuv422"
    with pytest.raises(InputError, match="unsupported image encoding 'yuv422'"):
        message_to_rgb(message, IMAGE_TYPE)
    message.encoding, message.data = "rgb8", message.data[:-1]
    with pytest.raises(InputError, match="malformed"):
        message_to_rgb(message, IMAGE_TYPE)
    broken = rgb_to_compressed(STORE, RGB, make_header(STORE, 1, "cam"))
    broken.data = broken.data[:10]
    with pytest.raises(InputError, match="cannot decode"):
        message_to_rgb(broken, COMPRESSED_TYPE)


def test_cdr_header_stamp_matches_rosbags_and_can_be_replaced() -> None:
    stamp = 1_735_689_600_123_456_789
    message = array_to_image(STORE, RGB, "rgb8", make_header(STORE, stamp, "cam"))
    raw = bytes(STORE.serialize_cdr(message, IMAGE_TYPE))
    assert has_header_first(STORE, IMAGE_TYPE)
    assert not has_header_first(STORE, "rosgraph_msgs/msg/Clock")
    assert cdr_header_stamp(raw) == stamp
    replaced = cdr_replace_header_stamp(raw, 42_000_000_007)
    decoded = STORE.deserialize_cdr(replaced, IMAGE_TYPE)
    assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (42, 7)
    np.testing.assert_array_equal(decoded.data, message.data)
    assert cdr_header_stamp(b"\x00\x01") is None


def test_percentiles() -> None:
    summary = Percentiles.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (summary.count, summary.p50, summary.max) == (5, 3.0, 100.0)
    assert summary.p95 == pytest.approx(np.percentile([1, 2, 3, 4, 100], 95))
    assert Percentiles.of([]).to_dict()["p50"] is None
