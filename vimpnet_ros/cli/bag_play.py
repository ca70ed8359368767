"""``vimpnet-ros bag-play``: publish a rosbag2 onto ROS topics at the recorded rate (pip ROS has no ``ros2 bag``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vimpnet_ros.cli.arguments import add_bag_distro_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Bag, speed, topics, remaps, clock, restamping."""
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or MCAP)")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1 = recorded rate)")
    speed.add_argument("--fast", action="store_true", help="as fast as possible (no timing)")
    parser.add_argument("--topics", nargs="+", default=None, help="bag topics to play (default: all)")
    parser.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish bag topic FROM as TO")
    parser.add_argument("--clock", action="store_true", help="publish /clock with the bag time (use_sim_time nodes)")
    parser.add_argument("--clock-hz", type=float, default=50.0, help="/clock rate between messages (default 50)")
    parser.add_argument(
        "--restamp", action="store_true", help="set header stamps to the publish time (for end-to-end latency)"
    )
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable", help="publisher QoS")
    parser.add_argument(
        "--wait-for-subscribers",
        nargs="+",
        default=[],
        metavar="TOPIC",
        help="published topics that need a subscriber before playing starts",
    )
    parser.add_argument("--wait-timeout", type=float, default=60.0, help="seconds to wait for those subscribers")
    parser.add_argument("--start-offset", type=float, default=0.0, help="skip this many seconds of the bag")
    parser.add_argument("--duration", type=float, default=None, help="play only this many seconds of the bag")
    add_bag_distro_argument(parser)
    parser.add_argument("--stats", type=Path, default=None, help="write a JSON summary (incl. the stamp map) here")


def run(args: argparse.Namespace) -> int:
    """Play the bag on a fresh node; Ctrl-C stops cleanly."""
    import rclpy

    from vimpnet_ros.bags.play import BagPlayer, PlayOptions, parse_remaps

    options = PlayOptions(
        rate=0.0 if args.fast else args.rate,
        topics=tuple(args.topics) if args.topics else None,
        remap=parse_remaps(args.remap),
        clock=args.clock,
        clock_hz=args.clock_hz,
        restamp=args.restamp,
        reliability=args.reliability,
        wait_for_subscribers=tuple(args.wait_for_subscribers),
        wait_timeout_s=args.wait_timeout,
        start_offset_s=args.start_offset,
        duration_s=args.duration,
        distro=args.distro,
    )
    player = BagPlayer(args.bag, options)
    rclpy.init()
    node = rclpy.create_node("vimpnet_bag_player")
    try:
        stats = player.play(node)
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    total = sum(stats.messages.values())
    lateness = stats.lateness_ms
    print(
        f"played {total} messages ({', '.join(f'{t}: {n}' for t, n in sorted(stats.messages.items()))}) "
        f"in {stats.wall_s:.2f} s for {stats.bag_s:.2f} s of bag"
    )
    if lateness.count:
        print(f"publish lateness p50 {lateness.p50:.1f} ms, p95 {lateness.p95:.1f} ms, max {lateness.max:.1f} ms")
    if args.stats is not None:
        args.stats.parent.mkdir(parents=True, exist_ok=True)
        args.stats.write_text(json.dumps(stats.to_dict(), indent=2))
    return 0
