"""The frame cost budget: declared sizes against the camera's running size and period and the device's speed."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np

from vimpnet_ros.engine import EngineConfig, InferenceEngine
from vimpnet_ros.pipeline.budget import (
    DEFAULT_PERIOD_S,
    FLOOR_PIXELS,
    FULL_SIZE_SHARE,
    PRIOR_SECONDS_PER_PIXEL,
    FrameBudget,
    Inferred,
)
from vimpnet_ros.pipeline.decode import DecodeLimits, declared_size, decode_compressed, decode_image

PERIOD_NS = 33_333_333


def _inferred(max_inference_pixels: int = 0, working_scale: str = "native") -> Inferred:
    """What an engine of these settings infers for a declared (width, height) (loads nothing)."""
    engine = InferenceEngine(EngineConfig(max_inference_pixels=max_inference_pixels, working_scale=working_scale))

    def pixels(width: int, height: int) -> int:
        work_w, work_h = engine.working_size(width, height)
        return work_w * work_h

    return pixels


CAPPED, NATIVE, WEIGHTS = _inferred(1920 * 1080), _inferred(), _inferred(working_scale="weights")


def _camera(width: int, height: int, frames: int = 8, seconds: float = 2.0, inferred: Inferred = CAPPED,
            device: str = "cpu") -> FrameBudget:  # fmt: skip
    """A budget that has seen ``frames`` of a 30 Hz camera and restored them in ``seconds`` each."""
    budget = FrameBudget(device, inferred)
    for i in range(frames):
        budget.observe(width, height, i * PERIOD_NS)
        budget.measured(seconds, width, height)
    return budget


def test_a_frame_far_over_the_running_size_gets_only_a_few_periods_more() -> None:
    budget = _camera(640, 480)
    assert budget.running_pixels == 640 * 480 and abs(budget.period_s - 1 / 30) < 1e-6
    assert abs(budget.cost_s(640, 480) - 2.0) < 0.05  # the measured rate prices the usual frame at its time
    assert budget.allowed_pixels(640, 480, 3.0) == 0  # the usual frame: no bound
    allowed = budget.allowed_pixels(3500, 3500, 3.0)
    side = round(allowed**0.5)
    extra_s = budget.cost_s(side, side) - budget.cost_s(640, 480)
    assert 3 / 30 * 0.9 < extra_s <= 3 / 30 + 1e-3, extra_s  # the largest size within 3 periods more
    assert budget.is_jump(3500, 3500) and not budget.is_jump(800, 600)
    assert budget.allowed_pixels(3500, 3500, 0.0) == 0  # frame_cost_periods 0: no budget


def test_the_budget_follows_the_device_and_a_camera_that_really_changed_size() -> None:
    fresh = FrameBudget("cuda:0", NATIVE)
    assert fresh.seconds_per_pixel == PRIOR_SECONDS_PER_PIXEL["cuda"] and fresh.period_s == DEFAULT_PERIOD_S
    assert FrameBudget("cpu", NATIVE).seconds_per_pixel == PRIOR_SECONDS_PER_PIXEL["cpu"]
    budget = _camera(640, 480)
    for i in range(8, 20):  # the camera switched to 1920x1080 for good: the median follows
        budget.observe(1920, 1080, i * PERIOD_NS)
    assert budget.allowed_pixels(1920, 1080, 3.0) == 0
    # inference stops growing at max_inference_pixels: a frame over it costs only its full-size work more
    assert _camera(3840, 2160).allowed_pixels(4096, 2304, 3.0) == 0
    # a camera of tiny frames: their cost is overhead, not pixels; frames up to FLOOR_PIXELS are never bounded
    tiny = _camera(3, 5, seconds=0.3, inferred=NATIVE)
    assert tiny.allowed_pixels(128, 96, 3.0) == 0 and tiny.allowed_pixels(3500, 3500, 3.0) == FLOOR_PIXELS


def test_a_camera_starts_at_its_own_size_and_is_judged_from_its_second_frame() -> None:
    """No usual frame to compare the first with: the input limits bound it, on a CPU as on a GPU."""
    for device, inferred in (("cpu", WEIGHTS), ("cpu", NATIVE), ("cuda:0", NATIVE)):
        for width, height in ((1920, 1080), (3840, 2160)):
            budget = FrameBudget(device, inferred)
            assert budget.allowed_pixels(width, height, 3.0) == 0, (device, width, height)
            budget.observe(width, height, 0)
            assert budget.allowed_pixels(width, height, 3.0) == 0  # its second frame: the running size
    cpu = FrameBudget("cpu", WEIGHTS)
    cpu.observe(1280, 720, 0)  # a 1280x720 camera on a CPU: a 3500x3500 second frame is bounded already
    assert 0 < cpu.allowed_pixels(3500, 3500, 3.0) < 3500 * 3500


def test_at_the_weights_scale_the_full_size_work_still_prices_a_frame() -> None:
    """The network's part stops growing at the weights' scale; what is done at the frame's own size does not."""
    assert WEIGHTS(7680, 4320) == WEIGHTS(1280, 720) < 1280 * 720  # both inferred at the weights' scale
    # a 1280x720 camera restored in 0.38 s a frame, as the engine does on a 2-core CPU (budget.py's figures)
    budget = _camera(1280, 720, seconds=0.38, inferred=WEIGHTS)
    assert budget.allowed_pixels(1600, 900, 3.0) == 0  # a somewhat larger frame: its full-size work fits
    assert budget.allowed_pixels(1600, 900, 0.5) > 0  # but not in half a period
    allowed = budget.allowed_pixels(3500, 3500, 3.0)  # the JPEG bomb: bounded by its full-size work alone
    assert 1280 * 720 < allowed < 3500 * 3500 / 4
    side, usual = round(allowed**0.5), 960  # the running size at this frame's (square) aspect
    extra_s = budget.cost_s(side, side) - budget.cost_s(usual, usual)
    assert 3 / 30 * 0.9 < extra_s <= 3 / 30 + 1e-3, extra_s
    # priced as measured: the extra declared pixels times their share of an inferred pixel's time
    assert abs(extra_s - budget.seconds_per_pixel * FULL_SIZE_SHARE * (side * side - usual * usual)) < 1e-3
    # the same camera restored at its own size (working_scale native): the network's part bounds it far sooner
    assert 0 < _camera(1280, 720, seconds=0.38, inferred=NATIVE).allowed_pixels(3500, 3500, 3.0) < allowed


