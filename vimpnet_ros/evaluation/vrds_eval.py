"""Restore whole videos with a ViMP-Net model and score them on a VRDS-layout test set.

Restoration follows the reference test: overlapping ``clip_length``-frame clips
(default 5) with temporal stride 1; each frame is restored in up to 5 clips and
the results are averaged. ``stride = clip_length`` gives the faster non-overlapping
variant used for validation during training. ``output_frame`` (``latest`` or
``center``) scores the node's way instead: each frame is restored once, as that
frame of its own ``clip_length``-frame window, built as the streaming engine builds
it (``vimpnet_ros.engine.stream.window_indices``: at the start of a stream, and for
``center`` at its end, the missing neighbours are mirrored). The streaming
engine computes the same function with cached per-frame features; this path calls
the model on whole windows. Frames are processed whole (no
spatial tiles), padded by edge replication to multiples of 4 and cropped back;
the reference additionally tiles 256x256 on large frames, which only matters for
memory. Scores: restored frames are quantised to uint8 as the reference does, then
RGB PSNR/SSIM (data range 255) per frame, mean per video, mean over videos.

With ground-truth drop masks (``01drop``) the two halves of the job are scored
apart: PSNR inside and outside the mask (restored and rainy input, same
aggregation) and the predicted mask's precision, recall and IoU at the published
threshold, from pixel counts summed over the whole set.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimpnet_ros.data.layout import TEST_STREAMS, VideoEntry, frame_name, read_frame, scan_vrds, write_png
from vimpnet_ros.engine import (
    DROP_FILL_BLEND,
    DROP_FILL_FRAMES,
    DropHistory,
    EngineConfig,
    fill_drops,
    window_indices,
)
from vimpnet_ros.errors import ConfigError, InputError
from vimpnet_ros.evaluation.metrics import (
    MASK_THRESHOLD,
    MaskCounts,
    VideoScores,
    aggregate,
    capped_psnr,
    frames_worse,
    mask_confusion,
    to_uint8,
)


@dataclass
class RestoredVideo:
    """Model outputs for every frame of one video: averaged over the clips that contained it, or streamed.

    ``output`` (t, h, w, 3) float32 in [0, 1] (clamped), ``drop_mask`` (t, h, w) in
    [0, 1], ``streak_map`` (t, h, w) and ``stage1`` (t, h, w, 3).
    """

    output: np.ndarray
    stage1: np.ndarray
    drop_mask: np.ndarray
    streak_map: np.ndarray


def clip_starts(num_frames: int, clip_length: int, stride: int) -> list[int]:
    """First frame of every clip; the last clip ends at the last frame so every frame is covered."""
    if num_frames < clip_length:
        return [0]
    last = num_frames - clip_length
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast for ``bf16``/``fp16``, nothing for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ConfigError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def restore_video(
    model: nn.Module,
    frames: Tensor,
    clip_length: int = 5,
    stride: int = 1,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    output_frame: str | None = None,
) -> RestoredVideo:
    """Restore a video ``frames`` (t, 3, h, w) float in [0, 1] clip by clip; see the module docstring.

    Videos shorter than ``clip_length`` run as one clip (at least 2 frames are needed). ``output_frame``
    None: overlapping clips averaged (the reference test, ``stride`` apart); ``latest`` / ``center``: every
    frame from its own window as the streaming engine restores it (``stride`` unused).
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise InputError(f"restore_video needs frames shaped (t, 3, h, w), got {tuple(frames.shape)}")
    num_frames, _, height, width = frames.shape
    if num_frames < 2:
        raise InputError("restore_video needs at least 2 frames (the model aligns neighbouring frames)")
    if clip_length < 2 or stride < 1:
        raise ConfigError(f"clip_length must be >= 2 and stride >= 1, got {clip_length}, {stride}")
    device = torch.device(device)
    # Streamed windows always hold clip_length frames (mirrored where the video has too few), as the engine's.
    length = clip_length if output_frame is not None else min(clip_length, num_frames)
    pad_h, pad_w = (-height) % 4, (-width) % 4
    sums = {
        "output": torch.zeros(num_frames, 3, height, width),
        "stage1": torch.zeros(num_frames, 3, height, width),
        "drop_mask": torch.zeros(num_frames, 1, height, width),
        "streak_map": torch.zeros(num_frames, 1, height, width),
    }
    counts = torch.zeros(num_frames)
    for indices, keep in model_windows(num_frames, length, stride, output_frame):
        clip = frames[indices].to(device=device, dtype=torch.float32)
        if pad_h or pad_w:
            clip = F.pad(clip, (0, pad_w, 0, pad_h), mode="replicate")
        with autocast_context(device, precision):
            result = model(clip.unsqueeze(0))
        targets = [indices[k] for k in keep]
        for name in sums:
            value = getattr(result, name)[0, keep, :, :height, :width].float().cpu()
            sums[name][targets] += value
        counts[targets] += 1
    scale = counts.view(-1, 1, 1, 1)
    mean = {name: (value / scale) for name, value in sums.items()}
    return RestoredVideo(
        output=mean["output"].clamp(0, 1).permute(0, 2, 3, 1).numpy(),
        stage1=mean["stage1"].clamp(0, 1).permute(0, 2, 3, 1).numpy(),
        drop_mask=mean["drop_mask"][:, 0].numpy(),
        streak_map=mean["streak_map"][:, 0].numpy(),
    )


