"""Contact sheet of rendered videos: rows rainy / clean / mask / streak, columns a few frames.

A quick visual check of a config before rendering thousands of clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vimpnet_ros.data.layout import write_png
from vimpnet_ros.data.rain.compose import RenderedVideo

#: Row labels, in order.
ROWS: tuple[str, ...] = ("rainy", "clean", "mask", "streak")
_LABEL_WIDTH = 72
_GAP = 2


def contact_sheet(videos: Sequence[RenderedVideo], frames: int = 4, tile_height: int = 160) -> np.ndarray:
    """(H, W, 3) uint8 RGB sheet: for each video four rows (rainy, clean, mask, streak) of ``frames`` frames."""
    if not videos:
        raise ValueError("contact_sheet needs at least one video")
    blocks = [_video_block(video, frames, tile_height) for video in videos]
    width = max(block.shape[1] for block in blocks)
    padded = [np.pad(block, ((0, 0), (0, width - block.shape[1]), (0, 0)), constant_values=255) for block in blocks]
    separator = np.full((4 * _GAP, width, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for block in padded:
        if parts:
            parts.append(separator)
        parts.append(block)
    return np.concatenate(parts, axis=0)


def write_contact_sheet(path: str | Path, videos: Sequence[RenderedVideo], frames: int = 4) -> Path:
    """Write :func:`contact_sheet` as a PNG; returns the path."""
    path = Path(path)
    write_png(path, contact_sheet(videos, frames))
    return path


def _video_block(video: RenderedVideo, frames: int, tile_height: int) -> np.ndarray:
    """Four labelled rows of ``frames`` evenly spaced frames of one video."""
    count = video.num_frames
    picks = np.unique(np.linspace(0, count - 1, min(frames, count)).round().astype(int))
    height, width = video.gt.shape[1:3]
    tile_width = max(1, round(width * tile_height / height))
    rows = {
        "rainy": video.lq,
        "clean": video.gt,
        "mask": np.repeat(video.drop_mask[..., None].astype(np.uint8) * 255, 3, axis=-1),
        "streak": np.repeat(np.round(video.streak_map[..., None] * 255).astype(np.uint8), 3, axis=-1),
    }
    lines: list[np.ndarray] = []
    for name in ROWS:
        tiles = [_label(name, tile_height)]
        for index in picks:
            tiles.append(cv2.resize(rows[name][index], (tile_width, tile_height), interpolation=cv2.INTER_AREA))
            tiles.append(np.full((tile_height, _GAP, 3), 255, dtype=np.uint8))
        lines.append(np.concatenate(tiles, axis=1))
        lines.append(np.full((_GAP, lines[-1].shape[1], 3), 255, dtype=np.uint8))
    return np.concatenate(lines, axis=0)


def _label(text: str, height: int) -> np.ndarray:
    """A white tile with the row name."""
    tile = np.full((height, _LABEL_WIDTH, 3), 255, dtype=np.uint8)
    cv2.putText(tile, text, (4, height // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return tile
