"""VRDS-layout datasets for PyTorch: random training clips and sequential test clips.

Training (:class:`VRDSDataset`) returns random ``clip_length``-frame clips with one
random crop, flip and transpose shared by all five streams, as the reference trains.
Randomness comes only from ``numpy.random.default_rng((seed, epoch, index))``: a
sample depends on nothing but its index and the epoch, so results are identical with
any number of DataLoader workers and any DistributedSampler split. Call
:meth:`VRDSDataset.set_epoch` together with ``DistributedSampler.set_epoch`` each
epoch (with ``persistent_workers=False``, the DataLoader default, so workers see it).

Testing (:class:`VRDSTestDataset`) returns whole videos or consecutive clips of
``lq`` and ``gt``.

Every tensor is float32 in [0, 1] shaped (t, c, h, w); the grey streams ``01drop``
and ``mstreak`` have c = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vimpnet_ros.data.layout import STREAMS, TEST_STREAMS, VideoEntry, VRDSIndex, read_frame, scan_vrds
from vimpnet_ros.errors import DatasetError


@dataclass(frozen=True)
class Augmentation:
    """One sample's geometric augmentation: crop window, flips and h/w transpose."""

    top: int
    left: int
    height: int
    width: int
    hflip: bool
    vflip: bool
    transpose: bool

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Apply to (t, h, w) or (t, h, w, c) frames; every stream gets the same geometry."""
        out = frames[:, self.top : self.top + self.height, self.left : self.left + self.width]
        if self.hflip:
            out = out[:, :, ::-1]
        if self.vflip:
            out = out[:, ::-1]
        if self.transpose:
            out = np.swapaxes(out, 1, 2)
        return out

    @classmethod
    def draw(
        cls, rng: np.random.Generator, frame: tuple[int, int], patch: tuple[int, int], augment: bool
    ) -> Augmentation:
        """A random ``patch`` (h, w) window of a ``frame`` (h, w) and, with ``augment``, random flips and a
        transpose (square patches only); always draws the same numbers (top, left, three coins)."""
        height, width = patch
        top = int(rng.integers(0, frame[0] - height + 1))
        left = int(rng.integers(0, frame[1] - width + 1))
        flips = rng.random(3) < 0.5
        return cls(
            top=top,
            left=left,
            height=height,
            width=width,
            hflip=bool(augment and flips[0]),
            vflip=bool(augment and flips[1]),
            transpose=bool(augment and flips[2] and height == width),
        )


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(t, h, w) or (t, h, w, c) array -> contiguous (t, c, h, w) tensor of the same dtype."""
    if frames.ndim == 3:
        frames = frames[..., None]
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))


def _load_frames(video: VideoEntry, stream: str, indices: Sequence[int]) -> np.ndarray:
    """Read frames ``indices`` of one stream: (t, h, w, 3) or (t, h, w) float32; checks their size."""
    frames = []
    for index in indices:
        path = video.frames[stream][index]
        frame = read_frame(path, stream)
        if frame.shape[:2] != (video.height, video.width):
            raise DatasetError(
                f"{path} is {frame.shape[1]}x{frame.shape[0]} but video {video.name!r} is "
                f"{video.width}x{video.height}; all frames of a video must have one size"
            )
        frames.append(frame)
    return np.stack(frames)