def model_windows(
    num_frames: int, length: int, stride: int, output_frame: str | None
) -> Iterator[tuple[list[int], list[int]]]:
    """(frame indices of one model call, positions in it whose results count): clips, or one window per frame."""
    if output_frame is None:
        for start in clip_starts(num_frames, length, stride):
            yield list(range(start, start + length)), list(range(length))
        return
    engine = EngineConfig(window_size=length, output_frame=output_frame)
    for target in range(num_frames):
        # What the engine's ring buffer holds when it restores ``target``: the frames up to it and the
        # ``delay_frames`` after it (none for latest, T//2 for center; fewer at the end of the video).
        available = min(num_frames, target + 1 + engine.delay_frames)
        yield window_indices(target, available, length, engine.output_index), [engine.output_index]


def load_video(video: VideoEntry, stream: str, max_frames: int | None = None) -> np.ndarray:
    """Frames of one stream as float32 in [0, 1]: (t, h, w, 3) colour or (t, h, w) grey."""
    paths = video.frames[stream][:max_frames] if max_frames else video.frames[stream]
    return np.stack([read_frame(path, stream) for path in paths])


@dataclass
class EvaluationResult:
    """Scores of a whole test set plus the per-video details (what ``results.json`` holds).

    ``restored`` / ``rainy_input``: :func:`aggregate` dicts (``psnr_in_mask`` and
    ``psnr_outside_mask`` too when the set has drop masks); ``drop_mask``: the mask's
    precision / recall / iou / f1 at ``threshold`` (None without masks);
    :attr:`drop_mask_iou` repeats its IoU for older readers. ``output_vs_input``: PSNR of
    the restored frames against the rainy input (per frame, capped at
    :data:`~vimpnet_ros.evaluation.metrics.MAX_PSNR_DB`, then per video, then over videos):
    on a set without rain it measures how much the model changes what it should leave alone.
    """

    restored: dict[str, float]
    rainy_input: dict[str, float]
    videos: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    drop_mask: dict[str, float] | None = None
    output_vs_input: dict[str, float] = field(default_factory=dict)

    @property
    def drop_mask_iou(self) -> float | None:
        """The drop mask's IoU (None without masks)."""
        return None if self.drop_mask is None else self.drop_mask["iou"]

    @property
    def frames_worse(self) -> dict[str, Any]:
        """Over every scored frame: ``count`` made worse (PSNR down by more than
        :data:`~vimpnet_ros.evaluation.metrics.WORSE_BY_DB`), of ``frames``, and the lowest ``worst_psnr_gain``."""
        counts = [v["frames_worse"] for v in self.videos if v.get("frames_worse") is not None]
        worst = [v["worst_psnr_gain"] for v in self.videos if v.get("worst_psnr_gain") is not None]
        return {
            "count": sum(counts) if counts else None,
            "frames": sum(int(v.get("frames", 0)) for v in self.videos),
            "worst_psnr_gain": min(worst) if worst else None,
        }

    @property
    def gain(self) -> dict[str, float]:
        """Restored minus rainy input for every score both have (PSNR, SSIM, PSNR in/outside the mask)."""
        return {
            name: self.restored[name] - self.rainy_input[name]
            for name in ("psnr", "ssim", "psnr_in_mask", "psnr_outside_mask")
            if name in self.restored and name in self.rainy_input
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; infinite PSNR (identical frames) is written as the string "inf"."""
        return json_safe(
            {
                "restored": self.restored,
                "rainy_input": self.rainy_input,
                "gain": self.gain,
                "frames_worse": self.frames_worse,
                "drop_mask_iou": self.drop_mask_iou,
                "drop_mask": self.drop_mask,
                "output_vs_input": self.output_vs_input,
                "settings": self.settings,
                "videos": self.videos,
            }
        )

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by strings (strict JSON has no Infinity/NaN), in dicts, lists and tuples."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def evaluate_vrds(
    model: nn.Module,
    root: str | Path,
    clip_length: int = 5,
    stride: int = 1,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_videos: int | None = None,
    max_frames: int | None = None,
    save_frames: str | Path | None = None,
    progress: Callable[[Sequence[VideoEntry]], Iterator[VideoEntry]] | None = None,
    output_frame: str | None = None,
    drop_fill: float = DROP_FILL_BLEND,
    drop_fill_frames: int = DROP_FILL_FRAMES,
) -> EvaluationResult:
    """Score ``model`` on a VRDS-layout test folder (``lq`` and ``gt``; ``01drop`` used for IoU if present).

    ``output_frame`` None: the reference test (clips averaged); ``latest`` / ``center``: streamed, each
    frame restored as the node restores it (see :func:`restore_video`). ``save_frames``: write restored
    frames as ``<dir>/<video>/00000000.png``. ``drop_fill``: the engine's last step, the drops' inpainting
    blended in at this weight (:func:`~vimpnet_ros.engine.fill_drops`; 0 = the network's output alone), then
    each frame's drops filled from the ``drop_fill_frames`` frames before it, in order, as a stream's
    (:class:`~vimpnet_ros.engine.DropHistory`; 0 = not). Returns restored and rainy-input scores (the input's
    score is the baseline to beat).
    """
    root = Path(root)
    streams = list(TEST_STREAMS)
    with_masks = (root / "01drop").is_dir()
    if with_masks:
        streams.append("01drop")
    index = scan_vrds(root, streams)
    videos = list(index.videos[:max_videos] if max_videos else index.videos)
    was_training = model.training
    model.eval()
    restored_scores: list[VideoScores] = []
    input_scores: list[VideoScores] = []
    change_psnr: list[float] = []
    per_video: list[dict[str, Any]] = []
    counts = MaskCounts()
    started = time.perf_counter()
    iterator = progress(videos) if progress is not None else iter(videos)
    try:
        for video in iterator:
            lq = load_video(video, "lq", max_frames)
            gt = to_uint8(load_video(video, "gt", max_frames))
            frames = torch.from_numpy(lq).permute(0, 3, 1, 2).contiguous()
            result = restore_video(model, frames, clip_length, stride, device, precision, output_frame)
            output = to_uint8(result.output)
            if drop_fill > 0.0:  # the engine's last step, on the same quantised planes
                drops = to_uint8(result.drop_mask)
                history = DropHistory(drop_fill_frames)
                output = np.stack(
                    [
                        history.fill(fill_drops(out, drop, drop_fill), drop, drop_fill)
                        for out, drop in zip(output, drops, strict=True)
                    ]
                )
            rest, inp = VideoScores(video.name), VideoScores(video.name)
            lq_u8 = to_uint8(lq)
            target = load_video(video, "01drop", max_frames) >= 0.5 if with_masks else None
            for i in range(len(gt)):
                frame_mask = target[i] if target is not None else None
                rest.add(output[i], gt[i], mask=frame_mask)
                inp.add(lq_u8[i], gt[i], mask=frame_mask)
            restored_scores.append(rest)
            input_scores.append(inp)
            change = float(np.mean([capped_psnr(output[i], lq_u8[i]) for i in range(len(gt))]))
            change_psnr.append(change)
            entry: dict[str, Any] = {
                "video": video.name,
                "frames": len(gt),
                "psnr": rest.mean_psnr,
                "ssim": rest.mean_ssim,
                "input_psnr": inp.mean_psnr,
                "input_ssim": inp.mean_ssim,
                "output_vs_input_psnr": change,
            }
            entry["frames_worse"], entry["worst_psnr_gain"] = frames_worse(
                [after - before for after, before in zip(rest.psnr, inp.psnr, strict=True)]
            )
            if target is not None:
                video_counts = mask_confusion(result.drop_mask, target, MASK_THRESHOLD)
                counts = counts + video_counts
                entry.update(
                    psnr_in_mask=rest.mean_psnr_in_mask,
                    input_psnr_in_mask=inp.mean_psnr_in_mask,
                    psnr_outside_mask=rest.mean_psnr_outside_mask,
                    input_psnr_outside_mask=inp.mean_psnr_outside_mask,
                    drop_mask_iou=video_counts.iou,
                    drop_mask_precision=video_counts.precision,
                    drop_mask_recall=video_counts.recall,
                )
            per_video.append(entry)
            if save_frames is not None:
                for i, frame in enumerate(output):
                    write_png(Path(save_frames) / video.name / frame_name(i), frame)
    finally:
        model.train(was_training)
    return EvaluationResult(
        restored=aggregate(restored_scores),
        rainy_input=aggregate(input_scores),
        videos=per_video,
        drop_mask={**counts.scores(), "threshold": MASK_THRESHOLD} if with_masks else None,
        output_vs_input={"psnr": float(np.mean(change_psnr)) if change_psnr else math.nan},
        settings={
            "data": str(root),
            "clip_length": clip_length,
            "temporal_stride": stride if output_frame is None else None,
            "output_frame": output_frame,
            "drop_fill": drop_fill,
            "drop_fill_frames": drop_fill_frames if drop_fill > 0.0 else 0,
            "stage1_passes": getattr(getattr(model, "config", None), "stage1_passes", 1),
            "spatial": "whole frame, edge-padded to multiples of 4",
            "metric": "RGB PSNR/SSIM on uint8 (data range 255), per frame -> per video mean -> mean over videos",
            "precision": precision,
            "device": str(device),
            "max_frames": max_frames,
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
