"""The golden rule: a streamed result equals the whole-window ``VimpNet.forward`` for that frame (fp32, 1e-5).

The comparisons run with ``drop_fill=0``: the network's restoration alone; the fill after it is tested in
test_drop_fill.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.conftest import CPU_ENV, count_step_calls, moving_frames, random_model
from vimpnet_ros.data import load_rain_config, make_road_clip, render_video
from vimpnet_ros.data.road_scene import road_preset
from vimpnet_ros.engine import EngineConfig, FrameResult, InferenceEngine
from vimpnet_ros.engine.geometry import FrameGeometry
from vimpnet_ros.engine.stream import Stream
from vimpnet_ros.errors import CheckpointError, ConfigError
from vimpnet_ros.evaluation.metrics import psnr
from vimpnet_ros.model import VimpNet, get_config

FRAME_NS = 50_000_000
TOLERANCE = 1e-5


def _whole_window_reference(model: VimpNet, stream: Stream, target: int, output_index: int) -> torch.Tensor:
    """model.forward on the same (padded, start-of-stream reflected) window -> (5, h, w) for the output frame."""
    window = stream.window_for(target)
    lqs = torch.stack([slot.tiles[0] for slot in window])[None]  # (1, t, 3, h, w)
    with torch.inference_mode():
        out = model(lqs)
    o = output_index
    return torch.cat([out.output[0, o], out.drop_mask[0, o], out.streak_map[0, o]])


@pytest.mark.parametrize(("output_frame", "stage1_passes"), [("latest", 0), ("center", 0), ("latest", 2)])
def test_streamed_equals_whole_window_forward(lite_model: VimpNet, output_frame: str, stage1_passes: int) -> None:
    """Every result from the first frame on, through the start of stream and steady state, plus the flush; with two
    stage-1 passes too (0 = by device: one on this CPU), the whole-window reference running as many."""
    config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=5, output_frame=output_frame,
                          drop_fill=0.0, stage1_passes=stage1_passes)  # fmt: skip
    if stage1_passes > 1:  # the engine sets the rule on the model it is given: give it its own
        lite_model = random_model()
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    assert engine.stage1_passes == lite_model.stage1_passes == (stage1_passes or 1)
    stream = engine.open_stream("cam")
    captured: list[torch.Tensor] = []
    run_network = engine.run_network

    def recording_run_network(*args: object) -> list[torch.Tensor]:
        """The engine's own run_network, keeping its float output for the comparison."""
        outputs = run_network(*args)  # type: ignore[arg-type]
        captured.append(outputs[0])
        return outputs

    engine.run_network = recording_run_network  # type: ignore[method-assign]
    height, width = 30, 38  # padded to 32x40 inside
    frames = moving_frames(6, height, width)
    checked = 0
    for k, frame in enumerate(frames):
        result = engine.push(stream, frame, k * FRAME_NS, meta=("frame", k), float_streak=True)
        if result is None:
            continue
        target = len(stream) - 1 - config.delay_frames
        assert result.stamp_ns == stream.slot(target).stamp_ns and result.meta == ("frame", k - config.delay_frames)
        expected = _whole_window_reference(lite_model, stream, target, config.output_index)
        assert (captured[-1][0] - expected).abs().max().item() < TOLERANCE
        _assert_result_is(result, expected, height, width)
        checked += 1
    assert checked == 6 - config.delay_frames
    for result in engine.flush(stream, float_streak=True):
        target = next(i for i, slot in enumerate(stream.slots()) if slot.stamp_ns == result.stamp_ns)
        expected = _whole_window_reference(lite_model, stream, target, config.output_index)
        _assert_result_is(result, expected, height, width)
        checked += 1
    assert checked == 6


def _assert_result_is(result: FrameResult, expected: torch.Tensor, height: int, width: int) -> None:
    """What the result carries is the network output cropped to the input size and quantised on the device."""
    crop = expected[:, :height, :width]
    np.testing.assert_allclose(result.streak_float, crop[4].numpy(), atol=TOLERANCE)
    for plane, values in ((result.drop_mask, crop[3]), (result.streak_map, crop[4])):
        levels = np.clip(values.numpy(), 0, 1) * 255
        assert plane.dtype == np.uint8 and np.abs(plane.astype(np.float32) - levels).max() <= 0.5 + 1e-3
    image = np.clip(crop[:3].permute(1, 2, 0).numpy(), 0, 1) * 255
    assert result.image.flags.c_contiguous and np.abs(result.image.astype(np.float32) - image).max() <= 0.5 + 1e-3
    assert result.streak_intensity == pytest.approx(float(crop[4].clamp_min(0).mean()), abs=1e-5)