class VRDSDataset(Dataset[dict[str, Any]]):
    """Random training clips from a VRDS-layout folder.

    Sample ``i`` is a clip of video ``i % num_videos`` (``repeat`` multiplies the
    epoch length). Returns ``{stream: (t, c, h, w) float32, "video": str,
    "frames": (t,) int64 frame indices}``. ``patch_size`` None keeps whole frames
    (then frames of different videos may differ in size: use batch size 1).
    Transposes are only drawn for square patches, so every sample of a batch has
    the same shape. Build from a folder with :meth:`from_folder`.
    """

    def __init__(
        self,
        index: VRDSIndex,
        clip_length: int = 5,
        patch_size: int | tuple[int, int] | None = 256,
        augment: bool = True,
        repeat: int = 1,
        seed: int = 0,
    ) -> None:
        if clip_length < 1:
            raise DatasetError(f"clip_length must be >= 1, got {clip_length}")
        if repeat < 1:
            raise DatasetError(f"repeat must be >= 1, got {repeat}")
        if not index.videos:
            raise DatasetError(f"dataset {index.root} holds no videos")
        patch = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
        if patch is not None and (patch[0] < 1 or patch[1] < 1):
            raise DatasetError(f"patch_size must be positive, got {patch_size}")
        for video in index.videos:
            if video.num_frames < clip_length:
                raise DatasetError(
                    f"video {video.name!r} in {index.root} has {video.num_frames} frames, fewer than "
                    f"clip_length={clip_length}; remove it or lower clip_length"
                )
            if patch is not None and (video.height < patch[0] or video.width < patch[1]):
                raise DatasetError(
                    f"video {video.name!r} in {index.root} is {video.width}x{video.height}, smaller than the "
                    f"patch {patch[1]}x{patch[0]}; lower patch_size"
                )
        self.index = index
        self.clip_length = clip_length
        self.patch = patch
        self.augment = augment
        self.repeat = repeat
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_folder(
        cls, root: str | Path, streams: Sequence[str] = STREAMS, check_sizes: bool = True, **options: Any
    ) -> VRDSDataset:
        """Scan and validate ``root`` (see :func:`scan_vrds`), then build the dataset."""
        return cls(scan_vrds(root, streams, check_sizes=check_sizes), **options)

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams each sample holds."""
        return self.index.streams

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random clips, crops and flips are drawn (as DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index.videos) * self.repeat

    def sample_plan(self, item: int) -> tuple[VideoEntry, list[int], Augmentation]:
        """The video, frame indices and augmentation of sample ``item`` (no I/O)."""
        if not 0 <= item < len(self):
            raise IndexError(f"sample {item} out of range for a dataset of {len(self)}")
        rng = np.random.default_rng((self.seed, self.epoch, item))
        video = self.index.videos[item % len(self.index.videos)]
        start = int(rng.integers(0, video.num_frames - self.clip_length + 1))
        frame = (video.height, video.width)
        augmentation = Augmentation.draw(rng, frame, self.patch or frame, self.augment)
        return video, list(range(start, start + self.clip_length)), augmentation

    def __getitem__(self, item: int) -> dict[str, Any]:
        video, indices, augmentation = self.sample_plan(item)
        sample: dict[str, Any] = {
            stream: to_tensor(augmentation.apply(_load_frames(video, stream, indices))) for stream in self.streams
        }
        sample["video"] = video.name
        sample["frames"] = torch.tensor(indices, dtype=torch.int64)
        return sample


class VRDSTestDataset(Dataset[dict[str, Any]]):
    """Whole videos or consecutive clips of a VRDS-layout test set (``lq`` and ``gt`` by default).

    ``clip_length`` None: one sample per video, all its frames. Otherwise clips of
    ``clip_length`` frames every ``stride`` frames (default: ``clip_length``, no
    overlap); the last clip is moved back to end at the last frame, so every frame
    is covered even when the length is not a multiple of the stride. Returns
    ``{stream: (t, c, h, w), "video": str, "frames": (t,) int64}``.
    """

    def __init__(self, index: VRDSIndex, clip_length: int | None = None, stride: int | None = None) -> None:
        if clip_length is not None and clip_length < 1:
            raise DatasetError(f"clip_length must be >= 1 or None, got {clip_length}")
        if stride is not None and stride < 1:
            raise DatasetError(f"stride must be >= 1, got {stride}")
        self.index = index
        self.clip_length = clip_length
        self.stride = stride or clip_length
        self.clips: list[tuple[int, list[int]]] = []
        for number, video in enumerate(index.videos):
            if clip_length is None:
                self.clips.append((number, list(range(video.num_frames))))
                continue
            if video.num_frames < clip_length:
                raise DatasetError(
                    f"video {video.name!r} has {video.num_frames} frames, fewer than clip_length={clip_length}"
                )
            last = video.num_frames - clip_length
            starts = list(range(0, last + 1, self.stride or clip_length))
            if starts[-1] != last:
                starts.append(last)
            self.clips.extend((number, list(range(start, start + clip_length))) for start in starts)

    @classmethod
    def from_folder(
        cls, root: str | Path, streams: Sequence[str] = TEST_STREAMS, check_sizes: bool = True, **options: Any
    ) -> VRDSTestDataset:
        """Scan and validate ``root``, then build the dataset."""
        return cls(scan_vrds(root, streams, check_sizes=check_sizes), **options)

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams each sample holds."""
        return self.index.streams

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: int) -> dict[str, Any]:
        number, indices = self.clips[item]
        video = self.index.videos[number]
        sample: dict[str, Any] = {stream: to_tensor(_load_frames(video, stream, indices)) for stream in self.streams}
        sample["video"] = video.name
        sample["frames"] = torch.tensor(indices, dtype=torch.int64)
        return sample
