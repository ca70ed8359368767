"""One camera's pipeline with the real engine (random vimpnet_lite, CPU): the per-frame rules without DDS."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from tests.engine.conftest import CPU_ENV, moving_frames, random_model
from vimpnet_ros.engine import InferenceEngine
from vimpnet_ros.model import VimpNet
from vimpnet_ros.pipeline.camera import CameraPipeline, SourceFrame, Turn, flush_camera, restore_turn
from vimpnet_ros.pipeline.decode import DecodeLimits, decode_image
from vimpnet_ros.pipeline.outputs import Processing
from vimpnet_ros.pipeline.settings import NodeSettings, validate_settings

FRAME_NS = 50_000_000
BASE = 1_700_000_000 * 10**9


class Reports:
    """Collects the pipeline's reports (the node throttles them into its log)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, bool]] = []

    def __call__(self, camera: str, kind: str, text: str, error: bool = False) -> None:
        self.lines.append((kind, text, error))


def _settings(**values: Any) -> NodeSettings:
    return validate_settings({"device": "cpu", "backend": "torch", "precision": "fp32", "window_size": 3, **values})


def _camera(model: VimpNet, settings: NodeSettings, name: str = "") -> tuple[InferenceEngine, CameraPipeline, Reports]:
    engine = InferenceEngine(settings.engine, environment=CPU_ENV).load(model)
    reports = Reports()
    return engine, CameraPipeline(name, engine, reports), reports


def _message(pixels: np.ndarray, encoding: str, stamp_ns: int) -> SimpleNamespace:
    rows = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1).view(np.uint8)
    sec, nanosec = divmod(stamp_ns, 10**9)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec), frame_id="cam")
    return SimpleNamespace(
        header=header,
        height=pixels.shape[0],
        width=pixels.shape[1],
        encoding=encoding,
        step=rows.shape[1],
        is_bigendian=0,
        data=rows.tobytes(),
    )


def _source(
    camera: CameraPipeline, settings: NodeSettings, pixels: np.ndarray, encoding: str, stamp: int
) -> SourceFrame:
    msg = _message(pixels, encoding, stamp)
    return camera.source(decode_image(msg, DecodeLimits()), msg.header, settings.inputs)


def test_restored_frames_keep_encoding_header_and_counters(lite_model: VimpNet) -> None:
    settings = _settings(mask_threshold=0.5)
    engine, camera, _ = _camera(lite_model, settings)
    frames = moving_frames(3, 24, 32)
    for k, frame in enumerate(frames):
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        source = _source(camera, settings, bgr, "bgr8", BASE + k * FRAME_NS)
        [(pipeline, out)] = restore_turn(
            engine, [Turn(camera, [source])], settings, lambda k=k: BASE + k * FRAME_NS + 10**7
        )
        assert pipeline is camera and out.meta is source and out.stamp_ns == BASE + k * FRAME_NS
        assert out.image.encoding == "bgr8" and out.image.pixels.shape == (24, 32, 3)
        assert out.mask.encoding == "mono8" and set(np.unique(out.mask.pixels)) <= {0, 255}  # binary at 0.5
        assert out.streak.encoding == "mono8" and out.status.processing == Processing.RESTORED
        assert out.status.latency == pytest.approx(0.01) and out.status.processed_frames == k + 1
        assert out.status.window_frames == min(k + 1, 3) and out.status.backend == "torch"
        np.testing.assert_array_equal(out.rgb8, out.image.pixels[:, :, ::-1])
    assert camera.counters.restored == 3 and camera.counters.dropped == 0


def test_context_frames_are_skipped_and_counted_with_bad_input(lite_model: VimpNet) -> None:
    settings = _settings()
    engine, camera, reports = _camera(lite_model, settings)
    frames = moving_frames(4, 16, 16)
    sources = [_source(camera, settings, f, "rgb8", BASE + k * FRAME_NS) for k, f in enumerate(frames)]
    outputs = restore_turn(engine, [Turn(camera, sources, skipped=2)], settings, lambda: BASE)
    assert len(outputs) == 1 and outputs[0][1].stamp_ns == sources[-1].stamp_ns
    assert outputs[0][1].status.window_frames == 3  # the context frames are in its window
    camera.count_bad_input(ValueError("boom"))
    assert camera.counters.skipped == 5 and camera.counters.bad_input == 1 and camera.counters.dropped == 6
    assert any(kind == "input" for kind, _, _ in reports.lines)


