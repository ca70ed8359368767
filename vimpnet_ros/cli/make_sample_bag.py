"""``vimpnet-ros make-sample-bag``: render a short rainy drive with ground truth into a rosbag2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vimpnet_ros.cli.arguments import size_type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Output path, clip length and size, storage, seed."""
    parser.add_argument("output", help="bag folder to create (must not exist unless --overwrite)")
    parser.add_argument("--frames", type=int, default=40, help="number of frames (default 40)")
    parser.add_argument("--size", type=size_type(), default=(320, 192), help="WIDTHxHEIGHT (default 320x192)")
    parser.add_argument("--fps", type=float, default=10.0, help="camera rate: stamps are 1/fps apart (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same bag")
    parser.add_argument(
        "--source", choices=("road", "bundled"), default="road", help="procedural road drive or a bundled photo"
    )
    parser.add_argument("--image", default="motorcycle_left", help="bundled scikit-image photo (--source bundled)")
    parser.add_argument("--namespace", default="/camera", help="topic namespace (default /camera)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument("--compressed", action="store_true", help="store rainy frames as JPEG image/compressed")
    parser.add_argument(
        "--distro", choices=("humble", "jazzy", "kilted"), default="kilted", help="bag format of this ROS distro"
    )
    parser.add_argument("--rain-config", default=None, help="rain renderer YAML (default: the shipped one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUTPUT")


def run(args: argparse.Namespace) -> int:
    """Render and write the bag; print its topics."""
    from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag
    from vimpnet_ros.bags.stop import StopRequest

    config = SampleBagConfig(
        num_frames=args.frames,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        source=args.source,
        image=args.image,
        namespace=args.namespace,
        storage=args.storage,
        compressed=args.compressed,
        rain_config=args.rain_config,
        distro=args.distro,
    )
    started = time.monotonic()
    # SIGINT/SIGTERM: while rendering, stop at once (nothing written); while writing, finish the bag so far
    with StopRequest(deferred=False) as stop:
        try:
            topics = write_sample_bag(args.output, config, overwrite=args.overwrite, stop=stop)
        except KeyboardInterrupt:
            if not stop.requested:
                raise
    if stop.requested:
        written = stop.deferred and Path(args.output).exists()  # a second signal while writing drops the bag
        held = "holds the frames written before it" if written else "was not written"
        print(f"vimpnet-ros make-sample-bag: interrupted by {stop.name}; {args.output} {held}", file=sys.stderr)
        return stop.exit_code
    width, height = config.size
    print(
        f"wrote {args.output}: {config.num_frames} frames {width}x{height} at {config.fps:g} fps "
        f"({args.storage}) in {time.monotonic() - started:.1f} s"
    )
    for name, topic in vars(topics).items():
        print(f"  {name:14s} {topic}")
    return 0
