"""Make a VRDS-layout training set from any clean source: the engine behind ``vimpnet-ros render``.

``source_clips`` turns a source (procedural road scenes, bundled photographs, an
image folder, a video file or a rosbag topic) into named clean clips; ``render_dataset`` adds rain to each and
writes the five streams plus metadata. Clip i of a run uses seeds derived from
(seed, i) only, so the first N videos of a larger run equal a run of N videos.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vimpnet_ros.data.clean_clips import BUNDLED_IMAGES, make_clean_clips
from vimpnet_ros.data.layout import STREAMS, write_vrds
from vimpnet_ros.data.rain.compose import RenderedVideo, render_video
from vimpnet_ros.data.rain.config import RainConfig
from vimpnet_ros.data.rain.preview import write_contact_sheet
from vimpnet_ros.data.road_scene import make_road_clips, road_preset
from vimpnet_ros.data.sources import (
    clips_from_frames,
    folder_videos,
    iter_bag_frames,
    iter_folder_frames,
    iter_video_frames,
)
from vimpnet_ros.errors import BagError, DatasetError, InputError

#: Clean sources understood by :func:`source_clips`; the first two need no footage.
SOURCES: tuple[str, ...] = ("road", "bundled", "folder", "video", "bag")


@dataclass(frozen=True)
class RenderSummary:
    """What :func:`render_dataset` wrote."""

    output: Path
    videos: list[str]
    frames: int
    preview: Path | None


def _slug(text: str) -> str:
    """A file-name-safe version of a source name (topic, file stem)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "clip"


def source_clips(
    source: str,
    videos: int,
    frames: int,
    size: tuple[int, int] | None,
    seed: int = 0,
    input_path: str | Path | None = None,
    topic: str | None = None,
    images: Sequence[str] | None = None,
    scene: str = "default",
) -> Iterator[tuple[str, np.ndarray]]:
    """Up to ``videos`` (name, clean clip (t, h, w, 3) uint8 RGB) pairs from a source, made lazily.

    Arguments and paths are checked now (before anything is written); frames are
    read while iterating.

    ``road`` (procedural road scenes, preset ``scene``) and ``bundled`` need ``size``;
    footage sources cut consecutive clips of ``frames`` frames (a folder of
    sub-folders: each sub-folder is one recording) and keep the native size when
    ``size`` is None.
    """
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; choose one of {list(SOURCES)}")
    if videos < 1 or frames < 1:
        raise InputError(f"need at least one video of one frame, got videos={videos} frames={frames}")
    if source == "road":
        if size is None:
            raise InputError("the road source needs an output size (--size WxH)")
        roads = make_road_clips(videos, frames, size, seed, road_preset(scene))
        return ((f"{index:04d}_{name}", clip) for index, (name, clip) in enumerate(roads))
    if source == "bundled":
        if size is None:
            raise InputError("the bundled source needs an output size (--size WxH)")
        unknown = sorted(set(images or ()) - set(BUNDLED_IMAGES))
        if unknown:
            raise InputError(f"unknown bundled image(s) {unknown}; choose from {list(BUNDLED_IMAGES)}")
        bundled = make_clean_clips(videos, frames, size, seed, images)
        return ((f"{index:04d}_{name}", clip) for index, (name, clip) in enumerate(bundled))
    if input_path is None:
        raise InputError(f"source {source!r} needs an input path (--input PATH)")
    path = Path(input_path)
    streams: list[tuple[str, Iterable[np.ndarray]]]
    if source == "folder":
        streams = [(folder.name, iter_folder_frames(folder)) for folder in folder_videos(path)]
    elif source == "video":
        if not path.is_file():
            raise DatasetError(f"video file {path} does not exist")
        streams = [(path.stem, iter_video_frames(path))]
    else:
        if not topic:
            raise InputError("the bag source needs an image topic (--topic /camera/image_raw)")
        if not path.exists():
            raise BagError(f"rosbag {path} does not exist")
        streams = [(topic, iter_bag_frames(path, topic))]
    clips = itertools.chain.from_iterable(
        ((name, clip) for clip in clips_from_frames(frames_iter, frames, size=size)) for name, frames_iter in streams
    )
    return ((f"{index:04d}_{_slug(name)}", clip) for index, (name, clip) in enumerate(itertools.islice(clips, videos)))


def prepare_output(output: str | Path, overwrite: bool) -> Path:
    """Make sure ``output`` can receive a new dataset; with ``overwrite`` remove its old streams."""
    output = Path(output)
    existing = [output / name for name in (*STREAMS, "meta") if (output / name).exists()]
    if existing and not overwrite:
        raise DatasetError(
            f"{output} already holds a dataset ({existing[0].name}/); pass --overwrite or pick another folder"
        )
    for path in existing:
        shutil.rmtree(path)
    output.mkdir(parents=True, exist_ok=True)
    return output


def render_dataset(
    clips: Iterable[tuple[str, np.ndarray]],
    output: str | Path,
    config: RainConfig | None = None,
    seed: int = 0,
    preview: str | Path | None = None,
    preview_videos: int = 3,
    extra_metadata: dict[str, Any] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> RenderSummary:
    """Render rain over each clip and write a VRDS-layout folder (all five streams).

    Video i uses ``default_rng([seed, i, 1])``. Each video's drawn parameters go to
    ``meta/<video>.json``; the config and ``extra_metadata`` to ``meta/render.json``.
    ``preview``: write a contact sheet of the first ``preview_videos`` videos.
    """
    output = Path(output)
    config = RainConfig() if config is None else config
    names: list[str] = []
    shown: list[RenderedVideo] = []
    total_frames = 0
    iterable: Iterable[tuple[str, np.ndarray]] = progress(clips) if progress is not None else clips
    for index, (name, clean) in enumerate(iterable):
        video = render_video(clean, config, np.random.default_rng([seed, index, 1]))
        write_vrds(output, name, video, metadata={"seed": seed, "index": index, **video.params})
        names.append(name)
        total_frames += video.num_frames
        if preview is not None and len(shown) < preview_videos:
            shown.append(video)
    if not names:
        raise DatasetError("the source gave no clip; it has fewer frames than --frames (or none at all)")
    meta = {"seed": seed, "videos": names, "config": config.to_dict(), **(extra_metadata or {})}
    (output / "meta").mkdir(parents=True, exist_ok=True)
    (output / "meta" / "render.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    preview_path = write_contact_sheet(preview, shown) if preview is not None else None
    return RenderSummary(output=output, videos=names, frames=total_frames, preview=preview_path)
