"""Ring buffer state machine with the real engine: padding rule, delays, stamps, resets, bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.engine.conftest import CPU_ENV, moving_frames
from vimpnet_ros.engine import EngineConfig, InferenceEngine
from vimpnet_ros.engine.stream import reflect_index, window_indices
from vimpnet_ros.errors import EngineError, InputError
from vimpnet_ros.model import VimpNet

FRAME_NS = 33_333_333


def test_reflect_index_mirrors_at_both_ends() -> None:
    assert [reflect_index(p, 0) for p in range(-3, 3)] == [0] * 6
    assert [reflect_index(p, 1) for p in range(-3, 3)] == [1, 0, 1, 0, 1, 0]
    assert [reflect_index(p, 2) for p in range(-2, 5)] == [2, 1, 0, 1, 2, 1, 0]


@pytest.mark.parametrize(
    ("target", "available", "window", "out", "expected"),
    [
        (0, 1, 5, 4, [0, 0, 0, 0, 0]),  # latest, first frame: the frame five times
        (1, 2, 5, 4, [1, 0, 1, 0, 1]),
        (2, 3, 5, 4, [2, 1, 0, 1, 2]),  # latest, three frames: reflected about frame 0
        (4, 5, 5, 4, [0, 1, 2, 3, 4]),  # full buffer: no padding
        (0, 3, 5, 2, [2, 1, 0, 1, 2]),  # center, first result (frame 0 after two more arrived)
        (1, 4, 5, 2, [1, 0, 1, 2, 3]),
        (2, 3, 3, 1, [1, 2, 1]),  # flush at the end: right side reflected
        (6, 7, 7, 3, [3, 4, 5, 6, 5, 4, 3]),
    ],
)
def test_window_indices_padding_rule(target: int, available: int, window: int, out: int, expected: list[int]) -> None:
    assert window_indices(target, available, window, out) == expected


def _engine(model: VimpNet, **changes: object) -> InferenceEngine:
    settings: dict[str, object] = {"device": "cpu", "backend": "torch", "precision": "fp32", "window_size": 3}
    config = EngineConfig(**{**settings, **changes})  # type: ignore[arg-type]
    return InferenceEngine(config, environment=CPU_ENV).load(model)


def test_push_before_load_is_a_clear_error(lite_model: VimpNet) -> None:
    engine = InferenceEngine(EngineConfig(device="cpu"))
    stream = engine.open_stream("cam")
    with pytest.raises(EngineError, match="load"):
        engine.push(stream, np.zeros((8, 8, 3), np.uint8), 0)


def test_latest_describes_each_pushed_frame_from_the_first(lite_model: VimpNet) -> None:
    engine = _engine(lite_model)
    stream = engine.open_stream("cam")
    frames = moving_frames(4, 18, 22)
    for k, frame in enumerate(frames):
        result = engine.push(stream, frame, k * FRAME_NS)
        assert result is not None and result.stamp_ns == k * FRAME_NS
        assert result.image.shape == (18, 22, 3) and result.image.dtype == np.uint8
        assert result.drop_mask.shape == (18, 22) and result.drop_mask.dtype == np.uint8
        assert result.streak_map.shape == (18, 22) and result.streak_map.dtype == np.uint8 and result.valid
        assert result.streak_float is None and result.white_level == 255
        assert result.window_frames == min(k + 1, 3) and result.inference_ms > 0
        assert (result.backend, result.precision) == ("torch", "fp32")
        assert result.image.std() > 1.0  # not a blank frame


def test_center_delays_by_half_a_window_and_flush_finishes(lite_model: VimpNet) -> None:
    engine = _engine(lite_model, output_frame="center", window_size=5)
    stream = engine.open_stream("cam")
    frames = moving_frames(6, 12, 16)
    stamps = []
    for k, frame in enumerate(frames):
        result = engine.push(stream, frame, k * FRAME_NS)
        if k < 2:
            assert result is None
        else:
            assert result is not None and result.stamp_ns == (k - 2) * FRAME_NS
            stamps.append(result.stamp_ns)
    tail = engine.flush(stream)
    assert [r.stamp_ns for r in tail] == [4 * FRAME_NS, 5 * FRAME_NS]
    assert stamps + [r.stamp_ns for r in tail] == [k * FRAME_NS for k in range(6)]


def test_restore_false_keeps_context_only(lite_model: VimpNet) -> None:
    engine = _engine(lite_model)
    stream = engine.open_stream("cam")
    frames = moving_frames(3, 12, 12)
    assert engine.push(stream, frames[0], 0, restore=False) is None
    assert engine.push(stream, frames[1], FRAME_NS, restore=False) is None
    assert stream.cache_stats() == {"frames": 2, "features": 0, "flows": 0}  # nothing computed for skipped frames
    result = engine.push(stream, frames[2], 2 * FRAME_NS)
    assert result is not None and result.window_frames == 3


@pytest.mark.parametrize(
    ("second_shape", "second_stamp", "reason"),
    [
        ((16, 20, 3), FRAME_NS, "resolution changed from 16x12 to 20x16"),
        ((12, 16, 3), -5, "backwards"),
        ((12, 16, 3), 3_000_000_000, "jumped by 3.000 s"),
    ],
)
def test_resets(lite_model: VimpNet, second_shape: tuple[int, int, int], second_stamp: int, reason: str) -> None:
    engine = _engine(lite_model)
    stream = engine.open_stream("cam")
    first = engine.push(stream, np.full((12, 16, 3), 90, np.uint8), 0)
    assert first is not None and first.reset_reason is None
    second = engine.push(stream, np.full(second_shape, 120, np.uint8), second_stamp)
    assert second is not None and second.reset_reason is not None and reason in second.reset_reason
    assert second.window_frames == 1 and second.image.shape == second_shape
    third = engine.push(stream, np.full(second_shape, 120, np.uint8), second_stamp + FRAME_NS)
    assert third is not None and third.reset_reason is None and third.window_frames == 2


def test_requested_reset_is_reported_once(lite_model: VimpNet) -> None:
    engine = _engine(lite_model)
    stream = engine.open_stream("cam")
    frames = moving_frames(3, 12, 12)
    engine.push(stream, frames[0], 0)
    engine.push(stream, frames[1], FRAME_NS)
    stream.reset("requested")
    assert stream.cache_stats() == {"frames": 0, "features": 0, "flows": 0}
    after = engine.push(stream, frames[2], 2 * FRAME_NS)
    assert after is not None and after.reset_reason == "requested" and after.window_frames == 1
    again = engine.push(stream, frames[0], 3 * FRAME_NS)
    assert again is not None and again.reset_reason is None


def test_bad_stamp_is_input_error(lite_model: VimpNet) -> None:
    engine = _engine(lite_model)
    stream = engine.open_stream("cam")
    with pytest.raises(InputError, match="stamp_ns"):
        engine.push(stream, np.zeros((8, 8, 3), np.uint8), 1.5)  # type: ignore[arg-type]


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def _pushes_keep_memory_bounded(model: VimpNet, restore_every: int) -> None:
    engine = _engine(model, window_size=5)
    stream = engine.open_stream("cam")
    frames = moving_frames(10, 16, 16)
    baseline = 0
    for k in range(500):
        engine.push(stream, frames[k % 10], k * FRAME_NS, restore=k % restore_every == 0 or k == 499)
        stats = stream.cache_stats()
        assert stats["frames"] <= 5 and stats["features"] <= 5 and stats["flows"] <= 2 * 4 + 1
        if k == 100:
            baseline = _rss_bytes()
    assert _rss_bytes() - baseline < 64 * 2**20


def test_memory_bounded_over_500_frames(lite_model: VimpNet) -> None:
    """500 pushes (every 100th restored, the rest kept as context): caches stay at T frames, RSS stays flat."""
    _pushes_keep_memory_bounded(lite_model, restore_every=100)


@pytest.mark.slow
def test_memory_bounded_over_500_restored_frames(lite_model: VimpNet) -> None:
    """The same with every frame restored."""
    _pushes_keep_memory_bounded(lite_model, restore_every=1)


def test_sixteen_bit_frames_keep_their_levels(lite_model: VimpNet) -> None:
    """A 12-bit ramp normalised by its white level (4095) comes back as uint16 on the same scale, all levels used."""
    engine = _engine(lite_model)
    stream = engine.open_stream("cam")
    ramp = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)
    frame = np.repeat(ramp[:, :, None], 3, axis=2)
    result = engine.push(stream, frame, 0, white_level=4095)
    assert result is not None and result.image.dtype == np.uint16 and result.white_level == 4095
    assert result.image.max() <= 4095 and len(np.unique(result.image)) > 1000
    with pytest.raises(InputError, match="white_level"):
        engine.push(stream, frame, FRAME_NS, white_level=70000)
    with pytest.raises(InputError, match="uint8 or uint16"):
        engine.push(stream, frame.astype(np.float32), FRAME_NS)
