"""Calibrate a gated model's ``stage1_presence`` (the frame-level streak presence rule) for its weights.

    python -m vimpnet_ros.training.calibrate_presence --model vimpnet_lite_gated [--checkpoint W.pth]

Stage 1's per-pixel gate of a frame without streaks is mostly, but not all, closed: on a drive with raindrops
and no streaks, the little it leaves open lowers the frame far from any drop by several dB. The rule
``p_t = clamp((mean(g_t) - low) / (high - low), 0, 1)`` (:class:`~vimpnet_ros.model.VimpNet`) closes it for a
whole frame whose gate averages below ``low``. This finds ``(low, high)`` on renders of the *training*
distribution (road scenes of the ``default`` preset, seed ``CALIBRATION_SEED``, which no training config and
no test set uses), never on a test set:

1. each clean clip is rendered three ways: the rain preset (streaks and drops), drops only, and no rain
   (camera noise and JPEG); each frame is restored as the node does (the window ending at it);
2. for every ``(low, high)`` on the grid, stage 1's output ``lq + p_t (stage1 - lq)`` is scored against
   stage 1's target (the rendered frame with its drops, without streaks): PSNR per frame, mean per kind;
3. the choice keeps the rainy frames as good as without the rule (their mean PSNR at most
   ``RAIN_TOLERANCE_DB`` below) and, among those, leaves the streak-free frames best (the mean of the
   drops-only and no-rain means); ties go to the smaller ``low``, then ``high``. A mean of PSNRs over all
   kinds would not do: a dB on a streak-free frame near 55 dB stands for a far smaller error than a dB on
   a rainy frame near 30 dB, so that mean buys the last streak-free frames with real losses on rainy ones
   (it picks (0.19, 0.20) for the shipped weights, 0.16 dB down on rain).

It prints the table (the rule off first) and the choice; ``--output`` also writes them as JSON. The choice goes
into the model's registered config (``vimpnet_ros/model/config.py``) by hand, with the command in a comment.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from vimpnet_ros.data import RenderedVideo, load_rain_config, make_road_clip, render_video
from vimpnet_ros.data.rain.config import RainConfig
from vimpnet_ros.data.road_scene import road_preset
from vimpnet_ros.engine import EngineConfig
from vimpnet_ros.errors import ConfigError, VimpnetError
from vimpnet_ros.evaluation.metrics import capped_psnr, to_uint8
from vimpnet_ros.model.checkpoint import load_model

T = TypeVar("T")

#: Renders of the training distribution no training config and no test set draws from.
CALIBRATION_SEED = 77
#: Candidate ``low`` values (frame gate means) and ramp widths ``high - low``.
LOWS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(0, 21))
WIDTHS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1)
KINDS: tuple[str, ...] = ("rain", "drops_only", "no_rain")
#: How far below the rule-off PSNR of the rainy frames a candidate may score (the table's rounding).
RAIN_TOLERANCE_DB = 0.01


@dataclass(frozen=True)
class Calibration:
    """Mean stage-1 PSNR (dB) per kind for each candidate and for the rule off; the chosen ``(low, high)``
    (None when every candidate costs the rainy frames more than ``RAIN_TOLERANCE_DB``)."""

    off: dict[str, float]
    table: dict[tuple[float, float], dict[str, float]]
    choice: tuple[float, float] | None

    def to_dict(self) -> dict[str, object]:
        """JSON-able: candidates as ``"low,high"`` keys."""
        return {
            "off": self.off,
            "table": {f"{low},{high}": scores for (low, high), scores in self.table.items()},
            "choice": None if self.choice is None else list(self.choice),
        }


def kind_configs(rain: RainConfig) -> dict[str, RainConfig]:
    """The three renderings of a clean clip: ``rain`` as given, its drops alone, and no rain at all."""
    return {"rain": rain, "drops_only": rain.without(streaks=True), "no_rain": rain.without(streaks=True, drops=True)}


def calibration_videos(
    rain: RainConfig, clips: int, frames: int, size: tuple[int, int], seed: int = CALIBRATION_SEED
) -> Iterator[tuple[str, RenderedVideo]]:
    """(kind, rendered video) for ``clips`` road clips of the ``default`` preset, ``frames`` frames at ``size``
    (w, h), each rendered the three ways of :func:`kind_configs`: the calibration renders of every rule."""
    for item in range(clips):
        clean = make_road_clip(frames, size, np.random.default_rng([seed, item]), road_preset("default"))
        for number, (kind, config) in enumerate(kind_configs(rain).items()):
            yield kind, render_video(clean, config, np.random.default_rng([seed, item, number]))


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every calibration command shares: the model and weights, and the renders of
    :func:`calibration_videos` and the window they are restored with."""
    parser.add_argument("--model", default=EngineConfig().model)
    parser.add_argument("--checkpoint", type=Path, help="weights (default: the package's for --model)")
    parser.add_argument("--rain", default="wide", help="rain preset or YAML of the training data (default: wide)")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=[224, 160], metavar=("W", "H"))
    parser.add_argument("--window", type=int, default=EngineConfig().window_size)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())