def test_each_frame_and_pair_is_computed_once(lite_model: VimpNet) -> None:
    """After a steady-state push only the new frame's features and the new pair's flows were added."""
    config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=3)
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    calls = count_step_calls(engine)
    stream = engine.open_stream("cam")
    frames = moving_frames(5, 12, 12)
    for k, frame in enumerate(frames):
        engine.push(stream, frame, k * FRAME_NS)
    # 5 frames -> 5 feature computations; pairs: (0,0) at start, (1,0), (2,1), (3,2), (4,3) -> 5 flow calls.
    assert calls == {"frame": 5, "flow": 5, "window": 5}


def _mild_model() -> VimpNet:
    """A random vimpnet_lite whose two output convs are scaled by 0.1: small residuals, as a trained model makes."""
    torch.manual_seed(3)
    model = VimpNet(get_config("vimpnet_lite")).eval()
    with torch.no_grad():
        for conv in (model.conv_last, model.drop_remover.conv_last):
            conv.weight.mul_(0.1)
            conv.bias.mul_(0.1)
    return model


def test_tiled_matches_whole_frame_on_smooth_content() -> None:
    """Tiles (64, overlap 16, blended) vs the whole frame at 128x96 on smooth panning content.

    Stated tolerance (8-bit levels): mean |tiled - whole| < 4 and 99th percentile < 16 (the
    network's residual is ~3 levels here; a tile sees less context, notably in the transformer's
    global attention, so exact equality is not expected). No seams: along every row and column
    the tiled image's mean step between neighbouring pixels exceeds the whole frame's by < 2 levels,
    so tile borders leave no visible edge.
    """
    model = _mild_model()
    frames = moving_frames(3, 96, 128, seed=2)
    outputs = {}
    for tile in (0, 64):
        config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=3, tile_size=tile,
                              tile_overlap=16, tile_batch=8)  # fmt: skip
        engine = InferenceEngine(config, environment=CPU_ENV).load(model)
        stream = engine.open_stream("cam")
        for k, frame in enumerate(frames):
            result = engine.push(stream, frame, k * FRAME_NS, restore=k == len(frames) - 1)
        assert result is not None
        outputs[tile] = result.image.astype(np.float32)
    assert FrameGeometry.plan(96, 128, EngineConfig(tile_size=64, tile_overlap=16)).num_tiles == 6
    difference = np.abs(outputs[0] - outputs[64])
    assert difference.mean() < 4.0 and np.percentile(difference, 99) < 16.0
    for axis, reduce in ((0, (1, 2)), (1, (0, 2))):
        tiled_step = np.abs(np.diff(outputs[64], axis=axis)).mean(axis=reduce)
        whole_step = np.abs(np.diff(outputs[0], axis=axis)).mean(axis=reduce)
        assert (tiled_step - whole_step).max() < 2.0


@pytest.mark.parametrize("inference_size", [None, (16, 12)])  # at the frame's size; resized, the change mapped back
def test_nan_output_is_flagged_and_shows_input(
    caplog: pytest.LogCaptureFixture, inference_size: tuple[int, int] | None
) -> None:
    model = random_model(seed=4)
    with torch.no_grad():
        model.drop_remover.conv_last.bias.fill_(float("nan"))
    config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=3, inference_size=inference_size)
    engine = InferenceEngine(config, environment=CPU_ENV).load(model)
    stream = engine.open_stream("cam")
    frame = moving_frames(1, 24, 32)[0]
    with caplog.at_level(logging.WARNING):
        result = engine.push(stream, frame, 0)
    assert result is not None and not result.valid
    np.testing.assert_array_equal(result.image, frame)
    assert not result.drop_mask.any() and not result.streak_map.any() and result.streak_intensity == 0.0
    assert "NaN" in caplog.text


def test_missing_shipped_weights_is_a_checkpoint_error(tmp_path: Path) -> None:
    engine = InferenceEngine(EngineConfig(model="vimpnet", device="cpu"), environment=CPU_ENV)  # none shipped
    with pytest.raises(CheckpointError, match=r"no weights are shipped for model 'vimpnet'"):
        engine.load()
    engine = InferenceEngine(EngineConfig(checkpoint=tmp_path / "nope.pth", device="cpu"), environment=CPU_ENV)
    with pytest.raises(CheckpointError, match="does not exist"):
        engine.load()
    with pytest.raises(ConfigError, match=r"unknown model config 'vimpnet_tiny'; choose one of"):
        EngineConfig(model="vimpnet_tiny", device="cpu")


