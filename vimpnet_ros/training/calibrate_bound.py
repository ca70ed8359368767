"""Calibrate a model's ``propagation_bound`` (the norm bound on stage 1's propagated features) for its weights.

    python -m vimpnet_ros.training.calibrate_bound --model vimpnet_lite_gated [--checkpoint W.pth]

Weights trained on small crops meet, in a camera frame, wide smooth areas far from any edge (a dark sky, a
black frame at 1280x720) where the forward propagation's recurrence multiplies the features from frame to
frame, and the drop head reads the grown features as drops. The bound stops that growth and must leave every
frame like the training frames as it is; this finds it on renders of the *training* distribution (the clips of
:mod:`~vimpnet_ros.training.calibrate_presence`: road scenes of the ``default`` preset, seed
``CALIBRATION_SEED``, rendered with the rain preset, its drops alone and no rain), never on a test set:

1. each frame is restored as the node restores it, by the window ending at it (mirrored at the clip's start,
   as a stream's first frames are), with the bound off and ``passes`` stage-1 passes (the most the engine
   picks by itself);
2. the largest L2 norm of one pixel's propagated feature over every step of both propagation passes and every
   stage-1 pass is recorded per kind;
3. the bound is :data:`BOUND_MARGIN` times the largest of them, rounded up to a whole number: no frame of the
   training distribution reaches it, and the growth stops as soon as it leaves that distribution.

It prints the largest norm per kind and the bound; ``--output`` also writes them as JSON. The bound goes into
the model's registered config (``vimpnet_ros/model/config.py``) by hand, with the command in a comment.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from vimpnet_ros.data.rain.config import RainConfig
from vimpnet_ros.engine import AUTO_STAGE1_PASSES, window_indices
from vimpnet_ros.model.vimpnet_arch import VimpNet
from vimpnet_ros.training.calibrate_presence import (
    CALIBRATION_SEED,
    KINDS,
    add_calibration_arguments,
    calibration_videos,
    run_calibration,
)

#: The bound is this many times the largest norm of the training distribution (then rounded up). Any headroom lets
#: the grown features further toward what the drop head reads as drops: for the shipped default weights (largest
#: norm 15.47) a margin of 2 (bound 31) still calls 3.7 % of a black 1280x720 frame drops and 1.25 (bound 20)
#: 1.2 %, where 1 (bound 16) calls none and no training-like frame changes.
BOUND_MARGIN = 1.0


@dataclass(frozen=True)
class BoundCalibration:
    """The largest propagated-feature norm per kind of clip, and the bound they give."""

    largest: dict[str, float]
    bound: float

    def to_dict(self) -> dict[str, object]:
        """JSON-able."""
        return {"largest": self.largest, "bound": self.bound, "margin": BOUND_MARGIN}


def largest_norm(model: VimpNet, lq: np.ndarray, window: int, passes: int) -> float:
    """The largest propagated-feature norm restoring each frame of ``lq`` (t, h, w, 3) uint8 by the ``window``
    ending at it, through ``passes`` stage-1 passes: every pixel's L2 norm over channels where the bound applies
    (a forward hook on ``model.feature_bound``), with the bound off, so the features are the weights' own."""
    clip = torch.from_numpy(lq).permute(0, 3, 1, 2).float().div(255.0)
    largest = [0.0]

    def watch(module: nn.Module, args: tuple[Tensor, float | None], output: Tensor) -> None:
        largest[0] = max(largest[0], float(torch.linalg.vector_norm(args[0], dim=1).amax()))

    rule = model.stage1_passes
    hook = model.feature_bound.register_forward_hook(watch)
    model.set_stage1_passes(passes)
    try:
        with torch.no_grad():
            for target in range(clip.shape[0]):
                frames = clip[window_indices(target, target + 1, window, window - 1)][None]
                model.remove_streaks(frames, model.extract_features(frames), *model.compute_flows(frames))
    finally:
        hook.remove()
        model.set_stage1_passes(rule)
    return largest[0]


def calibrate(
    model: VimpNet,
    rain: RainConfig,
    clips: int,
    frames: int,
    size: tuple[int, int],
    window: int,
    passes: int,
    seed: int = CALIBRATION_SEED,
) -> BoundCalibration:
    """Measure ``clips`` rendered clips of ``frames`` frames at ``size`` (w, h) each way; see the module."""
    largest = dict.fromkeys(KINDS, 0.0)
    rule = model.config.propagation_bound
    model.set_propagation_bound(None)  # the features as the weights make them
    try:
        for kind, video in calibration_videos(rain, clips, frames, size, seed):
            largest[kind] = max(largest[kind], largest_norm(model, video.lq, window, passes))
    finally:
        model.set_propagation_bound(rule)
    return BoundCalibration(largest=largest, bound=float(math.ceil(BOUND_MARGIN * max(largest.values()))))


def main(argv: list[str] | None = None) -> int:
    """Calibrate and print; exit 2 on a bad argument."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_calibration_arguments(parser)
    parser.add_argument("--passes", type=int, default=max(AUTO_STAGE1_PASSES.values()), help="stage-1 passes")
    parser.add_argument("--output", type=Path, help="also write the norms and the bound as JSON")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.window < 2 or args.frames < 1 or args.passes < 1:
        print("need --clips >= 1, --window >= 2, --frames >= 1 and --passes >= 1", file=sys.stderr)
        return 2
    result = run_calibration(args, lambda model, *renders: calibrate(model, *renders, passes=args.passes))
    if result is None:
        return 2
    for kind, norm in result.largest.items():
        print(f"{kind:>10}: largest propagated-feature norm {norm:.2f}")
    print(f"propagation_bound: {result.bound:g} ({BOUND_MARGIN:g} x {max(result.largest.values()):.2f}, rounded up)")
    if args.output is not None:
        args.output.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
