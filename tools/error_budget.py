#!/usr/bin/env python3
"""Where a restoration's remaining error lies: the drops, the streaks, or the rest of the frame.

Reads a rendered test set (VRDS layout with ``lq``, ``gt``, ``01drop`` and ``mstreak``, as
``vimpnet-ros evaluate --set`` renders them) and the frames a checkpoint restored from it
(``vimpnet-ros evaluate --save-frames DIR``), splits every pixel into the ground truth's drops,
the pixels a streak crosses (streak intensity at least ``--streak-level``, outside the drops)
and the rest, and prints for each region its share of the pixels, the input's and the output's
PSNR over it (squared errors pooled over the whole set) and its share of the output's squared
error. ``--fill-with-truth W`` first applies the engine's drop fill at weight W with the ground
truth's drop mask instead of the predicted one (give it frames saved with ``--drop-fill 0``):
what the fill would reach with a perfect mask. It prints the per-frame-mean PSNR gain overall
and inside the drops too, as ``evaluate`` does, so the two can be compared.

Usage::

    vimpnet-ros evaluate --set heldout --save-frames /tmp/heavy --output /tmp/heavy.json
    python tools/error_budget.py data/quality_sets/heldout_seed1000 /tmp/heavy/heldout

A developer's tool, not part of the package: the regions need the renderer's streak layer, which
only synthetic sets have.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimpnet_ros.data.layout import frame_name, read_frame, scan_vrds
from vimpnet_ros.engine import fill_drops
from vimpnet_ros.evaluation.metrics import psnr, psnr_in_mask, to_uint8
from vimpnet_ros.evaluation.vrds_eval import load_video

REGIONS = ("drops", "streaks", "rest")


@dataclass
class Budget:
    """Squared errors and pixel counts per region, pooled over frames; per-frame PSNRs for the gain."""

    input_error: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0.0))
    output_error: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0.0))
    pixels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0))
    gains: list[float] = field(default_factory=list)
    drop_gains: list[float] = field(default_factory=list)

    def add(self, lq: np.ndarray, output: np.ndarray, gt: np.ndarray, drops: np.ndarray, streaks: np.ndarray) -> None:
        """One frame: uint8 (h, w, 3) images, boolean (h, w) drop and streak masks."""
        regions = {"drops": drops, "streaks": streaks & ~drops, "rest": ~(drops | streaks)}
        err_in = ((lq.astype(np.float64) - gt) ** 2).sum(axis=2)
        err_out = ((output.astype(np.float64) - gt) ** 2).sum(axis=2)
        for name, region in regions.items():
            self.input_error[name] += float(err_in[region].sum())
            self.output_error[name] += float(err_out[region].sum())
            self.pixels[name] += int(region.sum()) * gt.shape[2]
        self.gains.append(psnr(output, gt) - psnr(lq, gt))
        if drops.any():
            self.drop_gains.append(psnr_in_mask(output, gt, drops) - psnr_in_mask(lq, gt, drops))

    def table(self) -> str:
        """The regions as a Markdown table, then the per-frame-mean gains."""
        total_out = sum(self.output_error.values())
        total_pixels = sum(self.pixels.values())
        lines = [
            "| region | pixels | input PSNR | output PSNR | share of the output's error |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name in REGIONS:
            n = self.pixels[name]
            lines.append(
                f"| {name} | {n / total_pixels:.1%} | {_pooled_psnr(self.input_error[name], n):.2f} dB | "
                f"{_pooled_psnr(self.output_error[name], n):.2f} dB | {self.output_error[name] / total_out:.1%} |"
            )
        drop_gain = float(np.mean(self.drop_gains)) if self.drop_gains else math.nan
        lines.append(
            f"\nper-frame mean over {len(self.gains)} frames: PSNR gain {np.mean(self.gains):+.2f} dB, "
            f"inside the drops {drop_gain:+.2f} dB"
        )
        return "\n".join(lines)


def _pooled_psnr(squared_error: float, values: int) -> float:
    """PSNR of a pooled squared error over ``values`` samples (inf for none or no error)."""
    return math.inf if values == 0 or squared_error == 0 else 10.0 * math.log10(255.0**2 * values / squared_error)


def budget(test_set: Path, restored: Path, streak_level: float = 0.1, fill_with_truth: float | None = None) -> Budget:
    """Score every frame of ``test_set`` that ``restored`` holds (``restored/<video>/<frame>.png``)."""
    index = scan_vrds(test_set, ["lq", "gt", "01drop", "mstreak"])
    result = Budget()
    for video in index.videos:
        lq, gt = to_uint8(load_video(video, "lq")), to_uint8(load_video(video, "gt"))
        drops = load_video(video, "01drop") >= 0.5
        streaks = load_video(video, "mstreak") >= streak_level
        for i in range(len(gt)):
            path = restored / video.name / frame_name(i)
            if not path.is_file():
                continue
            output = to_uint8(read_frame(path, "gt"))
            if fill_with_truth is not None:
                output = fill_drops(output, drops[i].astype(np.uint8) * 255, fill_with_truth)
            result.add(lq[i], output, gt[i], drops[i], streaks[i])
    if not result.gains:
        raise SystemExit(f"no frames of {test_set} found under {restored}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_set", type=Path, help="a rendered set with lq/, gt/, 01drop/ and mstreak/")
    parser.add_argument("restored", type=Path, help="its restored frames: <video>/<frame>.png")
    parser.add_argument("--streak-level", type=float, default=0.1, help="streak intensity that counts as a streak")
    parser.add_argument(
        "--fill-with-truth", type=float, metavar="W", help="apply the drop fill at weight W with the true drop mask"
    )
    args = parser.parse_args(argv)
    print(budget(args.test_set, args.restored, args.streak_level, args.fill_with_truth).table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