def test_shipped_weights_refuse_a_window_beyond_their_record() -> None:
    """The default weights record ``max_window`` 5: a larger window fails at load with the reason; the same file
    given as ``checkpoint`` is the user's choice and loads."""
    from vimpnet_ros.model.checkpoint import shipped_checkpoint, shipped_max_window

    assert shipped_max_window("vimpnet_lite_gated") == 5
    assert shipped_max_window("vimpnet") is None  # no record ships
    config = EngineConfig(model="vimpnet_lite_gated", device="cpu", backend="torch", window_size=7)
    with pytest.raises(ConfigError, match=r"window_size 7 is larger .* at most 5 \(max_window in vimpnet_lite_gated"):
        InferenceEngine(config, environment=CPU_ENV).load()
    assert InferenceEngine(config.replace(window_size=5), environment=CPU_ENV).load().model is not None
    explicit = config.replace(checkpoint=shipped_checkpoint("vimpnet_lite_gated"))
    assert InferenceEngine(explicit, environment=CPU_ENV).load().model is not None


def test_load_from_checkpoint_file(tmp_path: Path, lite_model: VimpNet) -> None:
    from vimpnet_ros.model.checkpoint import save_checkpoint

    path = tmp_path / "lite.pth"
    save_checkpoint(path, lite_model, lite_model.config)
    config = EngineConfig(model="vimpnet_lite", checkpoint=path, device="cpu")
    engine = InferenceEngine(config, environment=CPU_ENV).load()
    assert engine.model is not None
    loaded = dict(engine.model.state_dict())
    for name, tensor in lite_model.state_dict().items():
        assert torch.equal(loaded[name], tensor)


def test_bf16_autocast_error_against_fp32_is_small(lite_model: VimpNet) -> None:
    """bf16 autocast on CPU: documented error vs fp32 (random vimpnet_lite, 64x64): < 0.02 max, < 0.003 mean."""
    frames = moving_frames(3, 64, 64, seed=1)
    outputs = {}
    for precision in ("fp32", "bf16"):
        config = EngineConfig(device="cpu", backend="torch", precision=precision, window_size=3)
        engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
        stream = engine.open_stream("cam")
        for k, frame in enumerate(frames):
            engine.push(stream, frame, k * FRAME_NS, restore=False)
        outputs[precision] = engine.run_network([(stream, 2)])[0]
        assert outputs[precision].dtype == torch.float32
    difference = (outputs["fp32"] - outputs["bf16"]).abs()
    assert 0 < difference.max().item() < 0.02 and difference.mean().item() < 0.003


def test_cameras_of_one_size_share_each_step_call(lite_model: VimpNet) -> None:
    """Three streams restored in one batch: one call per step, results equal to each stream restored alone."""
    config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=3, tile_batch=4)
    batched = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    alone = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    calls = count_step_calls(batched)
    cameras = [moving_frames(3, 20, 24, seed=seed) for seed in range(3)]
    streams = [batched.open_stream(f"cam{i}") for i in range(3)]
    singles = [alone.open_stream(f"cam{i}") for i in range(3)]
    for k in range(3):
        jobs = [(stream, batched.admit(stream, frames[k], k * FRAME_NS, meta=i)) for i, (stream, frames) in
                enumerate(zip(streams, cameras, strict=True))]  # fmt: skip
        results = batched.restore([(s, t) for s, t in jobs if t is not None])
        assert [r.meta for r in results] == [0, 1, 2]
        for single, frames, result in zip(singles, cameras, results, strict=True):
            expected = alone.push(single, frames[k], k * FRAME_NS)
            assert expected is not None
            assert np.abs(result.image.astype(int) - expected.image.astype(int)).max() <= 1
            assert np.abs(result.drop_mask.astype(int) - expected.drop_mask.astype(int)).max() <= 1
    assert calls == {"frame": 3, "flow": 3, "window": 3}


def test_auto_stage1_passes_are_two_at_a_frames_own_size_and_one_at_the_weights_scale() -> None:
    """``stage1_passes`` 0 on the default model: a frame restored at its own size runs two passes, a camera frame
    restored at the weights' scale one (a second pass's change, enlarged, darkens its clean pixels); one engine
    serves both, each window with its size's count, and the working sizes say which size runs another count."""
    model = random_model("vimpnet_lite_gated")
    assert model.config.stage1_presence is not None
    config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=3, drop_fill=0.0)
    engine = InferenceEngine(config, environment=CPU_ENV).load(model)
    assert (engine.stage1_passes, engine.stage1_passes_for(64, 48), engine.stage1_passes_for(1280, 720)) == (2, 2, 1)
    reconstructions: list[str] = []
    hook = model.reconstruction.register_forward_hook(lambda *_: reconstructions.append(current))
    try:
        small, camera = engine.open_stream("small"), engine.open_stream("camera")
        for k, (small_frame, camera_frame) in enumerate(zip(moving_frames(3, 48, 64), moving_frames(3, 720, 1280),
                                                            strict=True)):  # fmt: skip
            current = "small"
            assert engine.push(small, small_frame, k * FRAME_NS) is not None
            current = "camera"
            assert engine.push(camera, camera_frame, k * FRAME_NS) is not None
    finally:
        hook.remove()
    assert reconstructions.count("small") == 2 * 3 and reconstructions.count("camera") == 3
    assert engine.working_sizes() == "64x48 at 64x48, 1280x720 at 269x151 (stage 1 x1)"
    explicit = InferenceEngine(EngineConfig(device="cpu", stage1_passes=2), environment=CPU_ENV).load(
        random_model("vimpnet_lite_gated"))  # fmt: skip
    assert explicit.stage1_passes_for(1280, 720) == explicit.stage1_passes_for(64, 48) == 2


