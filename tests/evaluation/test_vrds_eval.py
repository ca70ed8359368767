"""Whole-video restoration (clip averaging, padding) and VRDS evaluation with transparent stand-in models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch import Tensor, nn

from tests.engine.conftest import CPU_ENV, moving_frames, random_model
from vimpnet_ros.data.layout import scan_vrds, write_vrds
from vimpnet_ros.data.rain.compose import render_video
from vimpnet_ros.data.rain.config import load_rain_config
from vimpnet_ros.data.road_scene import make_road_clip
from vimpnet_ros.engine import (
    DROP_FILL_BLEND,
    DROP_FILL_FRAMES,
    DropHistory,
    EngineConfig,
    InferenceEngine,
    fill_drops,
)
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.evaluation.metrics import to_uint8
from vimpnet_ros.evaluation.vrds_eval import clip_starts, evaluate_vrds, load_video, model_windows, restore_video
from vimpnet_ros.model import VimpNetOutput
from vimpnet_ros.model.checkpoint import load_model, shipped_checkpoint


class ClipStartModel(nn.Module):
    """Outputs a constant per clip that encodes the clip's first frame (read from the input), so averaging shows.

    Input frames carry their index as value index / 100; the output of every frame of a clip
    is the clip's first value. Refuses sizes that are not multiples of 4, like ViMP-Net.
    """

    def forward(self, lqs: Tensor) -> VimpNetOutput:
        n, t, _, h, w = lqs.shape
        assert h % 4 == 0 and w % 4 == 0, "model got an unpadded frame"
        first = lqs[:, :1, :1, :1, :1]
        out = first.expand(n, t, 3, h, w).clone()
        mask = first.expand(n, t, 1, h, w).clone()
        return VimpNetOutput(stage1=out, drop_mask=mask, streak_map=mask, output=out)


class IdentityModel(nn.Module):
    """Returns the rainy input as the restoration (its scores must equal the input's)."""

    def forward(self, lqs: Tensor) -> VimpNetOutput:
        zeros = torch.zeros_like(lqs[:, :, :1])
        return VimpNetOutput(stage1=lqs, drop_mask=zeros, streak_map=zeros, output=lqs)


def test_clip_starts_cover_every_frame() -> None:
    assert clip_starts(7, 5, 1) == [0, 1, 2]
    assert clip_starts(12, 5, 5) == [0, 5, 7]
    assert clip_starts(3, 5, 1) == [0]


def test_stride_one_averages_every_clip_that_holds_a_frame() -> None:
    t, h, w = 7, 10, 14  # not multiples of 4: padding is exercised
    frames = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 3, h, w) / 100
    result = restore_video(ClipStartModel(), frames, clip_length=5, stride=1)
    assert result.output.shape == (t, h, w, 3)
    assert result.drop_mask.shape == (t, h, w)
    # Clips start at 0, 1, 2; frame i is in the clips starting at max(0, i-4) .. min(i, 2).
    expected = [np.mean([s for s in range(3) if s <= i <= s + 4]) / 100 for i in range(t)]
    np.testing.assert_allclose(result.output[:, 0, 0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(result.drop_mask[:, 3, 5], expected, atol=1e-6)


def test_short_video_runs_as_one_clip() -> None:
    frames = torch.rand(3, 3, 8, 8)
    result = restore_video(IdentityModel(), frames, clip_length=5, stride=1)
    np.testing.assert_allclose(result.output, frames.permute(0, 2, 3, 1).numpy(), atol=1e-6)


@pytest.mark.parametrize(("window", "output_frame"), [(3, "latest"), (5, "latest"), (5, "center")])
def test_streamed_restoration_is_what_the_engine_publishes(window: int, output_frame: str) -> None:
    """Each frame restored once, from the window the streaming engine builds for it (mirrored at the ends)."""
    model = random_model("vimpnet_lite_gated")
    frames = moving_frames(7, 20, 28)  # not multiples of 4: padding is exercised
    settings = {"device": "cpu", "backend": "torch", "precision": "fp32"}
    config = EngineConfig(**settings, window_size=window, output_frame=output_frame, drop_fill=0.0)  # the network alone
    engine = InferenceEngine(config, environment=CPU_ENV).load(model)
    stream = engine.open_stream("cam")
    published = [engine.push(stream, frame, k * 33_333_333) for k, frame in enumerate(frames)]
    published = [r for r in published if r is not None] + engine.flush(stream)
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    streamed = restore_video(model, video, clip_length=window, output_frame=output_frame)
    assert len(published) == len(frames)
    for k, result in enumerate(published):
        ours = np.clip(streamed.output[k] * 255 + 0.5, 0, 255).astype(np.uint8)
        assert np.abs(ours.astype(int) - result.image.astype(int)).max() <= 1, k
    averaged = restore_video(model, video, clip_length=window)  # the reference test's clips differ from it
    assert np.abs(averaged.output - streamed.output).max() > 1e-3


def test_a_streams_first_frames_come_from_reflected_windows() -> None:
    # As the engine pads a stream whose buffer is not full yet: the frame restored is each window's last.
    assert [indices for indices, _ in model_windows(4, 3, 1, "latest")] == [[0, 0, 0], [1, 0, 1], [0, 1, 2], [1, 2, 3]]


def test_streamed_window_is_checked_as_the_engine_checks_it() -> None:
    with pytest.raises(ConfigError, match="odd"):
        restore_video(IdentityModel(), torch.rand(4, 3, 8, 8), clip_length=4, output_frame="latest")


@pytest.fixture(scope="module")
def tiny_test_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two rendered videos (6 and 4 frames, 40x36) with lq, gt and 01drop."""
    root = tmp_path_factory.mktemp("vrds_test")
    rng = np.random.default_rng(0)
    for index, count in enumerate((6, 4)):
        base = rng.integers(0, 256, (1, 36, 40, 3), dtype=np.uint8)
        clean = np.repeat(base, count, axis=0)
        video = render_video(clean, rng=index)
        write_vrds(root, f"video_{index}", video, streams=("lq", "gt", "01drop"))
    return root


def test_identity_model_scores_equal_the_input_and_skimage(tiny_test_set: Path, tmp_path: Path) -> None:
    result = evaluate_vrds(IdentityModel(), tiny_test_set, save_frames=tmp_path / "frames")
    assert result.restored["psnr"] == pytest.approx(result.rainy_input["psnr"])
    assert result.restored["ssim"] == pytest.approx(result.rainy_input["ssim"])
    # Independent computation with scikit-image: per frame -> per video -> over videos.
    import cv2

    per_video = []
    for name in ("video_0", "video_1"):
        values = []
        for lq_path in sorted((tiny_test_set / "lq" / name).glob("*.png")):
            lq = cv2.imread(str(lq_path))
            gt = cv2.imread(str(tiny_test_set / "gt" / name / lq_path.name))
            values.append(peak_signal_noise_ratio(gt, lq, data_range=255))
        per_video.append(np.mean(values))
    assert result.restored["psnr"] == pytest.approx(np.mean(per_video), abs=1e-9)
    assert result.restored["num_frames"] == 10
    assert result.drop_mask_iou is not None  # 01drop present -> IoU reported
    saved = sorted((tmp_path / "frames" / "video_1").glob("*.png"))
    assert [p.name for p in saved] == [f"{i:08d}.png" for i in range(4)]
    written = json.loads(result.write(tmp_path / "r.json").read_text())
    assert written["gain"]["psnr"] == pytest.approx(0.0)
    assert len(written["videos"]) == 2


def test_max_videos_and_frames_limit_the_work(tiny_test_set: Path) -> None:
    result = evaluate_vrds(IdentityModel(), tiny_test_set, max_videos=1, max_frames=3)
    assert result.restored["num_videos"] == 1 and result.restored["num_frames"] == 3


class EverywhereDropModel(nn.Module):
    """Returns the input and a mask that calls every pixel a drop (recall 1, precision = drop share)."""

    def forward(self, lqs: Tensor) -> VimpNetOutput:
        ones = torch.ones_like(lqs[:, :, :1])
        return VimpNetOutput(stage1=lqs, drop_mask=ones, streak_map=ones * 0, output=lqs)


def test_scores_inside_and_outside_the_drop_mask_and_mask_precision_recall(tiny_test_set: Path) -> None:
    identity = evaluate_vrds(IdentityModel(), tiny_test_set)
    for name in ("psnr_in_mask", "psnr_outside_mask"):
        assert name in identity.restored and identity.gain[name] == pytest.approx(0.0)
    # Drops hide more of the scene than streaks: the input is worse inside the mask than outside.
    assert identity.rainy_input["psnr_in_mask"] < identity.rainy_input["psnr_outside_mask"]
    assert identity.drop_mask is not None and identity.drop_mask["threshold"] == 0.5
    assert identity.drop_mask["recall"] == 0.0 and identity.drop_mask["iou"] == 0.0
    everywhere = evaluate_vrds(EverywhereDropModel(), tiny_test_set)
    mask = everywhere.drop_mask
    assert mask is not None and mask["recall"] == 1.0
    assert mask["precision"] == pytest.approx(mask["target_fraction"]) == pytest.approx(mask["iou"])
    with_drops = [entry for entry in everywhere.videos if entry["drop_mask_recall"] == entry["drop_mask_recall"]]
    assert with_drops and all(entry["drop_mask_recall"] == 1.0 for entry in with_drops)
    assert all(entry["input_psnr_in_mask"] == pytest.approx(entry["psnr_in_mask"]) for entry in with_drops)
    written = everywhere.to_dict()
    assert set(written["gain"]) == {"psnr", "ssim", "psnr_in_mask", "psnr_outside_mask"}


class BlackModel(nn.Module):
    """Returns black frames: every frame ends further from its clean frame than it came in."""

    def forward(self, lqs: Tensor) -> VimpNetOutput:
        black = torch.zeros_like(lqs)
        return VimpNetOutput(stage1=black, drop_mask=black[:, :, :1], streak_map=black[:, :, :1], output=black)


def test_the_frames_made_worse_are_counted_per_video_and_over_the_set(tiny_test_set: Path) -> None:
    """A model that changes nothing makes no frame worse (its worst gain is 0); one that returns black frames
    makes all ten worse; the per-video counts add up to the set's, and ``evaluate``'s summary carries them."""
    from vimpnet_ros.training.ship_weights import QUALITY_SETS, set_summary

    identity = evaluate_vrds(IdentityModel(), tiny_test_set).frames_worse
    assert identity == {"count": 0, "frames": 10, "worst_psnr_gain": 0.0}
    black = evaluate_vrds(BlackModel(), tiny_test_set)
    assert black.frames_worse["count"] == black.frames_worse["frames"] == 10
    assert black.frames_worse["worst_psnr_gain"] < 0
    assert sum(video["frames_worse"] for video in black.videos) == 10
    summary = set_summary(QUALITY_SETS["heldout"], black.to_dict())
    assert summary["frames_worse"] == 10 and summary["worst_psnr_gain"] == black.frames_worse["worst_psnr_gain"]


def test_the_drops_are_filled_as_a_stream_fills_them(tmp_path: Path) -> None:
    """Shipped weights on a rainy drive: each saved frame is the network's output with the engine's two drop fills,
    the spatial one and then the one from the earlier frames, in order; the history changes some drop pixels."""
    import cv2

    rng = np.random.default_rng(8)
    clean = make_road_clip(8, (256, 160), rng)
    write_vrds(tmp_path / "set", "drive", render_video(clean, load_rain_config("wide"), rng), streams=("lq", "gt"))
    model = load_model(shipped_checkpoint("vimpnet_lite_gated"), "vimpnet_lite_gated")
    result = evaluate_vrds(model, tmp_path / "set", output_frame="latest", save_frames=tmp_path / "saved")
    assert result.to_dict()["settings"]["drop_fill_frames"] == DROP_FILL_FRAMES
    lq = load_video(scan_vrds(tmp_path / "set", ("lq", "gt")).videos[0], "lq")  # as evaluate reads it
    streamed = restore_video(model, torch.from_numpy(lq).permute(0, 3, 1, 2).contiguous(), output_frame="latest")
    history = DropHistory(DROP_FILL_FRAMES)
    changed = 0
    for k, (output, mask) in enumerate(zip(to_uint8(streamed.output), to_uint8(streamed.drop_mask), strict=True)):
        spatial = fill_drops(output, mask, DROP_FILL_BLEND)
        expected = history.fill(spatial.copy(), mask, DROP_FILL_BLEND)
        saved = cv2.imread(str(tmp_path / "saved" / "drive" / f"{k:08d}.png"))[..., ::-1]
        np.testing.assert_array_equal(saved, expected)
        changed += int((expected != spatial).any())
    assert changed > 0, "no drop was filled from an earlier frame: the drive needs drops and motion"