def test_implausible_stamps_are_processed_but_flagged(lite_model: VimpNet) -> None:
    settings = _settings(max_stamp_skew_s=10.0)
    engine, camera, reports = _camera(lite_model, settings)
    for stamp in (-5 * 10**9, (2**31 + 5) * 10**9, 0):  # negative, past int32 seconds, the epoch
        source = _source(camera, settings, moving_frames(1, 8, 8)[0], "rgb8", stamp)
        [(_, out)] = restore_turn(engine, [Turn(camera, [source])], settings, lambda: BASE)
        assert out.status.processing == Processing.RESTORED and math.isnan(out.status.latency)
    assert camera.counters.stamp_suspect == 3 and any(kind == "stamp" for kind, _, _ in reports.lines)


def test_unnormalised_and_future_stamps_never_give_a_negative_latency(lite_model: VimpNet) -> None:
    """nanosec >= 1e9 (within the skew once normalised) and a stamp ahead of the clock: flagged, latency NaN."""
    settings = _settings()
    engine, camera, reports = _camera(lite_model, settings)
    msg = _message(moving_frames(1, 8, 8)[0], "rgb8", BASE - 2 * 10**9)
    msg.header.stamp.nanosec += 1_999_999_999  # 2 s before BASE written as 0 s + 1.999999999 s: unnormalised
    unnormalised = camera.source(decode_image(msg, DecodeLimits()), msg.header, settings.inputs)
    future = _source(camera, settings, moving_frames(2, 8, 8)[1], "rgb8", BASE + 10**9 // 2)
    present = _source(camera, settings, moving_frames(3, 8, 8)[2], "rgb8", BASE + 10**9 // 2 + 1)
    latencies = []
    for source, now in ((unnormalised, BASE), (future, BASE), (present, BASE + 10**9)):
        [(_, out)] = restore_turn(engine, [Turn(camera, [source])], settings, lambda now=now: now)
        assert out.status.processing == Processing.RESTORED
        latencies.append(out.status.latency)
    assert math.isnan(latencies[0]) and math.isnan(latencies[1]) and 0.49 < latencies[2] < 0.51
    assert camera.counters.stamp_suspect == 2
    stamp_lines = [text for kind, text, _ in reports.lines if kind == "stamp"]
    assert "not normalised" in stamp_lines[0] and "ahead of the node clock" in stamp_lines[1]


def test_mono16_keeps_the_camera_range_end_to_end(lite_model: VimpNet) -> None:
    """A 12-bit ramp goes in as 4096 levels and comes out as mono16 on the same 0..4095 scale."""
    settings = _settings()
    engine, camera, _ = _camera(lite_model, settings)
    ramp = np.linspace(0, 4095, 48 * 64).reshape(48, 64).astype(np.uint16)
    source = _source(camera, settings, ramp, "mono16", BASE)
    assert source.frame.white_level == 4095
    [(_, out)] = restore_turn(engine, [Turn(camera, [source])], settings, lambda: BASE)
    assert out.image.encoding == "mono16" and out.image.pixels.dtype == np.uint16
    assert out.image.pixels.max() <= 4095 and len(np.unique(out.image.pixels)) > 1000
    assert out.rgb8.dtype == np.uint8 and out.rgb8.max() > 200


def test_nan_output_publishes_the_input_as_fallback() -> None:
    model = random_model(seed=4)
    with torch.no_grad():
        model.drop_remover.conv_last.bias.fill_(float("nan"))
    settings = _settings(streak_map_encoding="32FC1")
    engine, camera, reports = _camera(model, settings)
    frame = moving_frames(1, 12, 16)[0]
    source = _source(camera, settings, frame, "rgb8", BASE)
    [(_, out)] = restore_turn(engine, [Turn(camera, [source])], settings, lambda: BASE)
    assert out.status.processing == Processing.FALLBACK and out.status.raindrop_coverage == 0.0
    np.testing.assert_array_equal(out.image.pixels, frame)
    assert not out.mask.pixels.any() and out.streak.encoding == "32FC1" and not out.streak.pixels.any()
    assert camera.counters.failures == 1 and any(kind == "failure" for kind, _, _ in reports.lines)


def test_engine_exception_publishes_inputs_and_degrades(lite_model: VimpNet) -> None:
    settings = _settings()
    engine, camera, reports = _camera(lite_model, settings)
    backend = engine.backend
    assert backend is not None
    original = backend.window

    def out_of_memory(*args: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    backend.window = out_of_memory  # type: ignore[method-assign]
    frames = moving_frames(2, 16, 16)
    source = _source(camera, settings, frames[0], "rgb8", BASE)
    [(_, out)] = restore_turn(engine, [Turn(camera, [source])], settings, lambda: BASE)
    assert out.status.processing == Processing.FALLBACK and engine.reloads == 1 and engine.config.tile_size == 256
    assert any("256 px tiles" in text for _, text, _ in reports.lines)
    backend.window = original  # type: ignore[method-assign]
    source = _source(camera, settings, frames[1], "rgb8", BASE + FRAME_NS)
    [(_, out)] = restore_turn(engine, [Turn(camera, [source])], settings, lambda: BASE)
    assert out.status.processing == Processing.RESTORED and out.status.window_frames == 2
    assert camera.counters.consecutive_failures == 0


def test_gating_and_disabled_pass_frames_through(lite_model: VimpNet) -> None:
    settings = _settings(
        gating_enabled=True,
        gating_frames=1,
        gating_probe_interval=2,
        rain_streak_threshold=100.0,
        rain_coverage_threshold=1.0,
    )
    engine, camera, _ = _camera(lite_model, settings)
    kinds = []
    for k, frame in enumerate(moving_frames(4, 16, 16)):
        source = _source(camera, settings, frame, "rgb8", BASE + k * FRAME_NS)
        [(_, out)] = restore_turn(engine, [Turn(camera, [source])], settings, lambda: BASE)
        kinds.append(out.status.processing)
        if out.status.processing == Processing.GATED:
            np.testing.assert_array_equal(out.image.pixels, frame)
    assert kinds == [Processing.RESTORED, Processing.GATED, Processing.RESTORED, Processing.GATED]
    paused = settings.replace(enabled=False, gating_enabled=False)
    source = _source(camera, paused, moving_frames(1, 16, 16)[0], "rgb8", BASE + 9 * FRAME_NS)
    [(_, out)] = restore_turn(engine, [Turn(camera, [source])], paused, lambda: BASE)
    assert out.status.processing == Processing.GATED and out.status.inference_time == 0.0


def test_two_cameras_in_one_turn_and_center_flush(lite_model: VimpNet) -> None:
    settings = _settings(output_frame="center")
    engine = InferenceEngine(settings.engine, environment=CPU_ENV).load(lite_model)
    cameras = [CameraPipeline(n, engine, Reports()) for n in ("front", "rear")]
    stamps: dict[str, list[int]] = {"front": [], "rear": []}
    for k, frame in enumerate(moving_frames(3, 16, 16)):
        turns = [Turn(c, [_source(c, settings, frame, "rgb8", BASE + k * FRAME_NS)]) for c in cameras]
        for camera, out in restore_turn(engine, turns, settings, lambda: BASE):
            stamps[camera.name].append(out.stamp_ns)
    for camera in cameras:
        stamps[camera.name] += [out.stamp_ns for out in flush_camera(camera, settings, lambda: BASE)]
    expected = [BASE + k * FRAME_NS for k in range(3)]
    assert stamps == {"front": expected, "rear": expected}


def test_overload_skips_are_no_reset_and_the_window_stays_whole(lite_model: VimpNet) -> None:
    """30 Hz into a model 7 s per frame: each turn's frames follow a 7-s jump the worker made, not the camera."""
    settings = _settings()  # window 3, max_gap_s 1
    engine, camera, reports = _camera(lite_model, settings)
    frames = moving_frames(12, 8, 8)
    period = 10**9 // 30
    for turn_index in range(3):  # each turn: 200 frames skipped while busy, the last 3 kept
        first = BASE + turn_index * 7 * 10**9
        sources = [_source(camera, settings, frames[turn_index * 3 + k], "rgb8", first + k * period) for k in range(3)]
        [(_, out)] = restore_turn(
            engine, [Turn(camera, sources, skipped=200 if turn_index else 0)], settings, lambda first=first: first
        )
        assert out.status.processing == Processing.RESTORED and out.status.window_frames == 3
    assert camera.counters.resets == 0 and not [line for line in reports.lines if line[0] == "reset"]
    # a real gap in the camera (nothing skipped) still resets
    sources = [_source(camera, settings, frames[9], "rgb8", BASE + 30 * 10**9)]
    restore_turn(engine, [Turn(camera, sources)], settings, lambda: BASE + 30 * 10**9)
    assert camera.counters.resets == 1 and "jumped" in reports.lines[-1][1]


def test_receive_is_the_one_way_in_and_refuses_without_raising(lite_model: VimpNet) -> None:
    """A good message becomes a frame; one over a limit, undecodable or broken is counted and reported, not raised."""
    settings = _settings(max_input_width=64)
    _, camera, reports = _camera(lite_model, settings)
    frame = moving_frames(1, 24, 32)[0]
    source = camera.receive(_message(frame, "rgb8", BASE), False, settings.inputs, extra="bag time")
    assert source is not None and source.stamp_ns == BASE and source.extra == "bag time"
    np.testing.assert_array_equal(source.frame.rgb, frame)
    wide = _message(np.zeros((8, 80, 3), np.uint8), "rgb8", BASE)
    garbage = SimpleNamespace(header=wide.header, format="jpeg", data=b"not a jpeg")

    class Broken(SimpleNamespace):
        @property
        def data(self) -> bytes:  # a message that fails in a way no decoder expects
            raise RuntimeError("field read failed")

    broken = Broken(**{k: v for k, v in vars(_message(frame, "rgb8", BASE)).items() if k != "data"})
    assert camera.receive(wide, False, settings.inputs) is None
    assert camera.receive(garbage, True, settings.inputs) is None
    assert camera.receive(broken, False, settings.inputs) is None
    assert camera.counters.bad_input == 3
    dropped = [text for kind, text, _ in reports.lines if kind == "input"]
    assert len(dropped) == 3 and "max_input_width 64" in dropped[0] and "RuntimeError" in dropped[2]


@pytest.mark.parametrize("policy", ["resize", "refuse"])
def test_a_frame_over_the_cost_budget_is_decoded_smaller_or_refused(lite_model: VimpNet, policy: str) -> None:
    """A 64x48 camera, then a 640x480 frame: over the budget (a few periods at the device's speed)."""
    settings = _settings(frame_cost_policy=policy)
    _, camera, reports = _camera(lite_model, settings)
    for i in range(8):
        assert camera.receive(
            _message(moving_frames(1, 48, 64)[0], "rgb8", BASE + i * 50_000_000), False, settings.inputs
        )
    big = camera.receive(
        _message(np.zeros((480, 640, 3), np.uint8), "rgb8", BASE + 8 * 50_000_000), False, settings.inputs
    )
    assert camera.counters.over_budget == 1
    budget_lines = [text for kind, text, _ in reports.lines if kind in ("budget", "input")]
    assert "640x480" in budget_lines[-1] and "running size" in budget_lines[-1]
    if policy == "refuse":
        assert big is None and camera.counters.bad_input == 1 and "refused" in budget_lines[-1]
    else:
        assert big is not None and big.frame.rgb.shape[0] * big.frame.rgb.shape[1] < 640 * 480 // 3