def test_decoding_to_a_pixel_budget_never_pays_the_declared_size() -> None:
    rgb = (np.random.default_rng(0).random((720, 1280, 3)) * 255).astype(np.uint8)
    raw = SimpleNamespace(encoding="rgb8", height=720, width=1280, step=1280 * 3, is_bigendian=0, data=rgb.tobytes())
    assert declared_size(raw, compressed=False) == (1280, 720)
    small = decode_image(raw, DecodeLimits(), 100_000).rgb
    assert small.shape[0] * small.shape[1] <= 100_000 and abs(small.shape[1] / small.shape[0] - 16 / 9) < 0.02
    assert np.array_equal(decode_image(raw, DecodeLimits()).rgb, rgb)
    tiny = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    marker = tiny.index(b"\xff\xc0")
    bomb = tiny[: marker + 5] + (3500).to_bytes(2, "big") + (3500).to_bytes(2, "big") + tiny[marker + 9 :]
    jpeg = SimpleNamespace(format="jpeg", data=bomb)
    assert declared_size(jpeg, compressed=True) == (3500, 3500)
    frame = decode_compressed(jpeg, DecodeLimits(), 300_000).rgb  # decoded at 1/4 scale, then fitted
    assert frame.shape[0] * frame.shape[1] <= 300_000 and frame.shape[0] == frame.shape[1]
