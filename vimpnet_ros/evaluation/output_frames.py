"""PSNR of ``latest`` vs ``center`` output on synthetic rain: the numbers behind the ``output_frame`` default.

Renders rain over clean clips with :mod:`vimpnet_ros.data` (the training renderer), streams
each rainy clip through an engine in both modes (``center`` flushed at the end, so
every frame is scored in both) and averages per-frame RGB PSNR against the clean frames.
Meaningful only with trained weights; with random weights it just exercises the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vimpnet_ros.engine import EngineConfig, Environment, InferenceEngine
from vimpnet_ros.evaluation.metrics import psnr
from vimpnet_ros.model import VimpNet

FRAME_NS = 33_333_333


@dataclass(frozen=True)
class QualityReport:
    """Mean per-frame PSNR (dB) of the rainy input and of each output mode, over ``frames`` frames."""

    input_psnr: float
    psnr: dict[str, float]
    frames: int
    clips: int

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {"input_psnr": self.input_psnr, "psnr": self.psnr, "frames": self.frames, "clips": self.clips}


def synthetic_clips(
    count: int, num_frames: int, size: tuple[int, int], seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rainy, clean) pairs of (t, h, w, 3) uint8 clips from the bundled photos; ``size`` is (width, height)."""
    from vimpnet_ros.data import available_bundled_images, make_clean_clip, render_video

    names = available_bundled_images()
    clips = []
    for i in range(count):
        clean = make_clean_clip(names[i % len(names)], num_frames=num_frames, size=size, rng=seed + i)
        video = render_video(clean, rng=seed + 1000 + i)
        clips.append((video.lq, video.gt))
    return clips


def measure_output_frames(
    model: VimpNet,
    clips: Sequence[tuple[np.ndarray, np.ndarray]],
    config: EngineConfig,
    modes: Sequence[str] = ("latest", "center"),
    environment: Environment | None = None,
) -> QualityReport:
    """Stream every clip in each mode and average PSNR against the clean frames."""
    scores: dict[str, list[float]] = {mode: [] for mode in modes}
    input_scores = [psnr(lq, gt) for rainy, clean in clips for lq, gt in zip(rainy, clean, strict=True)]
    for mode in modes:
        engine = InferenceEngine(config.replace(output_frame=mode), environment).load(model)
        for rainy, clean in clips:
            stream = engine.open_stream("quality")
            results = [engine.push(stream, frame, k * FRAME_NS) for k, frame in enumerate(rainy)]
            done = [r for r in results if r is not None] + engine.flush(stream)
            for result in done:
                scores[mode].append(psnr(result.image, clean[result.stamp_ns // FRAME_NS]))
    return QualityReport(
        input_psnr=float(np.mean(input_scores)),
        psnr={mode: float(np.mean(values)) for mode, values in scores.items()},
        frames=len(input_scores),
        clips=len(clips),
    )