def run_calibration(args: argparse.Namespace, measure: Callable[..., T]) -> T | None:
    """``measure(model, rain, clips, frames, size, window)`` with the model, weights and renders that the
    :func:`add_calibration_arguments` options name, on ``--threads`` threads; None, the reason printed, when the
    model, its weights or the rain cannot load."""
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.checkpoint, args.model).eval()
        return measure(model, load_rain_config(args.rain), args.clips, args.frames, tuple(args.size), args.window)
    except VimpnetError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def candidates(lows: Sequence[float] = LOWS, widths: Sequence[float] = WIDTHS) -> list[tuple[float, float]]:
    """Every ``(low, low + width)`` with ``high <= 1``."""
    return [(low, round(low + width, 4)) for low in lows for width in widths if low + width <= 1.0]


def frame_psnr(image: np.ndarray, target: np.ndarray) -> float:
    """PSNR (dB) of ``image`` (h, w, 3) float in [0, 1], as the node would publish it, against uint8 ``target``;
    capped (a frame left exactly as its target scores the cap, not inf)."""
    return capped_psnr(to_uint8(image), target)


def restored_frames(
    model: torch.nn.Module, lq: np.ndarray, window: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray, float]]:
    """For each frame from the ``window``-th on: (index, lq (h, w, 3), stage 1 without the rule, gate mean).

    ``lq``: (t, h, w, 3) uint8; the window ends at the frame, as the node's latest-frame output.
    """
    clip = torch.from_numpy(lq).permute(0, 3, 1, 2).float().div(255.0)[None]
    with torch.no_grad():
        for index in range(window - 1, clip.shape[1]):
            output, gate = model(clip[:, index - window + 1 : index + 1], with_gate=True)
            if gate is None:
                raise ConfigError("stage1_presence calibrates a gated model (a config with gated_residuals)")
            stage1 = output.stage1[0, -1].permute(1, 2, 0).numpy().astype(np.float64)
            yield index, clip[0, index].permute(1, 2, 0).numpy().astype(np.float64), stage1, float(gate[0, -1].mean())


def calibrate(
    model: torch.nn.Module,
    rain: RainConfig,
    clips: int,
    frames: int,
    size: tuple[int, int],
    window: int,
    grid: Sequence[tuple[float, float]],
    seed: int = CALIBRATION_SEED,
) -> Calibration:
    """Score every candidate on ``clips`` rendered clips of ``frames`` frames at ``size`` (w, h); see the module."""
    scores: dict[str, dict[tuple[float, float] | None, list[float]]] = {
        kind: {key: [] for key in [None, *grid]}
        for kind in KINDS  # key None: the rule off
    }
    rule, model.stage1_presence = model.stage1_presence, None  # stage 1 as trained; each candidate's rule below
    try:
        for kind, video in calibration_videos(rain, clips, frames, size, seed):
            for index, lq, stage1, gate_mean in restored_frames(model, video.lq, window):
                target = video.drop[index]
                scores[kind][None].append(frame_psnr(stage1, target))
                for low, high in grid:
                    presence = min(1.0, max(0.0, (gate_mean - low) / (high - low)))
                    scores[kind][(low, high)].append(frame_psnr(lq + presence * (stage1 - lq), target))
    finally:
        model.stage1_presence = rule
    means = {kind: {key: float(np.mean(psnrs)) for key, psnrs in by_key.items()} for kind, by_key in scores.items()}
    off = {kind: means[kind][None] for kind in KINDS}
    table = {key: {kind: means[kind][key] for kind in KINDS} for key in grid}
    return Calibration(off=off, table=table, choice=choose(off, table))


def choose(off: dict[str, float], table: dict[tuple[float, float], dict[str, float]]) -> tuple[float, float] | None:
    """The candidate of step 3 (module docstring), None when none keeps the rainy frames."""
    keeps_rain = [key for key, scores in table.items() if scores["rain"] >= off["rain"] - RAIN_TOLERANCE_DB]
    if not keeps_rain:
        return None
    return max(keeps_rain, key=lambda key: (streak_free(table[key]), -key[0], -key[1]))


def streak_free(scores: dict[str, float]) -> float:
    """The mean PSNR of the drops-only and no-rain kinds, to 0.01 dB."""
    return round((scores["drops_only"] + scores["no_rain"]) / 2.0, 2)


def format_table(result: Calibration) -> str:
    """The table as printed: the rule off, then each candidate, the choice marked."""
    lines = [f"{'low':>5} {'high':>5} " + " ".join(f"{kind:>10}" for kind in KINDS) + f" {'no streaks':>10}"]

    def row(label: str, scores: dict[str, float], mark: str = "") -> str:
        values = " ".join(f"{scores[kind]:10.2f}" for kind in KINDS)
        return f"{label} {values} {streak_free(scores):10.2f}{mark}"

    lines.append(row(f"{'off':>11}", result.off))
    for (low, high), scores in result.table.items():
        lines.append(row(f"{low:5.2f} {high:5.2f}", scores, "  <- chosen" if (low, high) == result.choice else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Calibrate and print; exit 2 on a bad argument."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_calibration_arguments(parser)
    parser.add_argument("--output", type=Path, help="also write the table and the choice as JSON")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.window < 2 or args.frames < args.window:
        print("need --clips >= 1, --window >= 2 and --frames >= --window", file=sys.stderr)
        return 2
    result = run_calibration(args, lambda model, *renders: calibrate(model, *renders, grid=candidates()))
    if result is None:
        return 2
    print(format_table(result))
    print(f"stage1_presence: {result.choice}" if result.choice else "stage1_presence: none (every rule costs rain)")
    if args.output is not None:
        args.output.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
