"""``vimpnet-ros bag-eval``: derain every frame of a rosbag offline; write an output bag and a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vimpnet_ros.cli.arguments import add_bag_distro_argument, add_node_settings_arguments, node_settings, topic_pairs

if TYPE_CHECKING:
    from vimpnet_ros.pipeline.settings import NodeSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Input bag, topics, node parameters, outputs."""
    parser.add_argument("bag", help="input rosbag2 folder (sqlite3 or MCAP; Humble, Jazzy or Kilted)")
    parser.add_argument(
        "--topics",
        nargs="+",
        default=None,
        help="camera topics (Image or CompressedImage) to restore (default: every camera topic)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("bag_eval_report"),
        help="report folder: report.json, report.md, plots, contact sheet (default bag_eval_report)",
    )
    parser.add_argument(
        "--output-bag",
        type=Path,
        default=None,
        help="output bag with inputs + derained images, masks, streak maps, RainStatus (default: <report>/output_bag)",
    )
    parser.add_argument("--no-output-bag", action="store_true", help="write only the report")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    parser.add_argument("--no-copy-input", action="store_true", help="leave the input topics out of the output bag")
    add_node_settings_arguments(parser)
    parser.add_argument(
        "--gt",
        action="append",
        default=[],
        metavar="TOPIC=GT_TOPIC",
        help="ground-truth image topic of a camera topic (repeatable; default <ns>/gt/image); never derained",
    )
    parser.add_argument(
        "--gt-mask",
        action="append",
        default=[],
        metavar="TOPIC=MASK_TOPIC",
        help="ground-truth raindrop-mask topic (mono8) of a camera topic (repeatable; default <ns>/gt/drop_mask)",
    )
    parser.add_argument("--max-frames", type=int, default=None, help="restore at most this many frames per topic")
    parser.add_argument("--samples", type=int, default=4, help="contact-sheet rows (default 4)")
    add_bag_distro_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    live = parser.add_argument_group(
        "live replay", "score a recording of the node's outputs (bag-record) made while bag-play --restamp played BAG"
    )
    live.add_argument("--recording", type=Path, default=None, help="bag recorded from the node's outputs")
    live.add_argument("--play-stats", type=Path, default=None, help="the JSON bag-play --stats wrote (stamp map)")
    live.add_argument(
        "--output-namespace", default=None, help="where the node published (default: the camera topic's namespace)"
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate; print a short summary; exit 2 with one line on bad input."""
    from vimpnet_ros.bags.stop import StopRequest
    from vimpnet_ros.evaluation.bag_eval import BagEvalOptions, evaluate_bag
    from vimpnet_ros.evaluation.report import REPORT_MD

    settings = node_settings(args)
    if args.recording is not None:
        return _run_live(args, settings)
    output_bag = None if args.no_output_bag else (args.output_bag or args.report / "output_bag")
    options = BagEvalOptions(
        image_topics=tuple(args.topics) if args.topics else None,
        output_bag=output_bag,
        storage=args.storage,
        copy_input=not args.no_copy_input,
        distro=args.distro,
        max_frames=args.max_frames,
        samples=args.samples,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        gt=topic_pairs(args.gt, "--gt"),
        gt_masks=topic_pairs(args.gt_mask, "--gt-mask"),
    )
    with StopRequest() as stop:  # SIGINT/SIGTERM: finish the frame in hand, then the bag and the report
        report = evaluate_bag(args.bag, args.report, settings, options, stop=stop)
    print(summary_lines(report.to_dict()))
    print(f"report: {args.report / REPORT_MD}" + (f"  output bag: {output_bag}" if output_bag else ""))
    if report.interrupted is not None:
        done, total = report.interrupted["frames_done"], report.interrupted["frames_total"]
        print(
            f"vimpnet-ros bag-eval: interrupted by {stop.name} after {done} of {total} frames; the output bag and "
            "the report hold the frames done",
            file=sys.stderr,
        )
        return stop.exit_code
    return 0


def summary_lines(report: dict) -> str:
    """A few lines per topic: frames, quality gain, latency, throughput."""
    lines = []
    for topic in report["topics"]:
        q, lat, rain = topic.get("quality") or {}, topic.get("latency_ms") or {}, topic.get("rain") or {}
        text = f"{topic['topic']}: {rain.get('restored', topic['frames_out'])}/{topic['frames_in']} frames restored"
        if rain.get("gated"):
            text += f", {rain['gated']} gated"
        if q.get("psnr_in") is not None:
            text += (
                f", PSNR {q['psnr_in']:.2f} -> {q['psnr_out']:.2f} dB ({q['psnr_gain']:+.2f}), "
                f"SSIM {q['ssim_in']:.4f} -> {q['ssim_out']:.4f}"
            )
        if q.get("frames_worse") is not None:
            text += f", {q['frames_worse']} frames worse (worst {q['worst_psnr_gain']:+.2f} dB)"
        if q.get("psnr_drop_gain") is not None:
            text += f", in drops {q['psnr_drop_gain']:+.2f} dB"
        if q.get("mask_iou") is not None:
            text += f", mask IoU {q['mask_iou']:.3f}"
        if rain.get("raindrop_coverage_mean") is not None:
            text += f", raindrop mask area {100 * rain['raindrop_coverage_mean']:.1f}%"
        if lat.get("p50") is not None:
            text += f", latency p50 {lat['p50']:.1f} ms p95 {lat['p95']:.1f} ms"
            text += f" (after {topic.get('warmup_frames', 0)} warm-up frames)"
        if topic.get("throughput_fps"):
            text += f", {topic['throughput_fps']:.2f} fps"
        if topic.get("rate_fraction") is not None:
            text += f", {100 * topic['rate_fraction']:.0f}% of frames at {topic.get('input_rate_hz') or 0:.1f} Hz"
        if not any(value is not None for value in q.values()):
            text += "; no ground truth, so no quality scores (the report says how to give it)"
        lines.append(text)
    return "\n".join(lines)


def _run_live(args: argparse.Namespace, settings: NodeSettings) -> int:
    """Score a live recording against BAG's ground truth (no engine runs here)."""
    from vimpnet_ros.errors import ConfigError
    from vimpnet_ros.evaluation.bag_eval import LiveRun, evaluate_recording
    from vimpnet_ros.evaluation.report import REPORT_MD

    if args.play_stats is None:
        raise ConfigError("--recording needs --play-stats: the JSON bag-play --restamp --stats wrote")
    run = LiveRun.from_play_stats(args.bag, args.play_stats, args.topics, args.output_namespace, args.distro)
    report = evaluate_recording(args.bag, args.recording, run, args.report, settings, samples=args.samples)
    print(summary_lines(report.to_dict()))
    print(f"report: {args.report / REPORT_MD}")
    return 0
