"""Synthetic rain renderer: determinism, ranges, stream consistency, temporal behaviour, camera effects, preview."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vimpnet_ros.data.clean_clips import make_clean_clip
from vimpnet_ros.data.layout import scan_vrds, write_vrds
from vimpnet_ros.data.rain import (
    PRESETS,
    DropConfig,
    DropField,
    DropParams,
    RainConfig,
    SensorConfig,
    SensorParams,
    StreakConfig,
    StreakField,
    StreakParams,
    contact_sheet,
    render_video,
    write_contact_sheet,
)
from vimpnet_ros.data.vrds import VRDSDataset
from vimpnet_ros.errors import InputError


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """A 12-frame 96x128 clean clip with real texture and camera motion."""
    return make_clean_clip("motorcycle_left", 12, (128, 96), rng=0)


#: Streaks and moving drops in every video, no camera effects: the streams are exactly related.
PLAIN = RainConfig(
    streaks=StreakConfig(probability=1.0),
    drops=DropConfig(probability=1.0, static_probability=0.0, wipe_rate=0.0),
    sensor=SensorConfig(probability=0.0),
)


@pytest.fixture(scope="module")
def rendered(clean: np.ndarray):
    return render_video(clean, PLAIN, rng=11)


def test_same_seed_identical_other_seed_different(clean: np.ndarray, rendered) -> None:
    again = render_video(clean, PLAIN, rng=np.random.default_rng(11))
    for name in ("lq", "gt", "drop", "drop_mask", "streak_map"):
        np.testing.assert_array_equal(getattr(again, name), getattr(rendered, name))
    assert again.params == rendered.params
    other = render_video(clean, PLAIN, rng=12)
    assert not np.array_equal(other.lq, rendered.lq)
    assert not np.array_equal(other.drop_mask, rendered.drop_mask)
    assert not np.array_equal(other.streak_map, rendered.streak_map)


def test_shapes_dtypes_and_ranges(clean: np.ndarray, rendered) -> None:
    t, h, w = clean.shape[:3]
    for name in ("lq", "gt", "drop"):
        array = getattr(rendered, name)
        assert array.shape == (t, h, w, 3) and array.dtype == np.uint8
    assert rendered.drop_mask.shape == (t, h, w) and rendered.drop_mask.dtype == bool
    assert rendered.streak_map.shape == (t, h, w) and rendered.streak_map.dtype == np.float32
    assert rendered.streak_map.min() >= 0.0 and rendered.streak_map.max() <= 1.0
    np.testing.assert_allclose(rendered.streak_map * 255, np.round(rendered.streak_map * 255), atol=1e-3)
    np.testing.assert_array_equal(rendered.gt, clean)
    # There is rain: drops cover some but not most of the frame, streaks are present.
    assert 0.002 < rendered.drop_mask.mean() < 0.5
    assert (rendered.streak_map > 0.05).mean() > 0.005


def test_streams_are_consistent_with_the_rainy_frame(rendered) -> None:
    lq = rendered.lq.astype(int)
    drop = rendered.drop.astype(int)
    gt = rendered.gt.astype(int)
    streak = rendered.streak_map
    # lq = drop exactly where there is no streak.
    no_streak = streak == 0
    assert (lq[no_streak] == drop[no_streak]).all()
    # Visible streaks brighten every non-white channel.
    visible = (streak > 0.05)[..., None] & (drop < 240)
    assert visible.sum() > 100
    assert (lq[visible] > drop[visible]).all()
    # drop = gt outside the (slightly dilated: soft edge) mask, and differs from it inside.
    kernel = np.ones((5, 5), np.uint8)
    dilated = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in rendered.drop_mask])
    assert (drop[~dilated] == gt[~dilated]).all()
    eroded = np.stack([cv2.erode(m.astype(np.uint8), kernel) > 0 for m in rendered.drop_mask])
    assert eroded.sum() > 50
    changed = np.abs(drop - gt).max(axis=-1) > 2
    assert changed[eroded].mean() > 0.5
    # lq differs from gt wherever a visible streak or a drop is.
    assert (np.abs(lq - gt).max(axis=-1)[eroded] > 2).mean() > 0.5
    assert (lq[visible] != gt[visible]).mean() > 0.9
    # Streaks are attenuated inside drops (a drop shows a defocused view).
    assert streak[eroded].mean() < 0.2 * max(streak[~dilated].mean(), 1e-6) + 1e-3


def test_drops_persist_between_frames(rendered) -> None:
    masks = rendered.drop_mask
    for before, after in itertools.pairwise(masks):
        union = (before | after).sum()
        assert union > 0
        assert (before & after).sum() / union > 0.6


def test_streak_particles_move_along_the_fall_direction() -> None:
    params = StreakParams.sample(StreakConfig(density=(8.0, 8.0)), np.random.default_rng(0), 96, 96)
    field = StreakField(params, 96, 96, np.random.default_rng(1))
    before = field.positions
    first = field.render()
    field.step()
    after = field.positions
    second = field.render()
    assert before.shape == after.shape and before.shape[0] > 20
    moved = after - before
    kept = np.abs(moved).max(axis=1) < params.speed_px * 1.2  # not respawned (top) or wrapped (sides)
    assert kept.mean() > 0.5
    assert (moved[kept, 1] > 0).all()  # falling
    direction = np.arctan2(moved[kept, 0], moved[kept, 1])
    np.testing.assert_allclose(direction, params.angle_rad, atol=1e-6)
    assert not np.array_equal(first, second)


def test_drop_field_grows_merges_and_slides() -> None:
    config = DropConfig(
        density=(0.0, 0.0),
        spawn_rate=(0.0, 0.0),
        growth=(0.05, 0.05),
        slide_probability=1.0,
        static_probability=0.0,
        wipe_rate=0.0,
    )
    params = DropParams.sample(config, np.random.default_rng(0), 128, 128)
    field = DropField(params, 128, 128, np.random.default_rng(0))
    assert field.count == 1  # at least one drop even at zero density
    field.add_drop(100.0, 100.0, 3.0)
    assert field.count == 2
    # Two touching drops merge into one at the area-weighted centre with the summed area.
    far = DropField(params, 128, 128, np.random.default_rng(0))
    far.add_drop(40.0, 40.0, 10.0)
    count = far.count
    far.add_drop(48.0, 40.0, 10.0)
    assert far.count == count
    merged = int(np.argmin(np.hypot(far.centres[:, 0] - 44.0, far.centres[:, 1] - 40.0)))
    np.testing.assert_allclose(far.centres[merged], [44.0, 40.0])
    np.testing.assert_allclose(far.radii[merged], np.sqrt(200.0))
    field = far
    y0 = float(field.centres[merged, 1])
    r0 = float(field.radii[merged])
    # Large drop (> slide_radius) with slide probability 1 starts sliding down.
    for _ in range(3):
        field.step()
    moved = int(np.argmax(field.radii))
    assert field.radii[moved] > r0
    assert field.centres[moved, 1] > y0 + 1.0


def test_static_drops_stay_and_a_wiper_clears_them() -> None:
    static = DropParams.sample(DropConfig(static_probability=1.0), np.random.default_rng(0), 128, 128)
    field = DropField(static, 128, 128, np.random.default_rng(0))
    before = field.centres.copy(), field.radii.copy()
    for _ in range(5):
        field.step()
    np.testing.assert_array_equal(field.centres, before[0])
    np.testing.assert_array_equal(field.radii, before[1])
    config = DropConfig(density=(20.0, 20.0), static_probability=0.0, spawn_rate=(0.0, 0.0), wipe_rate=1.0)
    wiped = DropField(DropParams.sample(config, np.random.default_rng(0), 128, 128), 128, 128, np.random.default_rng(1))
    assert wiped.count > 10
    wiped.step()  # the blade has swept the left third
    assert wiped.wiping
    assert (wiped.centres[:, 0] - wiped.radii > 128 / 3 - 1e-6).all()
    wiped.step()
    wiped.step()  # the sweep is complete: no drop is left
    assert wiped.count == 0 and not wiped.wiping


def test_camera_effects_expose_every_stream_but_degrade_only_the_rainy_frame(clean: np.ndarray) -> None:
    dark = SensorConfig(probability=1.0, gain=(0.5, 0.5), gamma=(1.0, 1.0), noise=(0.0, 0.0), shot_noise=(0.0, 0.0),
                        jpeg_probability=0.0)  # fmt: skip
    video = render_video(clean, RainConfig(sensor=dark, streaks=StreakConfig(probability=0.0)), rng=3)
    np.testing.assert_allclose(video.gt.astype(float), np.round(clean * 0.5), atol=1)
    np.testing.assert_array_equal(video.lq, video.drop)  # no noise, no streaks: lq is the drop stream
    noisy = dataclasses.replace(dark, gain=(1.0, 1.0), noise=(0.03, 0.03), jpeg_probability=1.0, jpeg_quality=(50, 50))
    video = render_video(clean, RainConfig(sensor=noisy, streaks=StreakConfig(probability=0.0)), rng=3)
    np.testing.assert_array_equal(video.gt, clean)
    difference = np.abs(video.lq.astype(int) - video.drop.astype(int))
    assert 3.0 < difference.mean() < 30.0  # noise and JPEG on lq only
    params = SensorParams.sample(noisy, np.random.default_rng(0))
    assert params.jpeg_quality == 50 and params.noise == pytest.approx(0.03)


def test_streak_blur_and_drop_opacity_change_the_look(clean: np.ndarray) -> None:
    sharp = StreakConfig(probability=1.0, density=(10.0, 10.0), blur=(0.0, 0.0))
    blurred = dataclasses.replace(sharp, blur=(2.0, 2.0))
    maps = [
        render_video(clean[:2], RainConfig(streaks=config, drops=DropConfig(probability=0.0)), rng=4).streak_map
        for config in (sharp, blurred)
    ]
    assert maps[1].max() < maps[0].max()  # defocus spreads the same streaks thinner
    faint = RainConfig(drops=DropConfig(probability=1.0, opacity=(0.5, 0.5)), streaks=StreakConfig(probability=0.0),
                       sensor=SensorConfig(probability=0.0))  # fmt: skip
    solid = dataclasses.replace(faint, drops=dataclasses.replace(faint.drops, opacity=(1.0, 1.0)))
    videos = [render_video(clean[:2], config, rng=5) for config in (faint, solid)]
    np.testing.assert_array_equal(videos[0].drop_mask, videos[1].drop_mask)  # same drops, same mask
    inside = videos[0].drop_mask
    change = [np.abs(v.drop.astype(int) - v.gt.astype(int)).max(axis=-1)[inside].mean() for v in videos]
    assert change[0] < 0.75 * change[1]


def test_held_out_preset_shifts_the_ranges() -> None:
    from vimpnet_ros.data.rain.config import load_rain_config, preset_path

    held_out = load_rain_config("heldout")
    assert set(PRESETS) == {
        "default",
        "heldout",
        "light",
        "wide",
        "wide_heavy",
        "wide_heavy_half",
        "wide_heavy_small_drops",
        "none",
    }
    assert all(preset_path(n).is_file() for n in PRESETS)
    wide, none = load_rain_config("wide"), load_rain_config("none")
    assert wide.drops.radius[1] == 0.10  # drops up to a fifth of the frame across
    assert wide.streaks == RainConfig().streaks
    assert none.streaks.probability == none.drops.probability == 0.0 and none.sensor == RainConfig().sensor
    assert held_out.drops.radius[1] > RainConfig().drops.radius[1]
    assert held_out.streaks.density[1] > RainConfig().streaks.density[1]
    assert held_out.sensor.jpeg_quality[0] < RainConfig().sensor.jpeg_quality[0]
    assert held_out != RainConfig()
    # The downpour preset draws from inside the default ranges: the held-out streaks stay outside training.
    heavy, default = load_rain_config("wide_heavy"), RainConfig()
    assert heavy.drops == wide.drops and heavy.streaks != default.streaks
    for name in ("density", "intensity", "thickness", "angle_deg", "blur"):
        low, high = getattr(heavy.streaks, name)
        assert getattr(default.streaks, name)[0] <= low and high <= getattr(default.streaks, name)[1]
    assert held_out.streaks.density[1] > heavy.streaks.density[1]
    # The same downpours in half the videos, the rest streak-free.
    half = load_rain_config("wide_heavy_half")
    assert half.drops == heavy.drops and half.sensor == heavy.sensor
    assert half.streaks == dataclasses.replace(heavy.streaks, probability=0.5) != heavy.streaks


def test_disabled_streaks_or_drops(clean: np.ndarray) -> None:
    only_drops = dataclasses.replace(PLAIN, streaks=StreakConfig(probability=0.0))
    video = render_video(clean, only_drops, rng=1)
    assert video.streak_map.max() == 0
    np.testing.assert_array_equal(video.lq, video.drop)
    only_streaks = dataclasses.replace(PLAIN, drops=DropConfig(probability=0.0))
    video = render_video(clean, only_streaks, rng=1)
    assert not video.drop_mask.any()
    np.testing.assert_array_equal(video.drop, video.gt)
    assert video.streak_map.max() > 0.1


def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError, match="uint8"):
        render_video(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match=r"\(t, h, w, 3\)"):
        render_video(np.zeros((32, 32, 3), np.uint8))


def test_written_video_loads_back_through_the_dataset(rendered, tmp_path: Path) -> None:
    write_vrds(tmp_path, "clip", rendered, metadata=rendered.params)
    assert (tmp_path / "meta" / "clip.json").is_file()
    index = scan_vrds(tmp_path)
    assert index.videos[0].num_frames == rendered.num_frames
    dataset = VRDSDataset(index, clip_length=rendered.num_frames, patch_size=None, augment=False)
    sample = dataset[0]
    np.testing.assert_array_equal(
        np.round(sample["lq"].numpy() * 255).astype(np.uint8), rendered.lq.transpose(0, 3, 1, 2)
    )
    np.testing.assert_array_equal(sample["01drop"].numpy()[:, 0] > 0.5, rendered.drop_mask)
    np.testing.assert_allclose(sample["mstreak"].numpy()[:, 0], rendered.streak_map, atol=1e-6)


def test_contact_sheet_png(rendered, tmp_path: Path) -> None:
    sheet = contact_sheet([rendered], frames=3)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    path = write_contact_sheet(tmp_path / "preview.png", [rendered, rendered], frames=3)
    image = cv2.imread(str(path))
    assert image is not None
    assert image.shape[0] > 2 * 4 * 100  # two videos x four rows of 160-pixel tiles
    assert image.std() > 10


def test_params_scale_with_frame_size() -> None:
    small = DropParams.sample(DropConfig(), np.random.default_rng(0), 128, 256)
    large = DropParams.sample(DropConfig(), np.random.default_rng(0), 512, 1024)
    assert large.radius_px[0] == pytest.approx(4 * small.radius_px[0])
    assert dataclasses.replace(small, radius_px=large.radius_px).zoom == large.zoom


@pytest.mark.slow
def test_speed_20_frames_256() -> None:
    clip = make_clean_clip("rocket", 20, (256, 256), rng=0)
    started = time.perf_counter()
    render_video(clip, RainConfig(), rng=0)
    assert time.perf_counter() - started < 5.0
