"""Restoration quality when the model is slower than the camera: PSNR at k x overload against the nominal rate.

A camera topic of a bag with ground truth (``vimpnet-ros make-sample-bag``) is replayed as the
node's worker sees it when one inference takes ``k`` camera periods: each turn restores the newest
of the ``k`` frames that arrived since the last one, the older ones (the last ``window_size``)
entering the temporal buffer as context and the rest skipped (latest wins), through the same
:func:`~vimpnet_ros.pipeline.camera.restore_turn` the node runs. Factor 1 is the nominal rate
(every frame restored). Reported per factor: PSNR of the restored frames against ground truth, of
the nominal run on the same frames, of the rainy input on them, and the buffer resets (a gap the
worker made by skipping is not one, so they stay at the camera's own gaps).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vimpnet_ros.bags.io import BagReader
from vimpnet_ros.benchmark.measure import machine_record
from vimpnet_ros.errors import BagError
from vimpnet_ros.evaluation.bag_eval import COMPRESSED_TYPE, decode_rgb8, gt_topics_for, select_image_topics
from vimpnet_ros.evaluation.metrics import psnr
from vimpnet_ros.pipeline.camera import CameraPipeline, SourceFrame, Turn, header_stamp_ns, restore_turn
from vimpnet_ros.pipeline.decode import decode_message
from vimpnet_ros.pipeline.outputs import to_rgb8
from vimpnet_ros.pipeline.settings import NodeSettings

LOGGER = logging.getLogger(__name__)


def read_clip(bag: Path, settings: NodeSettings) -> tuple[list[SourceFrame], dict[int, np.ndarray]]:
    """The first camera topic's frames (decoded, in bag order) and its ground truth by stamp."""
    with BagReader(bag) as reader:
        summaries = reader.topics()
        available = {t.name: t.msgtype for t in summaries}
        gt_topic = None
        for topic in select_image_topics(summaries, None, exclude=[n for n in available if "/gt/" in n]):
            gt_topic = gt_topics_for(topic, available, {}, {}).get("image")
            if gt_topic is not None:
                break
        if gt_topic is None:
            raise BagError(
                f"{bag} has no camera topic with ground truth (<ns>/gt/image); make one with make-sample-bag"
            )
        limits = settings.inputs.decode_limits
        frames: list[SourceFrame] = []
        truth: dict[int, np.ndarray] = {}
        for message in reader.messages([topic, gt_topic]):
            msg = reader.deserialize(message)
            if message.topic == gt_topic:
                truth[header_stamp_ns(msg.header)] = decode_rgb8(msg, message.msgtype, settings.inputs)
                continue
            decoded = decode_message(msg, message.msgtype == COMPRESSED_TYPE, limits)
            frames.append(SourceFrame(decoded, header_stamp_ns(msg.header), msg.header))
    return frames, truth


def replay(engine: Any, frames: Sequence[SourceFrame], settings: NodeSettings, factor: int) -> dict[str, Any]:
    """One overload run: ``{stamp: restored rgb8}`` of the restored frames, resets and window sizes."""
    camera = CameraPipeline(f"overload-{factor}", engine, lambda *_args, **_kw: None)
    capacity = settings.engine.window_size  # the node's pending frames per camera
    restored: dict[int, np.ndarray] = {}
    windows: list[int] = []
    for end in range(factor, len(frames) + 1, factor):
        arrived = frames[end - factor : end]
        kept = list(arrived[-capacity:])
        turn = Turn(camera, kept, skipped=len(arrived) - len(kept))
        for _, out in restore_turn(engine, [turn], settings, lambda end=end: frames[end - 1].stamp_ns):
            restored[out.stamp_ns] = out.rgb8
            windows.append(out.status.window_frames)
    return {"restored": restored, "resets": camera.counters.resets, "windows": windows}


def measure(bag: Path, settings: NodeSettings, factors: Sequence[int]) -> dict[str, Any]:
    """PSNR per overload factor against the nominal run (factor 1) on the same frames."""
    from vimpnet_ros.engine import InferenceEngine

    frames, truth = read_clip(bag, settings)
    engine = InferenceEngine(settings.engine)
    engine.load()
    try:
        nominal = replay(engine, frames, settings, 1)
        rainy = {f.stamp_ns: to_rgb8(f.frame.rgb, f.frame.white_level) for f in frames}
        rows = []
        for factor in factors:
            run = nominal if factor == 1 else replay(engine, frames, settings, factor)
            stamps = [s for s in run["restored"] if s in truth]
            rows.append(
                {
                    "factor": factor,
                    "restored_frames": len(run["restored"]),
                    "psnr_db": _mean_psnr(run["restored"], truth, stamps),
                    "nominal_psnr_db": _mean_psnr(nominal["restored"], truth, stamps),
                    "input_psnr_db": _mean_psnr(rainy, truth, stamps),
                    "resets": run["resets"],
                    "window_frames_mean": float(np.mean(run["windows"])) if run["windows"] else 0.0,
                }
            )
    finally:
        engine.close()
    return {"bag": str(bag), "frames": len(frames), "window_size": settings.engine.window_size, "factors": rows}


def _mean_psnr(images: dict[int, np.ndarray], truth: dict[int, np.ndarray], stamps: Sequence[int]) -> float:
    return float(np.mean([psnr(images[s], truth[s]) for s in stamps])) if stamps else float("nan")


@dataclass(frozen=True)
class OverloadBenchOptions:
    """What ``vimpnet-ros benchmark overload`` measures (its options; the command line fills them)."""

    bag: Path
    factors: tuple[int, ...]
    settings: NodeSettings
    output: Path | None = None


def run(options: OverloadBenchOptions) -> int:
    """``vimpnet-ros benchmark overload``: print the table and write the JSON."""
    settings = options.settings
    result = measure(options.bag, settings, options.factors)
    result["machine"] = machine_record(str(settings.engine.device))
    print(f"{result['bag']}: {result['frames']} frames, window {result['window_size']}")
    print("factor  restored  PSNR dB  nominal on the same frames  input  resets  mean window frames")
    for row in result["factors"]:
        print(
            f"{row['factor']:>6}  {row['restored_frames']:>8}  {row['psnr_db']:7.2f}  {row['nominal_psnr_db']:26.2f}  "
            f"{row['input_psnr_db']:5.2f}  {row['resets']:>6}  {row['window_frames_mean']:18.2f}"
        )
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0
