"""``vimpnet-ros fleet``: derain many bags on Ray workers; per-bag output bags and reports, one fleet report."""

from __future__ import annotations

import argparse
from pathlib import Path

from vimpnet_ros.cli.arguments import add_node_settings_arguments, node_settings, topic_pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, output folder, Ray cluster and workers, segments, topics and node parameters."""
    from vimpnet_ros.fleet import DEFAULT_SEGMENT_S

    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="rosbag2 folders, folders holding bags (searched recursively) or globs ('runs/**/rain*'); "
                        "sqlite3 or MCAP, Humble, Jazzy or Kilted, mixed")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output folder: <bag>/derained, <bag>/report, fleet_report/; rerun with the same folder "
                        "to resume an interrupted run")  # fmt: skip
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. 'auto' or HEAD_IP:6379, as printed by `ray start --head`); "
                        "default: start Ray on this machine")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None,
                        help="workers, each holding one loaded model (default: one per GPU, else one per "
                        "--threads-per-worker CPU threads)")  # fmt: skip
    parser.add_argument("--threads-per-worker", type=int, default=1, help="CPU threads per worker (default 1)")
    parser.add_argument("--gpus-per-worker", type=float, default=None,
                        help="GPUs per worker (default: 1 where the cluster has GPUs, else 0)")  # fmt: skip
    parser.add_argument("--segment-s", type=float, default=DEFAULT_SEGMENT_S,
                        help="work unit length in seconds of bag time (default %(default)g; whole topics with "
                        "gating_enabled)")  # fmt: skip
    parser.add_argument("--topics", nargs="+", default=None,
                        help="camera topics to restore where a bag has them (default: every camera topic)")  # fmt: skip
    parser.add_argument("--gt", action="append", default=[], metavar="TOPIC=GT_TOPIC",
                        help="ground-truth image topic of a camera (repeatable; default <ns>/gt/image)")  # fmt: skip
    parser.add_argument("--gt-mask", action="append", default=[], metavar="TOPIC=MASK_TOPIC",
                        help="ground-truth raindrop-mask topic (repeatable; default <ns>/gt/drop_mask)")  # fmt: skip
    add_node_settings_arguments(parser)
    parser.add_argument("--distro", choices=("auto", "humble", "jazzy", "kilted"), default="auto",
                        help="message definitions for bags without them (default: from each bag)")  # fmt: skip
    parser.add_argument("--retries", type=int, default=3,
                        help="restarts of a dead worker, and retries of its units (default 3)")  # fmt: skip
    parser.add_argument("--samples", type=int, default=4, help="contact-sheet rows per bag report (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the fleet; print where the reports are; exit 1 when a bag failed (the others are done)."""
    from vimpnet_ros.fleet.plan import FleetOptions
    from vimpnet_ros.fleet.report import FLEET_REPORT, write_fleet_report
    from vimpnet_ros.fleet.run import run_fleet

    settings = node_settings(args)
    options = FleetOptions(
        output=args.output,
        address=args.address,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        segment_s=args.segment_s,
        topics=tuple(args.topics) if args.topics else None,
        gt=topic_pairs(args.gt, "--gt"),
        gt_masks=topic_pairs(args.gt_mask, "--gt-mask"),
        distro=args.distro,
        retries=args.retries,
        samples=args.samples,
        progress=not args.no_progress,
    )
    fleet = run_fleet(args.inputs, settings, options)
    report = write_fleet_report(fleet, settings, options)
    summary = report["summary"]
    print(
        f"{summary['bags_done']}/{summary['bags']} bags done, {summary['units_run']} units run, "
        f"{summary['units_resumed']} resumed, {summary['units_failed']} failed; "
        f"fleet report: {args.output / FLEET_REPORT / 'report.md'}"
    )
    for name, error in fleet.failed.items():
        print(f"failed: {name}: {error}")
    return 1 if fleet.failed else 0
