"""Procedural road scenes: determinism, perspective (parallax), light, presets and clip helpers."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from vimpnet_ros.data.road_scene import (
    ROAD_PRESETS,
    RoadScene,
    RoadSceneConfig,
    box_coverage,
    make_road_clip,
    make_road_clips,
    periodic_coverage,
    road_preset,
    value_noise,
)
from vimpnet_ros.errors import InputError

#: Small and quick: no supersampling, a fixed time of day where a test needs one.
QUICK = RoadSceneConfig(supersample=1)


def _config(time_of_day: str, **changes: object) -> RoadSceneConfig:
    weights = tuple(1.0 if name == time_of_day else 0.0 for name in ("day", "overcast", "dusk", "night"))
    return dataclasses.replace(QUICK, time_weights=weights, **changes)  # type: ignore[arg-type]


def test_same_seed_same_clip_other_seed_other_clip() -> None:
    first = make_road_clip(3, (64, 48), rng=5, config=QUICK)
    assert first.shape == (3, 48, 64, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, make_road_clip(3, (64, 48), rng=np.random.default_rng(5), config=QUICK))
    assert not np.array_equal(first, make_road_clip(3, (64, 48), rng=6, config=QUICK))
    # Clip i of a batch does not depend on how many clips were asked for.
    two = list(make_road_clips(2, 2, (48, 32), seed=3, config=QUICK))
    one = list(make_road_clips(1, 2, (48, 32), seed=3, config=QUICK))
    np.testing.assert_array_equal(two[0][1], one[0][1])
    assert two[0][0].startswith("road_")


def test_a_road_below_and_a_sky_above_by_day() -> None:
    config = _config("day", pitch_deg=(0.0, 0.0), roll_deg=(0.0, 0.0), building_probability=(0.0, 0.0),
                     tree_probability=(0.0, 0.0), traffic_density=(0.0, 0.0), parked_probability=(0.0, 0.0),
                     exposure_drift=(0.0, 0.0))  # fmt: skip
    frame = make_road_clip(1, (96, 64), rng=1, config=config)[0].astype(float)
    bottom, top = frame[-12:], frame[:12]
    assert top[..., 2].mean() > bottom[..., 2].mean()  # a bluish sky above a grey road
    assert bottom.std(axis=-1).mean() < 12  # asphalt is grey: small spread between channels


def test_driving_forward_gives_parallax_and_standing_still_does_not() -> None:
    still = _config("overcast", stop_probability=1.0, traffic_density=(0.0, 0.0), exposure_drift=(0.0, 0.0),
                    shake_deg=(0.0, 0.0), sway=(0.0, 0.0))  # fmt: skip
    frames = make_road_clip(3, (96, 64), rng=2, config=still)
    np.testing.assert_array_equal(frames[0], frames[2])
    moving = dataclasses.replace(still, stop_probability=0.0, speed=(1.5, 1.5))
    scene = RoadScene.sample(moving, 2, 96, 64)
    first, later = scene.camera(0), scene.camera(2)
    assert later.position[2] == pytest.approx(first.position[2] + 3.0, abs=0.2)  # driven 2 x 1.5 m
    # A point beside the road 6 m ahead sweeps across the image much faster than one 60 m ahead.
    shifts = []
    for ahead in (6.0, 60.0):
        point = scene.to_world(ahead, scene.right_edge + 2.0, 1.0)[None, :]
        before = first.project(first.to_camera(point))[0]
        after = later.project(later.to_camera(point))[0]
        shifts.append(float(np.linalg.norm(after - before)))
    assert shifts[0] > 5 * shifts[1] > 0
    changed = np.abs(make_road_clip(3, (96, 64), rng=2, config=moving).astype(float)).std(axis=0)
    assert changed.mean() > 1.0


def test_night_is_darker_than_day_but_has_lights() -> None:
    day = make_road_clip(1, (96, 64), rng=4, config=_config("day"))[0].astype(float)
    night = make_road_clip(1, (96, 64), rng=4, config=_config("night", traffic_density=(0.05, 0.05)))[0]
    assert night.astype(float).mean() < day.mean()
    assert night.max() > 200  # lamps, windows or headlights glow


def test_scene_is_sampled_from_the_preset_ranges() -> None:
    scene = RoadScene.sample(QUICK, 8, 64, 48)
    assert QUICK.lanes[0] <= scene.lanes <= QUICK.lanes[1]
    assert QUICK.fov_deg[0] <= np.degrees(scene.fov) <= QUICK.fov_deg[1]
    assert scene.light.name in ("day", "overcast", "dusk", "night")
    assert road_preset("heldout") is ROAD_PRESETS["heldout"] and road_preset("default") == RoadSceneConfig()
    with pytest.raises(InputError, match="unknown road scene preset"):
        road_preset("mars")
    with pytest.raises(InputError, match="at least 8x8"):
        RoadScene.sample(QUICK, 0, 4, 4)
    with pytest.raises(InputError, match="supersample"):
        RoadSceneConfig(supersample=0)


def test_textures_are_smooth_and_stripes_are_box_filtered() -> None:
    x = np.linspace(0.0, 4.0, 401)
    noise = value_noise(x, np.zeros_like(x), seed=3)
    assert noise.min() >= 0.0 and noise.max() < 1.0
    assert np.abs(np.diff(noise)).max() < 0.1  # continuous
    np.testing.assert_array_equal(noise, value_noise(x, np.zeros_like(x), seed=3))
    width = np.full(3, 0.5)
    np.testing.assert_allclose(box_coverage(np.array([0.0, 1.0, 2.0]), 0.75, 1.25, width), [0.0, 1.0, 0.0])
    wide = periodic_coverage(np.linspace(0, 10, 50), 2.0, 0.0, 0.5, np.full(50, 8.0))
    np.testing.assert_allclose(wide, 0.25, atol=0.02)  # footprint >> period: the duty cycle


@pytest.mark.slow
def test_render_speed_192_supersampled() -> None:
    scene = RoadScene.sample(RoadSceneConfig(), 0, 192, 192)
    started = time.process_time()
    for index in range(5):
        scene.render(index)
    assert (time.process_time() - started) / 5 < 1.5
