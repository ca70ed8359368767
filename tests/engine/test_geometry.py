"""Frame geometry: odd sizes round-trip, tiles cover the frame, blending is exact and seam-free."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from vimpnet_ros.data import make_road_clip
from vimpnet_ros.engine import EngineConfig
from vimpnet_ros.engine.geometry import FrameGeometry, quantize, tile_starts, validate_frame, working_size
from vimpnet_ros.errors import InputError


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_tile_starts_cover_with_overlap() -> None:
    assert tile_starts(640, 256, 32) == [0, 224, 384]
    assert tile_starts(360, 256, 32) == [0, 104]
    assert tile_starts(100, 256, 32) == [0]
    for length in (257, 500, 1280, 720):
        starts = tile_starts(length, 256, 32)
        assert starts[0] == 0 and starts[-1] + 256 == length
        assert all(b - a <= 256 - 32 for a, b in itertools.pairwise(starts))


def test_reference_procedure_tile_count() -> None:
    """640x360 with 256 tiles and 32 overlap is 6 tiles, as the reference test procedure uses."""
    geometry = FrameGeometry.plan(360, 640, EngineConfig(tile_size=256, tile_overlap=32))
    assert geometry.num_tiles == 6


@pytest.mark.parametrize(("height", "width"), [(359, 641), (1, 1), (3, 5), (97, 33)])
def test_odd_sizes_pad_to_multiple_of_4_and_round_trip(height: int, width: int) -> None:
    frame = _frame(height, width)
    geometry = FrameGeometry.plan(height, width, EngineConfig())
    tiles = geometry.to_tiles(torch.from_numpy(frame))
    assert tiles.shape[-2] % 4 == 0 and tiles.shape[-1] % 4 == 0
    assert tiles.shape[-2] - height < 4 and tiles.shape[-1] - width < 4
    back = geometry.compose(tiles)
    assert tuple(back.shape) == (3, height, width)
    np.testing.assert_array_equal(quantize(back, 255).permute(1, 2, 0).numpy(), frame)


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), [(359, 641, 128, 32), (100, 300, 64, 8)])
def test_tiling_blend_reproduces_the_frame_exactly(height: int, width: int, tile: int, overlap: int) -> None:
    """An identity 'network' through tiles and blending gives back the input: weights are normalised, no seams."""
    frame = _frame(height, width, seed=1)
    geometry = FrameGeometry.plan(height, width, EngineConfig(tile_size=tile, tile_overlap=overlap))
    tiles = geometry.to_tiles(torch.from_numpy(frame))
    assert geometry.num_tiles > 2 and tiles.shape[0] == geometry.num_tiles
    back = geometry.compose(tiles).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(back, frame.astype(np.float32) / 255.0, atol=1e-6)


def test_blend_weights_ramp_only_inside_the_frame() -> None:
    geometry = FrameGeometry.plan(96, 160, EngineConfig(tile_size=64, tile_overlap=16))
    first = geometry.weights[0]  # top-left tile: full weight on the frame border, ramps on its inner sides
    assert first[0, 0] == 1.0 and first[-1, -1] < 0.1 and first[0, 20] == 1.0
    assert (geometry.weights > 0).all()
    np.testing.assert_allclose(geometry.weight_sum.min() > 0, True)


def test_inference_size_resizes_and_maps_back() -> None:
    frame = np.full((359, 641, 3), 100, dtype=np.uint8)
    geometry = FrameGeometry.plan(359, 641, EngineConfig(inference_size=(320, 180)))
    tiles = geometry.to_tiles(torch.from_numpy(frame))
    assert tuple(tiles.shape) == (1, 3, 180, 320)
    back = geometry.compose(torch.cat([tiles, tiles[:, :1]], dim=1))
    assert tuple(back.shape) == (4, 359, 641)
    np.testing.assert_allclose(back[0].numpy(), 100 / 255, atol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(inference_size=(320, 180)),
        EngineConfig(inference_size=(320, 180), change_upsampling="bilinear"),
        EngineConfig(max_inference_pixels=320 * 180, tile_size=128, tile_overlap=16),
    ],
)
def test_a_smaller_working_size_maps_back_the_change_on_the_frames_own_pixels(config: EngineConfig) -> None:
    """At 1280x720 restored at 320x180 (one tile, or tiles): a network output equal to its input brings the
    camera's frame back bit for bit after quantisation, not an enlarged copy of its small image; a change the
    network makes comes back enlarged on the frame's pixels; the other maps are resized as before."""
    frame = _frame(720, 1280, seed=3)
    geometry = FrameGeometry.plan(720, 1280, config)
    assert geometry.resized and geometry.work_size == (180, 320)
    inputs = geometry.to_tiles(torch.from_numpy(frame))
    maps = torch.cat([inputs, torch.full_like(inputs[:, :2], 0.25)], dim=1)
    back = geometry.compose(maps, inputs, torch.from_numpy(frame))
    assert tuple(back.shape) == (5, 720, 1280)
    np.testing.assert_array_equal(quantize(back[:3], 255).permute(1, 2, 0).numpy(), frame)
    torch.testing.assert_close(back[3:], torch.full_like(back[3:], 0.25))
    enlarged = geometry.compose(maps)  # without the input: the small image itself, enlarged (detail lost)
    assert (quantize(enlarged[:3], 255).permute(1, 2, 0).numpy() != frame).mean() > 0.5
    brighter = maps.clone()
    brighter[:, :3] += 0.1
    changed = geometry.compose(brighter, inputs, torch.from_numpy(frame))
    torch.testing.assert_close(changed[:3], back[:3] + 0.1, atol=1e-5, rtol=0)


