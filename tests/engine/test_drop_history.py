"""The drop fill from a stream's earlier frames (engine/drop_history.py), at camera size.

A textured scene pans behind a drop that stays on the glass: the road the drop hides now was in
view in the frames before, and the fill must bring it back; a cut to another scene, a frame
without history, a mask over the bounds and a change of size must leave the frame as it was.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vimpnet_ros.engine import DROP_FILL_FRAMES, DropHistory, EngineConfig, InferenceEngine
from vimpnet_ros.engine.drop_fill import MAX_FILL_FRACTION, MAX_FILL_PIXELS
from vimpnet_ros.engine.drop_history import FLOW_SCALE, MIN_FLOW_SIDE, WORK_MAX_SIDE
from vimpnet_ros.errors import ConfigError

WIDTH, HEIGHT = 1280, 720
#: The scene moves this many pixels per frame (a car turning): from the fourth frame on the drop's road was seen.
PAN = 25
CENTRE, RADIUS = (640, 300), 45


def _scene(rng: np.random.Generator, frames: int) -> list[np.ndarray]:
    """``frames`` RGB uint8 views of one textured canvas, panning right by :data:`PAN` pixels a frame."""
    canvas_w = WIDTH + PAN * frames
    coarse = rng.uniform(0, 255, (HEIGHT // 16, canvas_w // 16, 3)).astype(np.float32)
    canvas = cv2.resize(coarse, (canvas_w, HEIGHT), interpolation=cv2.INTER_CUBIC)
    canvas += rng.normal(0, 3, canvas.shape).astype(np.float32)  # texture the flow can lock onto
    canvas = np.clip(cv2.GaussianBlur(canvas, (0, 0), 1.0), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(canvas[:, k * PAN : k * PAN + WIDTH]) for k in range(frames)]


def _drop() -> np.ndarray:
    """The drop's quantised mask: a disc, probability 1."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.circle(mask, CENTRE, RADIUS, 255, -1)
    return mask


