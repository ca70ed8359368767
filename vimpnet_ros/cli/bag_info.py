"""``vimpnet-ros bag-info``: a bag's storage, distro, time span and topics (types, counts, sizes, rates)."""

from __future__ import annotations

import argparse
import json

from vimpnet_ros.cli.arguments import add_bag_distro_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bag, and how to print it."""
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or MCAP; Humble, Jazzy or Kilted)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    add_bag_distro_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while the bag is read")


def run(args: argparse.Namespace) -> int:
    """Read the bag once; print the summary; exit 2 with one line for a missing or corrupt bag."""
    from tqdm import tqdm

    from vimpnet_ros.bags.info import format_bag_info, read_bag_info

    with tqdm(unit="msg", desc="bag-info", disable=args.no_progress or None, leave=False) as bar:
        info = read_bag_info(args.bag, args.distro, progress=bar.update)
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_bag_info(info))
    return 0
