"""Fixtures for the data tests: tiny VRDS-layout folders whose pixels encode where they came from."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from vimpnet_ros.data.layout import STREAMS, frame_name


def coordinate_frames(stream: str, frames: int, height: int, width: int, offset: int = 0) -> np.ndarray:
    """Frames in which each pixel tells its own (x, y, frame) so any crop/flip/transpose is readable.

    Colour streams: R = x, G = y, B = 10 * frame + offset. ``mstreak`` = x (grey);
    ``01drop`` = 255 where x >= y (a mask that is not symmetric under flips/transposes).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.uint8)
    out = []
    for index in range(frames):
        if stream == "mstreak":
            out.append(xs.copy())
        elif stream == "01drop":
            out.append(np.where(xs >= ys, 255, 0).astype(np.uint8))
        else:
            out.append(np.stack([xs, ys, np.full_like(xs, 10 * index + offset)], axis=-1))
    return np.stack(out)


def write_frames(folder: Path, frames: np.ndarray) -> None:
    """Write (t, h, w[, 3]) uint8 RGB/grey frames as VRDS PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        data = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame
        assert cv2.imwrite(str(folder / frame_name(index)), data)


@pytest.fixture
def make_vrds(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_vrds({"a": (frames, h, w)}, streams=STREAMS)`` writes a coordinate-coded VRDS folder."""

    def make(
        videos: Mapping[str, tuple[int, int, int]],
        streams: Sequence[str] = STREAMS,
        name: str = "vrds",
    ) -> Path:
        root = tmp_path / name
        for offset, (video, (frames, height, width)) in enumerate(sorted(videos.items())):
            for stream in streams:
                write_frames(root / stream / video, coordinate_frames(stream, frames, height, width, offset))
        return root

    return make