def _with_drop(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``frame`` with a flat grey where the drop is (what a restoration that missed the road there shows)."""
    out = frame.copy()
    out[mask > 0] = 128
    return out


def _mse(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean())


def test_a_drop_is_filled_from_where_earlier_frames_saw_the_road() -> None:
    """1280x720: from the second frame on, the drop comes out near the hidden road; nothing else changes."""
    clean = _scene(np.random.default_rng(0), 6)
    mask = _drop()
    inside = mask > 0
    history = DropHistory(DROP_FILL_FRAMES)
    for k, frame in enumerate(clean):
        restored = _with_drop(frame, mask)
        before = restored.copy()
        filled = history.fill(restored, mask, 0.5)
        assert filled is restored  # filled in place, as the engine's planes are
        np.testing.assert_array_equal(filled[~inside], before[~inside])
        if k == 0:
            np.testing.assert_array_equal(filled, before)  # nothing seen before the first frame
            continue
        # Once the road behind the whole drop was in view, the mean with it halves the error (a quarter of the
        # squared error, plus the flow's); before that, the part seen.
        assert _mse(filled, frame, inside) < (0.4 if k * PAN > 2 * RADIUS else 0.95) * _mse(before, frame, inside), k
    assert len(history) == min(len(clean), DROP_FILL_FRAMES)


def test_many_drops_at_camera_size() -> None:
    """A quarter of a 1280x720 frame under drops (about the most the fill takes: MAX_FILL_PIXELS): more points than
    one cv2.remap call may read, still filled."""
    clean = _scene(np.random.default_rng(7), 6)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for row in range(60, HEIGHT, 120):
        for col in range(60, WIDTH, 120):
            cv2.circle(mask, (col, row), 33, 255, -1)
    inside = mask > 0
    assert 0.2 < inside.mean() < MAX_FILL_FRACTION and inside.sum() <= MAX_FILL_PIXELS
    history = DropHistory(DROP_FILL_FRAMES)
    for k, frame in enumerate(clean):
        restored = _with_drop(frame, mask)
        before = restored.copy()
        filled = history.fill(restored, mask, 0.5)
        if k * PAN > 2 * 33:  # the flow is rougher with a quarter of the frame under drops: at least half the error
            assert _mse(filled, frame, inside) < 0.5 * _mse(before, frame, inside), k


def test_a_cut_to_another_scene_is_not_used() -> None:
    """Earlier frames of another scene do not match the ring around the drop: the frame is left alone."""
    mask = _drop()
    history = DropHistory(4)
    for frame in _scene(np.random.default_rng(1), 5):
        history.fill(_with_drop(frame, mask), mask, 0.5)
    frame = _with_drop(_scene(np.random.default_rng(2), 1)[0], mask)
    before = frame.copy()
    np.testing.assert_array_equal(history.fill(frame, mask, 0.5), before)


@pytest.mark.parametrize("case", ["off", "no blend", "mask over the bounds", "no drop"])
def test_what_is_left_alone(case: str) -> None:
    """No kept frames (0), weight 0, a mask over MAX_FILL_FRACTION of the frame, no drop: the frame is unchanged."""
    frames = _scene(np.random.default_rng(3), 3)
    mask = _drop()
    if case == "mask over the bounds":
        mask = np.zeros_like(mask)
        mask[: int(HEIGHT * (MAX_FILL_FRACTION + 0.1))] = 255
    if case == "no drop":
        mask = np.zeros_like(mask)
    history = DropHistory(0 if case == "off" else 4)
    blend = 0.0 if case == "no blend" else 0.5
    for frame in frames:
        restored = _with_drop(frame, mask)
        before = restored.copy()
        np.testing.assert_array_equal(history.fill(restored, mask, blend), before)
    assert len(history) == (0 if case == "off" else 3)


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (3, 400), (30, 30), (34, 34), (32, 1000), (40, 4000)])
def test_tiny_frames_pass(size: tuple[int, int]) -> None:
    """Frames too small for the flow come out as they went in (the engine accepts any size >= 1)."""
    history = DropHistory(4)
    rng = np.random.default_rng(6)
    for _ in range(3):
        frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[: max(size[0] // 3, 1), : max(size[1] // 3, 1)] = 255
        history.fill(frame, mask, 0.5)  # must not raise
    flow_copy = min(size) * min(WORK_MAX_SIDE / max(size), 1.0) * FLOW_SCALE
    assert len(history) == (3 if flow_copy >= MIN_FLOW_SIDE else 0)


def test_sixteen_bit_frames_and_a_change_of_size() -> None:
    """uint16 frames fill on their white level; a frame of another size starts the history over."""
    white = 4095
    clean = [(f.astype(np.uint32) * white // 255).astype(np.uint16) for f in _scene(np.random.default_rng(4), 5)]
    mask = _drop()
    inside = mask > 0
    history = DropHistory(4)
    for k, frame in enumerate(clean):
        restored = frame.copy()
        restored[inside] = white // 2
        before = restored.copy()
        filled = history.fill(restored, mask, 0.5, white_level=white)
        assert filled.dtype == np.uint16 and int(filled.max()) <= white
        if k * PAN > 2 * RADIUS:
            assert _mse(filled, frame, inside) < 0.4 * _mse(before, frame, inside)
    small = cv2.resize(clean[0], (640, 360))
    small_mask = cv2.resize(mask, (640, 360), interpolation=cv2.INTER_NEAREST)
    before = small.copy()
    np.testing.assert_array_equal(history.fill(small, small_mask, 0.5, white_level=white), before)
    assert len(history) == 1


@pytest.mark.parametrize("frames", [-1, 33, 2.5, True, "8"])
def test_the_engine_refuses_a_bad_frame_count(frames: object) -> None:
    with pytest.raises(ConfigError, match="drop_fill_frames"):
        EngineConfig(drop_fill_frames=frames)  # type: ignore[arg-type]


def test_a_stream_reset_forgets_the_history() -> None:
    """The engine gives each stream its own history of drop_fill_frames frames; a reset empties it."""
    engine = InferenceEngine(EngineConfig(device="cpu", backend="torch", drop_fill_frames=3))
    stream = engine.open_stream("cam")
    assert stream.drop_history.frames == 3
    mask = _drop()
    for frame in _scene(np.random.default_rng(5), 2):
        stream.drop_history.fill(_with_drop(frame, mask), mask, 0.5)
    assert len(stream.drop_history) == 2
    stream.reset("requested")
    assert len(stream.drop_history) == 0
