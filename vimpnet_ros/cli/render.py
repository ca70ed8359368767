"""``vimpnet-ros render``: synthetic rain over clean footage, written as a VRDS-layout training set."""

from __future__ import annotations

import argparse
import logging
import time

from vimpnet_ros.cli.arguments import size_type
from vimpnet_ros.errors import InputError

_LOG = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Source, output, amount, size, seed, config and preview options."""
    parser.add_argument(
        "--source",
        choices=("road", "bundled", "folder", "video", "bag"),
        default="road",
        help="clean frames: procedural road scenes seen from a driving car (default), photos bundled with "
        "scikit-image moved by a virtual camera, a folder of images (or of sub-folders, one per recording), "
        "a video file, or a rosbag image topic",
    )
    parser.add_argument(
        "--scene",
        default="default",
        help="road scene preset (--source road): default, or heldout (the held-out test set's style)",
    )
    parser.add_argument("--input", metavar="PATH", help="folder, video file or rosbag (not for --source bundled)")
    parser.add_argument("--topic", metavar="TOPIC", help="sensor_msgs/Image or CompressedImage topic (--source bag)")
    parser.add_argument(
        "--images",
        metavar="NAMES",
        help="comma-separated bundled photos to use (--source bundled; default: all, in turn): "
        "motorcycle_left, motorcycle_right, rocket, astronaut, coffee, chelsea, camera, brick, grass, gravel",
    )
    parser.add_argument("--output", metavar="DIR", required=True, help="VRDS-layout folder to write")
    parser.add_argument("--videos", type=int, default=8, metavar="N", help="number of videos (default 8)")
    parser.add_argument("--frames", type=int, default=20, metavar="F", help="frames per video (default 20)")
    parser.add_argument(
        "--size",
        type=size_type(minimum=8),
        metavar="WxH",
        help="output frame size (default: 256x256 for road and bundled, the footage's own size otherwise)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed and inputs = same dataset")
    parser.add_argument(
        "--config",
        metavar="YAML",
        help="rain parameter ranges: a YAML file or a shipped preset (default, heldout); default: rain_default.yaml",
    )
    parser.add_argument("--preview", metavar="PNG", help="also write a contact sheet (rainy / clean / mask / streak)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --output")


def run(args: argparse.Namespace) -> int:
    """Render ``--videos`` rainy clips and write them with their five streams."""
    from tqdm import tqdm

    from vimpnet_ros.data.rain.config import load_rain_config
    from vimpnet_ros.data.synthesize import prepare_output, render_dataset, source_clips

    if args.videos < 1 or args.frames < 1:
        raise InputError(f"--videos and --frames must be >= 1, got {args.videos} and {args.frames}")
    size = args.size if args.size is not None or args.source not in ("road", "bundled") else (256, 256)
    config = load_rain_config(args.config)
    images = [name.strip() for name in args.images.split(",") if name.strip()] if args.images else None
    clips = source_clips(
        args.source,
        args.videos,
        args.frames,
        size,
        seed=args.seed,
        input_path=args.input,
        topic=args.topic,
        images=images,
        scene=args.scene,
    )
    output = prepare_output(args.output, args.overwrite)
    started = time.perf_counter()
    summary = render_dataset(
        clips,
        output,
        config,
        seed=args.seed,
        preview=args.preview,
        extra_metadata={
            "source": args.source,
            "scene": args.scene if args.source == "road" else None,
            "input": args.input,
            "topic": args.topic,
            "frames": args.frames,
            "size": list(size) if size else None,
        },
        progress=lambda items: tqdm(items, total=args.videos, unit="video", desc="render"),
    )
    elapsed = time.perf_counter() - started
    if len(summary.videos) < args.videos:
        _LOG.warning("the source held enough frames for %d of %d videos", len(summary.videos), args.videos)
    print(f"wrote {len(summary.videos)} videos ({summary.frames} frames) to {summary.output} in {elapsed:.1f} s")
    if summary.preview is not None:
        print(f"preview: {summary.preview}")
    return 0