def test_out_of_memory_degrades_to_tiles_then_stops_and_keeps_the_stream(lite_model: VimpNet) -> None:
    """The engine's policy: whole frame -> 256 px tiles (buffered frames kept); already tiled on CPU -> nothing."""
    config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=3)
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    stream = engine.open_stream("cam")
    frames = moving_frames(3, 20, 24)
    engine.push(stream, frames[0], 0)
    engine.push(stream, frames[1], FRAME_NS)
    assert engine.recover(ValueError("not memory")) is None
    done = engine.recover(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert done is not None and "256 px tiles" in done
    assert engine.config.tile_size == 256 and stream.cache_stats() == {"frames": 2, "features": 0, "flows": 0}
    result = engine.push(stream, frames[2], 2 * FRAME_NS)
    assert result is not None and result.window_frames == 3 and result.reset_reason is None
    assert engine.recover(torch.OutOfMemoryError("out of memory")) is None  # tiled already, and on the CPU


#: What the default weights gain at least on a 1280x720 downpour restored at their scale (measured on this clip:
#: +7.9 dB at 269x151, the change enlarged along the frame's edges; +6.6 dB enlarged bilinear; at the camera's own
#: size, ``working_scale: native``, they change nothing, 0.00 dB).
CAMERA_SCALE_GAIN = 3.0
#: What the guided enlargement of the change adds at least, on every frame of that clip, to the bilinear one
#: (measured: +0.68 to +1.37 dB).
GUIDED_EXTRA_GAIN = 0.4


def test_camera_frames_restored_at_the_weights_scale_gain_and_rain_free_frames_stay_bit_for_bit() -> None:
    """A 1280x720 road clip with held-out heavy rain, streamed by the shipped default weights with the engine's
    defaults, which restore it at the weights' scale (269x151): its last frames gain, and the same clip without
    rain comes back exactly, the network's change being mapped back onto each frame's own pixels."""
    rng = np.random.default_rng([4242, 5])
    clean = make_road_clip(6, (1280, 720), rng, road_preset("heldout"))
    rainy = render_video(clean, load_rain_config("heldout"), rng)
    config = EngineConfig(device="cpu", backend="torch", precision="bf16")
    engine = InferenceEngine(config, environment=CPU_ENV).load()
    assert engine.working_size(1280, 720) == (269, 151)
    outputs = {}
    for name, frames in (("rainy", rainy.lq), ("clean", clean)):
        stream = engine.open_stream(name)
        outputs[name] = [engine.push(stream, frame, k * FRAME_NS) for k, frame in enumerate(frames)]
    gains = [psnr(outputs["rainy"][k].image, rainy.gt[k]) - psnr(rainy.lq[k], rainy.gt[k]) for k in (4, 5)]
    assert min(gains) >= CAMERA_SCALE_GAIN, gains
    for result, frame in zip(outputs["clean"], clean, strict=True):
        assert result is not None and result.image.shape == frame.shape
        np.testing.assert_array_equal(result.image, frame)


def test_camera_frames_gain_more_with_the_change_enlarged_along_their_edges() -> None:
    """The same 1280x720 downpour, restored at the weights' scale: every frame gains more with the change enlarged
    by the guided filter (``change_upsampling: guided``, the default) than enlarged bilinear, which smears the
    removed streaks and drops over the pixels around them."""
    rng = np.random.default_rng([4242, 5])
    rainy = render_video(make_road_clip(6, (1280, 720), rng, road_preset("heldout")), load_rain_config("heldout"), rng)
    gains = {}
    for upsampling in ("guided", "bilinear"):
        config = EngineConfig(device="cpu", backend="torch", precision="bf16", change_upsampling=upsampling)
        engine = InferenceEngine(config, environment=CPU_ENV).load()
        stream = engine.open_stream(upsampling)
        results = [engine.push(stream, frame, k * FRAME_NS) for k, frame in enumerate(rainy.lq)]
        gains[upsampling] = np.array(
            [psnr(r.image, gt) - psnr(lq, gt) for r, lq, gt in zip(results, rainy.lq, rainy.gt, strict=True)]
        )
    assert (gains["guided"] >= gains["bilinear"] + GUIDED_EXTRA_GAIN).all(), gains
