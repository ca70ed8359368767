"""Drop fill: the drops' inpainting blended into the network's restoration, only inside the predicted drops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.engine.conftest import CPU_ENV
from vimpnet_ros.data import load_rain_config, make_road_clip, render_video
from vimpnet_ros.engine import DropHistory, EngineConfig, InferenceEngine, fill_drops
from vimpnet_ros.engine.drop_fill import FILL_RADIUS, MASK_LEVEL, MAX_FILL_FRACTION, MAX_FILL_PIXELS
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.model import MASK_THRESHOLD
from vimpnet_ros.model.checkpoint import load_model, shipped_checkpoint

FRAME_NS = 100_000_000


def _road_with_a_drop(width: int = 1280, height: int = 720) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean, restored with a drop left in it, mask) at a camera's size: a smooth gradient, a bright blob, its mask."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    clean = np.stack([40 + 150 * xs / width, 60 + 120 * ys / height, 90 + 60 * (xs + ys) / (width + height)], axis=2)
    clean = np.rint(clean).astype(np.uint8)
    inside = (xs - width / 2) ** 2 + (ys - height / 2) ** 2 < (height / 12) ** 2
    restored = clean.copy()
    restored[inside] = np.clip(clean[inside].astype(int) + 70, 0, 255).astype(np.uint8)
    mask = np.where(inside, np.uint8(230), np.uint8(10))
    return clean, restored, mask


def _error(image: np.ndarray, clean: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(image.astype(np.float64) - clean)[where].mean())


def test_fill_moves_a_drop_toward_its_surroundings_and_nothing_else() -> None:
    """At 1280x720: inside the mask the error falls; outside it not one pixel changes; 0.5 is the two's mean; the
    inpainting is the whole frame's, and filling in place writes the same pixels."""
    clean, restored, mask = _road_with_a_drop()
    inside = mask >= MASK_LEVEL
    inpainted = fill_drops(restored, mask, 1.0)
    filled = fill_drops(restored, mask, 0.5)
    assert _error(inpainted, clean, inside) < 0.1 * _error(restored, clean, inside)
    assert _error(filled, clean, inside) < 0.6 * _error(restored, clean, inside)
    np.testing.assert_array_equal(filled[~inside], restored[~inside])
    mean = (restored.astype(np.float32) + inpainted.astype(np.float32)) / 2
    assert np.abs(filled.astype(np.float32) - mean).max() <= 0.5
    assert filled.dtype == np.uint8 and filled.shape == restored.shape
    # Filling only around the drops gives the whole frame's inpainting; in place gives the copy's pixels.
    whole_frame = cv2.inpaint(restored, inside.astype(np.uint8), FILL_RADIUS, cv2.INPAINT_TELEA)
    np.testing.assert_array_equal(inpainted, whole_frame)
    own = restored.copy()
    assert fill_drops(own, mask, 0.5, in_place=True) is own
    np.testing.assert_array_equal(own, filled)


def test_no_drop_no_weight_or_too_much_mask_leaves_the_image_as_it_is() -> None:
    """The network's image itself comes back: no pixel at the threshold, blend 0, or a mask over the bounds."""
    _, restored, mask = _road_with_a_drop()
    below = np.full_like(mask, MASK_LEVEL - 1)
    assert fill_drops(restored, below, 0.5) is restored
    assert fill_drops(restored, mask, 0.0) is restored
    assert fill_drops(restored, np.full_like(mask, 255), 0.5) is restored  # nothing around the drops
    height, width = mask.shape
    over = np.zeros_like(mask)
    rows = MAX_FILL_PIXELS // width + 1  # more than the pixel budget, less than the fraction
    assert rows * width < MAX_FILL_FRACTION * height * width
    over[:rows] = 255
    assert fill_drops(restored, over, 0.5) is restored


def test_the_threshold_is_the_published_one() -> None:
    """A quantised probability of 0.5 (128 of 255, rounded half up) is a drop; one level less is not."""
    assert MASK_LEVEL == 128 and (MASK_LEVEL - 0.5) / 255 == MASK_THRESHOLD  # levels round half up
    _, restored, mask = _road_with_a_drop(320, 240)
    for level, changes in ((MASK_LEVEL, True), (MASK_LEVEL - 1, False)):
        drop = np.where(mask >= MASK_LEVEL, np.uint8(level), np.uint8(0))
        assert (fill_drops(restored, drop, 0.5) is not restored) == changes


def test_sixteen_bit_frames_keep_their_type_and_range() -> None:
    """uint16 input (white level 4095, 12-bit cameras) is filled channel by channel and stays uint16 in range."""
    clean, restored, mask = _road_with_a_drop(640, 480)
    clean16, restored16 = clean.astype(np.uint16) * 16, restored.astype(np.uint16) * 16
    filled = fill_drops(restored16, mask, 0.5)
    inside = mask >= MASK_LEVEL
    assert filled.dtype == np.uint16 and filled.max() <= 4095
    assert _error(filled, clean16, inside) < 0.6 * _error(restored16, clean16, inside)
    np.testing.assert_array_equal(filled[~inside], restored16[~inside])


@pytest.mark.parametrize("weight", [-0.1, 1.5, True, "half", float("nan")])
def test_a_bad_weight_fails_at_start(weight: object) -> None:
    with pytest.raises(ConfigError, match="drop_fill"):
        EngineConfig(drop_fill=weight)  # type: ignore[arg-type]


def test_the_engine_fills_its_own_results() -> None:
    """Shipped weights on a rainy drive: each result is the unfilled result with fill_drops applied, then its drops
    filled from the stream's earlier results (DropHistory, in order), nothing else."""
    rng = np.random.default_rng(5)
    clean = make_road_clip(6, (256, 160), rng)
    rainy = render_video(clean, load_rain_config("wide"), rng).lq
    model = load_model(shipped_checkpoint("vimpnet_lite_gated"), "vimpnet_lite_gated")
    base = EngineConfig(device="cpu", backend="torch", precision="fp32")
    results = {}
    for weight in (0.0, 0.5):
        engine = InferenceEngine(base.replace(drop_fill=weight), environment=CPU_ENV).load(model)
        stream = engine.open_stream("cam")
        results[weight] = [engine.push(stream, frame, k * FRAME_NS) for k, frame in enumerate(rainy)]
    filled_any = False
    history = DropHistory(base.drop_fill_frames)
    for plain, filled in zip(results[0.0], results[0.5], strict=True):
        assert plain is not None and filled is not None
        np.testing.assert_array_equal(filled.drop_mask, plain.drop_mask)
        expected = history.fill(fill_drops(plain.image, plain.drop_mask, 0.5), plain.drop_mask, 0.5)
        np.testing.assert_array_equal(filled.image, expected)
        filled_any |= bool((filled.image != plain.image).any())
    assert filled_any, "the drive's drops were not found: the test needs frames with drops"
