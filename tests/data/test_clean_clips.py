"""Clean clips from bundled photographs: offline availability, size, determinism, ego-motion."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from vimpnet_ros.data.clean_clips import (
    BUNDLED_IMAGES,
    CameraMotion,
    available_bundled_images,
    bundled_image,
    make_clean_clip,
    make_clean_clips,
)
from vimpnet_ros.errors import InputError


def test_bundled_photographs_load_offline() -> None:
    available = available_bundled_images()
    assert len(available) >= 6
    assert set(available) <= set(BUNDLED_IMAGES)
    image = bundled_image("camera")  # a grey photo comes back as RGB
    assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8
    with pytest.raises(InputError, match="unknown bundled image"):
        bundled_image("not_an_image")


@pytest.mark.parametrize("size", [(64, 48), (200, 120), (96, 160)])
def test_any_output_size(size: tuple[int, int]) -> None:
    clip = make_clean_clip("chelsea", 4, size, rng=0)
    assert clip.shape == (4, size[1], size[0], 3)
    assert clip.dtype == np.uint8
    assert clip.std() > 10  # real texture, not a flat border


def test_deterministic_with_seed() -> None:
    first = make_clean_clip("rocket", 6, (64, 64), rng=3)
    np.testing.assert_array_equal(first, make_clean_clip("rocket", 6, (64, 64), rng=np.random.default_rng(3)))
    assert not np.array_equal(first, make_clean_clip("rocket", 6, (64, 64), rng=4))


def test_camera_moves_smoothly() -> None:
    motion = CameraMotion(zoom=(0.02, 0.02), pan=(0.01, 0.01), shake=(0.002, 0.002))
    clip = make_clean_clip("astronaut", 8, (96, 96), rng=1, motion=motion).astype(float)
    steps = [np.abs(b - a).mean() for a, b in itertools.pairwise(clip)]
    assert min(steps) > 0.5  # every frame moves
    assert np.abs(clip[-1] - clip[0]).mean() > max(steps)  # motion accumulates; not noise
    still = make_clean_clip(
        "astronaut", 3, (96, 96), rng=1, motion=CameraMotion((0, 0), (0, 0), (0, 0), (0, 0), (0.7, 0.7))
    )
    np.testing.assert_array_equal(still[0], still[2])


def test_forward_zoom_magnifies() -> None:
    """With zoom only, the last frame's centre is a magnified version of the first frame's centre."""
    motion = CameraMotion(zoom=(0.05, 0.05), pan=(0, 0), shake=(0, 0), roll_deg=(0, 0), view=(0.8, 0.8))
    clip = make_clean_clip("coffee", 6, (128, 128), rng=2, motion=motion).astype(np.float32)
    factor = 1.05**5
    crop = round(128 / factor)
    start = (128 - crop) // 2
    centre = cv2.resize(clip[0][start : start + crop, start : start + crop], (128, 128), interpolation=cv2.INTER_LINEAR)
    assert np.abs(centre - clip[-1]).mean() < 0.5 * np.abs(clip[0] - clip[-1]).mean()


def test_make_clean_clips_cycles_images_and_is_prefix_stable() -> None:
    three = list(make_clean_clips(3, 2, (32, 32), seed=5, images=["coffee", "rocket"]))
    assert [name for name, _ in three] == ["coffee", "rocket", "coffee"]
    two = list(make_clean_clips(2, 2, (32, 32), seed=5, images=["coffee", "rocket"]))
    for (_, a), (_, b) in zip(two, three[:2], strict=True):
        np.testing.assert_array_equal(a, b)
