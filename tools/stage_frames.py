#!/usr/bin/env python3
"""Frame by frame, what each stage of a gated model does to one video of a rendered test set.

Restores every frame of one video as the node streams it (the latest frame of a window of ``--window``
frames, a stream's first frames from reflected windows, as ``evaluate --output-frame latest`` builds them) and
prints for each frame its input PSNR and the gain (dB) of stage 1, of the output and of the output with
the engine's drop fill, over the whole frame and outside the ground truth's drops (PSNR capped at 100 dB,
as ``evaluate`` caps a clean frame's), with stage 1's mean gate and streak presence p_t.
``--presence LOW HIGH`` replaces the model config's rule, as ``calibrate_presence`` tries its candidates.
This is where ``evaluate``'s "frames worse" come from: which stage takes the decibels, on which frames.

Usage::

    python tools/stage_frames.py CHECKPOINT data/quality_sets/light_seed1001 0006_road_day

A developer's tool, not part of the package: it reads the renderer's streams (``lq``, ``gt``,
``01drop``), which only synthetic sets have, and runs the model on whole frames on the CPU.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vimpnet_ros.data.layout import scan_vrds
from vimpnet_ros.engine import fill_drops
from vimpnet_ros.evaluation.metrics import MAX_PSNR_DB, capped_psnr, psnr_outside_mask, to_uint8
from vimpnet_ros.evaluation.vrds_eval import load_video, model_windows
from vimpnet_ros.model.checkpoint import load_model


@dataclass(frozen=True)
class FrameStages:
    """One frame: input PSNR, the gains (dB) of stage 1, the output and the filled output, overall and
    outside the ground truth's drops, stage 1's mean gate and its streak presence (None without a rule)."""

    name: str
    input_psnr: float
    stage1: float
    output: float
    filled: float
    stage1_outside: float
    filled_outside: float
    gate: float
    presence: float | None

    def line(self) -> str:
        """The frame as one printed line."""
        presence = "-" if self.presence is None else f"{self.presence:.2f}"
        return (
            f"{self.name}  in {self.input_psnr:6.2f}  stage1 {self.stage1:+.3f}  output {self.output:+.3f}  "
            f"filled {self.filled:+.3f} | outside drops: stage1 {self.stage1_outside:+.3f}  "
            f"filled {self.filled_outside:+.3f} | gate {self.gate:.3f}  presence {presence}"
        )


def outside_psnr(image: np.ndarray, target: np.ndarray, drops: np.ndarray) -> float:
    """PSNR outside the drops, capped as :func:`~vimpnet_ros.evaluation.metrics.capped_psnr` caps a frame's."""
    return min(psnr_outside_mask(image, target, drops), MAX_PSNR_DB)


@torch.no_grad()
def stage_frames(model: torch.nn.Module, lq: np.ndarray, gt: np.ndarray, drops: np.ndarray, window: int,
                 names: list[str]) -> list[FrameStages]:  # fmt: skip
    """Per-frame stages of ``model`` on one video: ``lq``/``gt`` (t, h, w, 3) float in [0, 1], ``drops`` (t, h, w)."""
    rows = []
    for t, (indices, _) in enumerate(model_windows(len(lq), window, 1, "latest")):
        clip = torch.from_numpy(np.ascontiguousarray(lq[indices])).permute(0, 3, 1, 2)[None]
        out, gate = model(clip, with_gate=True)
        stage1 = to_uint8(out.stage1[0, -1].permute(1, 2, 0).numpy())
        output = to_uint8(out.output[0, -1].permute(1, 2, 0).numpy())
        mask = to_uint8(out.drop_mask[0, -1, 0].numpy())
        filled = fill_drops(output, mask)
        source, target, inside = to_uint8(lq[t]), to_uint8(gt[t]), drops[t]
        presence = None
        if gate is not None and model.stage1_presence is not None:
            presence = float(model.streak_presence(gate.transpose(1, 2))[0, 0, -1])
        base, base_outside = capped_psnr(source, target), outside_psnr(source, target, inside)
        rows.append(
            FrameStages(
                name=names[t],
                input_psnr=base,
                stage1=capped_psnr(stage1, target) - base,
                output=capped_psnr(output, target) - base,
                filled=capped_psnr(filled, target) - base,
                stage1_outside=outside_psnr(stage1, target, inside) - base_outside,
                filled_outside=outside_psnr(filled, target, inside) - base_outside,
                gate=float(gate[0, -1].mean()) if gate is not None else float("nan"),
                presence=presence,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print one line per frame of VIDEO in SET_DIR restored by CHECKPOINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="our checkpoint (.pth)")
    parser.add_argument("set_dir", type=Path, help="a rendered test set (VRDS layout with lq, gt, 01drop)")
    parser.add_argument("video", help="the video's folder name")
    parser.add_argument("--model", default="vimpnet_lite_gated", help="model config (default: %(default)s)")
    parser.add_argument("--window", type=int, default=5, help="frames per window (default: %(default)s)")
    parser.add_argument("--presence", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="the streak presence rule to run with (default: the model config's)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.checkpoint, args.model).eval()
    if args.presence is not None:
        model.stage1_presence = tuple(args.presence)
    videos = {video.name: video for video in scan_vrds(args.set_dir).videos}
    if args.video not in videos:
        print(f"no video {args.video!r} in {args.set_dir}; it has {sorted(videos)}", file=sys.stderr)
        return 2
    video = videos[args.video]
    names = [path.name for path in video.frames["gt"]]
    rows = stage_frames(model, load_video(video, "lq"), load_video(video, "gt"), load_video(video, "01drop"),
                        args.window, names)  # fmt: skip
    for row in rows:
        print(row.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