#: How much closer to the clean frame the guided enlargement brings a 1280x720 frame with thin streaks than the
#: bilinear one, from the same ideal restoration at the weights' scale (measured: 42.0 against 34.7 dB).
GUIDED_OVER_BILINEAR_DB = 5.0


def test_the_change_is_enlarged_along_the_frames_own_edges() -> None:
    """A 1280x720 road frame with 2 px streaks, restored perfectly at the weights' scale (269x151, where a streak is
    under a pixel wide): enlarged by the guided filter, the change lands on the streaks and the frame comes much
    closer to the clean one than with the bilinear enlargement, which smears it over the pixels around them; far
    from any streak both bring the frame back bit for bit."""
    rng = np.random.default_rng(7)
    clean = make_road_clip(1, (1280, 720), rng)[0]
    streaks = np.zeros((720, 1280), np.uint8)
    for x, y, length in zip(rng.integers(0, 1280, 40), rng.integers(0, 720, 40), rng.integers(20, 60, 40), strict=True):
        cv2.line(streaks, (int(x), int(y)), (int(x + length // 5), int(y + length)), 1, 2)
    rainy = np.clip(clean.astype(np.int32) + 90 * streaks[..., None], 0, 255).astype(np.uint8)
    far = cv2.dilate(streaks, np.ones((97, 97), np.uint8)) == 0
    assert far.mean() > 0.3
    scores = {}
    for upsampling in ("guided", "bilinear"):
        geometry = FrameGeometry.plan(720, 1280, EngineConfig(change_upsampling=upsampling), 256 * 160)
        assert geometry.work_size == (151, 269)
        restored = geometry.to_tiles(torch.from_numpy(clean))
        outputs = torch.cat([restored, torch.zeros_like(restored[:, :2])], dim=1)
        back = geometry.compose(outputs, geometry.to_tiles(torch.from_numpy(rainy)), torch.from_numpy(rainy))
        image = quantize(back[:3], 255, torch.uint8).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(image[far], rainy[far])
        scores[upsampling] = cv2.PSNR(image, clean)
    assert scores["guided"] >= scores["bilinear"] + GUIDED_OVER_BILINEAR_DB, scores


def test_frames_larger_than_the_weights_scale_work_at_it_with_their_aspect() -> None:
    """The working size's rules in order: inference_size wins; else the weights' scale (the model's
    working_pixels) under working_scale weights; then the memory budget."""
    config, scale = EngineConfig(), 256 * 160
    assert working_size(720, 1280, config, scale) == (151, 269)  # 1280x720 -> 269x151, 40,619 pixels
    assert working_size(160, 256, config, scale) == (160, 256)  # at the scale: its own size
    assert working_size(128, 192, config, scale) == (128, 192)
    assert working_size(720, 1280, config.replace(working_scale="native"), scale) == (720, 1280)
    assert working_size(720, 1280, config, None) == (720, 1280)  # a model without a scale (the published one)
    assert working_size(720, 1280, config.replace(inference_size=(320, 180)), scale) == (180, 320)
    native_capped = config.replace(working_scale="native", max_inference_pixels=1920 * 1080)
    assert working_size(4320, 7680, native_capped, scale) == (1080, 1920)
    tiled = native_capped.replace(oversize_policy="tile")  # tiles restore every pixel: no smaller size
    assert working_size(4320, 7680, tiled, scale) == (4320, 7680)
    geometry = FrameGeometry.plan(720, 1280, config, scale)
    assert geometry.resized and geometry.work_size == (151, 269) and geometry.padded_shape == (152, 272)


def test_at_the_input_size_compose_ignores_the_input() -> None:
    frame = _frame(64, 96)
    geometry = FrameGeometry.plan(64, 96, EngineConfig())
    assert not geometry.resized
    tiles = geometry.to_tiles(torch.from_numpy(frame))
    output = torch.cat([tiles * 0.5, tiles[:, :2]], dim=1)
    torch.testing.assert_close(geometry.compose(output, tiles, torch.from_numpy(frame)), geometry.compose(output))


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (np.zeros((4, 4), np.uint8), "shape"),
        (np.zeros((4, 4, 4), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "shape"),
        (np.zeros((4, 4, 3), np.float32), "uint8 or uint16"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_frames_raise_input_error(frame: object, words: str) -> None:
    with pytest.raises(InputError, match=words):
        validate_frame(frame)


def test_white_level_defaults_to_the_dtype_range() -> None:
    assert validate_frame(np.zeros((2, 2, 3), np.uint8))[1] == 255
    assert validate_frame(np.zeros((2, 2, 3), np.uint16))[1] == 65535
    assert validate_frame(np.zeros((2, 2, 3), np.uint16), 4095)[1] == 4095
    with pytest.raises(InputError, match="white_level"):
        validate_frame(np.zeros((2, 2, 3), np.uint8), 4095)
