"""The VRDS folder layout: scanning, validating, reading and writing frames (no torch).

A VRDS-layout dataset is one folder per stream (``lq``, ``gt``, ``01drop``, ``drop``,
``mstreak``), each holding one folder per video with frames ``00000000.png``,
``00000001.png``, ... Test sets hold ``lq`` and ``gt`` only. Colour streams are RGB
PNGs; ``01drop`` (binary raindrop mask) and ``mstreak`` (streak intensity) are grey.

Scanning reads only the 24-byte PNG header of each frame, so checking a whole
dataset for mismatched frame counts or sizes is cheap and happens before training
starts rather than in the middle of an epoch.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vimpnet_ros.errors import DatasetError

if TYPE_CHECKING:
    from vimpnet_ros.data.rain.compose import RenderedVideo

#: Every stream of a training set, in the order the reference lists them.
STREAMS: tuple[str, ...] = ("lq", "gt", "01drop", "drop", "mstreak")
#: Streams of a test set.
TEST_STREAMS: tuple[str, ...] = ("lq", "gt")
#: Streams stored as one grey channel (returned with c=1).
GREY_STREAMS: frozenset[str] = frozenset({"01drop", "mstreak"})
#: Streams that are binary masks (binarised at 0.5 when read).
MASK_STREAMS: frozenset[str] = frozenset({"01drop"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def frame_name(index: int) -> str:
    """File name of frame ``index`` in the VRDS layout (``00000012.png``)."""
    return f"{index:08d}.png"


@dataclass(frozen=True)
class VideoEntry:
    """One video of a VRDS-layout dataset: its frame files per stream and its frame size."""

    name: str
    frames: Mapping[str, tuple[Path, ...]]
    height: int
    width: int

    @property
    def num_frames(self) -> int:
        """Number of frames (equal in every stream, checked by :func:`scan_vrds`)."""
        return len(next(iter(self.frames.values())))


@dataclass(frozen=True)
class VRDSIndex:
    """The scanned, validated content of a VRDS-layout folder (picklable, no open files)."""

    root: Path
    streams: tuple[str, ...]
    videos: tuple[VideoEntry, ...]

    @property
    def num_frames(self) -> int:
        """Total number of frames over all videos."""
        return sum(video.num_frames for video in self.videos)


def png_size(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG from its IHDR header, without decoding the image."""
    try:
        with path.open("rb") as handle:
            header = handle.read(24)
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror}") from error
    if len(header) < 24 or header[:8] != _PNG_SIGNATURE or header[12:16] != b"IHDR":
        raise DatasetError(f"{path} is not a PNG file (VRDS frames must be .png); re-export or delete it")
    width, height = struct.unpack(">II", header[16:24])
    return int(height), int(width)


def scan_vrds(root: str | Path, streams: Sequence[str] = STREAMS, check_sizes: bool = True) -> VRDSIndex:
    """Find the videos of a VRDS-layout folder and check that its streams agree.

    Raises DatasetError when a stream folder is missing, a video is missing from
    one stream, frame counts differ between streams, a video has no frames, or
    (with ``check_sizes``) frames differ in size within a video or between streams.
    """
    root = Path(root)
    unknown = [stream for stream in streams if stream not in STREAMS]
    if unknown:
        raise DatasetError(f"unknown VRDS stream(s) {unknown}; known streams are {list(STREAMS)}")
    if not streams:
        raise DatasetError("no streams requested; ask for at least 'lq' and 'gt'")
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist (expected sub-folders {list(streams)})")
    missing = [stream for stream in streams if not (root / stream).is_dir()]
    if missing:
        raise DatasetError(
            f"dataset {root} lacks the stream folder(s) {missing}; a VRDS-layout folder needs {list(streams)} "
            "(test sets: use only lq and gt)"
        )
    names_per_stream = {
        stream: sorted(entry.name for entry in (root / stream).iterdir() if entry.is_dir()) for stream in streams
    }
    reference_stream = streams[0]
    names = names_per_stream[reference_stream]
    if not names:
        raise DatasetError(
            f"{root / reference_stream} holds no video folders (expected {root / reference_stream}/<video>/)"
        )
    for stream in streams[1:]:
        only_ref = sorted(set(names) - set(names_per_stream[stream]))
        only_other = sorted(set(names_per_stream[stream]) - set(names))
        if only_ref or only_other:
            raise DatasetError(
                f"videos differ between streams in {root}: missing in {stream!r}: {only_ref[:5]}, "
                f"missing in {reference_stream!r}: {only_other[:5]}"
            )
    videos = tuple(_scan_video(root, name, streams, check_sizes) for name in names)
    return VRDSIndex(root=root, streams=tuple(streams), videos=videos)


