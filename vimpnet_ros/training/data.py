"""Training data: VRDS folders, synthetic videos rendered once into a cache folder, or clips
rendered on the fly, and a resumable sampler.

Synthetic data is rendered with the package's rain renderer over clean clips (road
scenes or the bundled photographs, ``vimpnet_ros.data.synthesize``) into a VRDS-layout
folder; a manifest (``meta/training_cache.json``) records the settings, so a second
run reuses the folder and a changed setting re-renders it instead of training on
stale data. Rendering ahead of training keeps the 2-core data path cheap (PNG reads
and crops). Online data (``type: online``) is rendered by DataLoader workers instead
(:mod:`vimpnet_ros.data.online`): the choice for a many-core machine with a GPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

from vimpnet_ros.engine import window_indices
from vimpnet_ros.errors import DatasetError
from vimpnet_ros.training.config import DataSource

MANIFEST = Path("meta") / "training_cache.json"


def _manifest_for(source: DataSource) -> dict[str, Any]:
    """What identifies a synthetic cache (every setting that changes its content)."""
    return {
        "num_videos": source.num_videos,
        "num_frames": source.num_frames,
        "size": list(source.size),
        "seed": source.seed,
        "rain_config": source.rain_config,
        "clean": source.clean,
        "scene": source.scene,
        "format": 2,
    }


def prepare_source(source: DataSource, log: Any = None) -> Path:
    """The VRDS-layout folder of ``source``, rendering the synthetic cache first when needed.

    Online sources have no folder: build them with :func:`online_dataset`.
    """
    if source.type == "online":
        raise DatasetError("an online data source has no folder; it is rendered while training (online_dataset)")
    root = Path(str(source.root))
    if source.type == "vrds":
        if not root.is_dir():
            raise DatasetError(f"training data folder {root} does not exist; render one with `vimpnet-ros render`")
        return root
    wanted = _manifest_for(source)
    manifest = root / MANIFEST
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = None
        if found == wanted:
            return root
    elif root.is_dir() and any(root.iterdir()):
        raise DatasetError(
            f"{root} is not empty and is not a synthetic cache made by training (no {MANIFEST}); "
            "point data.*.root at an empty or new folder"
        )
    from vimpnet_ros.data.rain.config import load_rain_config
    from vimpnet_ros.data.synthesize import prepare_output, render_dataset, source_clips

    if log is not None:
        log(
            f"rendering {source.num_videos} synthetic videos ({source.clean}, {source.num_frames} frames, "
            f"seed {source.seed}) into {root}"
        )
    prepare_output(root, overwrite=True)
    size = (int(source.size[0]), int(source.size[1]))
    clips = source_clips(source.clean, source.num_videos, source.num_frames, size, seed=source.seed, scene=source.scene)
    render_dataset(
        clips,
        root,
        config=load_rain_config(source.rain_config),
        seed=source.seed,
        extra_metadata={"made_by": "vimpnet-ros train (synthetic cache)"},
    )
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    return root


def online_dataset(source: DataSource, clip_length: int, crop_size: int, augment: bool) -> Any:
    """The :class:`~vimpnet_ros.data.online.OnlineRainDataset` of an ``online`` source (nothing rendered yet)."""
    from vimpnet_ros.data.online import OnlineRainDataset, OnlineSpec
    from vimpnet_ros.data.rain.config import load_rain_config

    spec = OnlineSpec(
        num_items=source.num_videos,
        num_frames=source.num_frames,
        size=(int(source.size[0]), int(source.size[1])),
        clip_length=clip_length,
        crop_size=crop_size,
        clips_per_item=source.clips_per_item,
        clean=source.clean,
        scene=source.scene,
        augment=augment,
        seed=source.seed,
        clear_fraction=source.clear_fraction,
        footage=source.footage,
        footage_fraction=source.footage_fraction,
    )
    return OnlineRainDataset(spec, load_rain_config(source.rain_config))


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way (exact resume without replaying batches).

    The order of an epoch depends only on (seed, epoch), as in DistributedSampler;
    :meth:`set_start` drops the first ``batches`` batches of this rank's share.
    """

    def __init__(self, dataset: Dataset[Any], num_replicas: int, rank: int, batch_size: int, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.start_batch = 0

    def set_start(self, batches: int) -> None:
        """Skip the first ``batches`` batches of the current epoch (reset by the next :meth:`set_epoch`)."""
        self.start_batch = int(batches)

    def set_epoch(self, epoch: int) -> None:
        """New epoch: new order, start from its first batch."""
        super().set_epoch(epoch)
        self.start_batch = 0

    def batches_per_epoch(self) -> int:
        """Full batches this rank draws per epoch (the last partial batch is dropped)."""
        return self.num_samples // self.batch_size

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        usable = self.batches_per_epoch() * self.batch_size
        return iter(indices[self.start_batch * self.batch_size : usable])

    def __len__(self) -> int:
        return max(0, (self.batches_per_epoch() - self.start_batch) * self.batch_size)


def repeat_for(num_videos: int, batch_size: int, world_size: int, min_batches: int = 50) -> int:
    """Dataset repeat factor so an epoch has at least ``min_batches`` steps per rank (few epochs = less overhead)."""
    per_epoch = num_videos / (batch_size * world_size)
    return max(1, math.ceil(min_batches / max(per_epoch, 1e-9)))


def collate_training(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the tensor fields of training samples into (n, t, c, h, w) batches (names are dropped)."""
    keys = [k for k, v in samples[0].items() if isinstance(v, torch.Tensor)]
    return {k: torch.stack([s[k] for s in samples]) for k in keys}


def start_of_stream(
    batch: dict[str, torch.Tensor], fraction: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Turn about ``fraction`` of a batch's clips into the windows a stream restores before its buffer is full.

    A camera's first T - 1 frames (and those after every reset) are restored from windows that reflect the frames
    buffered so far (:func:`~vimpnet_ros.engine.window_indices`: with frames f0, f1 the window for f1 is
    [f1, f0, f1, f0, f1], with only f0 it is [f0] * 5), where stage 2 sees a drop in fewer places than in a full
    window. Each chosen clip of (n, t, c, h, w) tensors takes k = 1..t-1 of its first frames (uniform) and every
    stream (input and targets alike) is re-indexed to the ``latest`` window of its k-th frame, the node's default.
    ``generator`` draws which clips and which k, so a seeded generator gives the same windows after a resume.
    """
    if fraction <= 0.0:
        return batch
    n, t = next(iter(batch.values())).shape[:2]
    chosen = torch.rand(n, generator=generator) < fraction
    available = torch.randint(1, t, (n,), generator=generator)
    if not bool(chosen.any()):
        return batch
    index = torch.arange(t).repeat(n, 1)
    for i in chosen.nonzero().flatten().tolist():
        k = int(available[i])
        index[i] = torch.tensor(window_indices(k - 1, k, t, t - 1))
    rows = torch.arange(n)[:, None]
    return {name: frames[rows, index] for name, frames in batch.items()}
