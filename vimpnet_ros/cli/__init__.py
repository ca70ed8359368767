"""The ``vimpnet-ros`` command line.

Each subcommand lives in its own module of this package and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules import heavy
dependencies (torch, rclpy) inside ``run`` so ``vimpnet-ros --help`` stays fast
and works without ROS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from vimpnet_ros import __version__
from vimpnet_ros.errors import VimpnetError

#: (subcommand, module under vimpnet_ros.cli, one-line help). Order = help order.
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("info", "info", "show versions, configs and where the package's files are"),
    ("benchmark", "benchmark", "measure the model or the streaming engine; print a table, write JSON"),
    ("render", "render", "render synthetic rain over clean footage into a VRDS-layout training set"),
    ("train", "train", "train or fine-tune ViMP-Net from a YAML config (single process or torchrun DDP)"),
    ("evaluate", "evaluate", "score a checkpoint on a VRDS-layout test set: PSNR/SSIM as the reference, JSON"),
    ("make-sample-bag", "make_sample_bag", "render a short rainy drive with ground truth into a rosbag2"),
    ("bag-info", "bag_info", "list a rosbag2's storage, distro, time span and topics (types, counts, sizes, rates)"),
    ("bag-play", "bag_play", "publish a rosbag2 onto ROS topics at the recorded rate (optional /clock)"),
    ("bag-record", "bag_record", "record ROS topics into a rosbag2; report end-to-end latency"),
    ("bag-eval", "bag_eval", "derain every frame of a rosbag offline: output bag + report (PSNR/SSIM, latency)"),
    ("fleet", "fleet", "derain many bags on Ray workers: output bags, reports, a fleet report with rain timelines"),
    ("demo", "demo", "end-to-end demo: sample bag -> live node -> recorder -> report"),
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="vimpnet-ros",
        description="ViMP-Net video deraining for ROS 2: tools for inference, data, training and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"vimpnet_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vimpnet-ros``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        # Log records go through tqdm.write: a warning clears the progress bar, prints on its own line, and the bar
        # is drawn again below it, instead of the text being glued to the bar's line.
        with logging_redirect_tqdm():
            return int(args._run(args) or 0)
    except VimpnetError as error:
        print(f"vimpnet-ros {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