def _scan_video(root: Path, name: str, streams: Sequence[str], check_sizes: bool) -> VideoEntry:
    """List and check the frames of one video in every stream."""
    frames: dict[str, tuple[Path, ...]] = {}
    for stream in streams:
        folder = root / stream / name
        files = tuple(sorted(folder.glob("*.png")))
        if not files:
            raise DatasetError(f"{folder} holds no .png frames")
        frames[stream] = files
    counts = {stream: len(files) for stream, files in frames.items()}
    if len(set(counts.values())) != 1:
        raise DatasetError(f"video {name!r} has mismatched frame counts between streams: {counts}")
    first = frames[streams[0]][0]
    height, width = png_size(first)
    if check_sizes:
        for files in frames.values():
            for path in files:
                size = png_size(path)
                if size != (height, width):
                    raise DatasetError(
                        f"frame size mismatch in video {name!r}: {path} is {size[1]}x{size[0]} "
                        f"but {first} is {width}x{height} (WxH); all frames of all streams must match"
                    )
    return VideoEntry(name=name, frames=frames, height=height, width=width)


def read_frame(path: Path, stream: str) -> np.ndarray:
    """Read one frame as float32 in [0, 1]: (h, w, 3) RGB, or (h, w) for grey streams.

    Masks (``01drop``) are binarised at 0.5 so a JPEG-ish or anti-aliased mask still
    gives a clean BCE target.
    """
    flag = cv2.IMREAD_GRAYSCALE if stream in GREY_STREAMS else cv2.IMREAD_COLOR
    image = cv2.imread(str(path), flag | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise DatasetError(f"cannot decode {path}; the file is unreadable or not an image (re-render or delete it)")
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    result = image.astype(np.float32) / np.float32(scale)
    if stream in MASK_STREAMS:
        result = (result >= 0.5).astype(np.float32)
    return result


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 (h, w, 3) RGB or (h, w) grey image as PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), data):
        raise DatasetError(f"cannot write {path}; check that the folder is writable and the disk not full")


def vrds_arrays(video: RenderedVideo) -> dict[str, np.ndarray]:
    """The VRDS streams of a rendered video as uint8 arrays, as a VRDS folder stores them.

    Colour streams (t, h, w, 3) RGB; ``01drop`` 0/255 and ``mstreak`` round(255 x intensity),
    both (t, h, w) grey.
    """
    return {
        "lq": video.lq,
        "gt": video.gt,
        "drop": video.drop,
        "01drop": video.drop_mask.astype(np.uint8) * np.uint8(255),
        "mstreak": np.round(np.clip(video.streak_map, 0.0, 1.0) * 255.0).astype(np.uint8),
    }


def write_vrds(
    root: str | Path,
    video_name: str,
    video: RenderedVideo,
    streams: Sequence[str] = STREAMS,
    metadata: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write one rendered video into a VRDS-layout folder; returns the written frame paths.

    ``01drop`` is written as 0/255 grey, ``mstreak`` as round(255 x intensity) grey,
    the colour streams as RGB PNGs. ``metadata`` (e.g. the drawn rain parameters)
    goes to ``<root>/meta/<video>.json`` so a dataset documents how it was made.
    """
    root = Path(root)
    arrays = vrds_arrays(video)
    written: list[Path] = []
    for stream in streams:
        if stream not in arrays:
            raise DatasetError(f"unknown VRDS stream {stream!r}; known streams are {list(STREAMS)}")
        for index, frame in enumerate(arrays[stream]):
            path = root / stream / video_name / frame_name(index)
            write_png(path, frame)
            written.append(path)
    if metadata is not None:
        meta_path = root / "meta" / f"{video_name}.json"
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return written
