"""``vimpnet-ros bag-record``: record ROS topics into a rosbag2 and report end-to-end latency per topic."""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

#: Printed once every topic has a matched publisher (scripts and tests wait for it before publishing).
MATCHED_LINE = "all topics matched"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Output, topics, storage, when to stop."""
    parser.add_argument("output", help="bag folder to create")
    parser.add_argument("topics", nargs="+", help="absolute topic names, e.g. /camera/derained/image")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument(
        "--reliability",
        choices=("auto", "reliable", "best_effort"),
        default="auto",
        help="subscription QoS (auto: as the publishers offer)",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="stop when nothing arrived for this many seconds (after the first message)",
    )
    parser.add_argument("--count", type=int, default=None, help="stop after this many messages on the first topic")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUTPUT")
    parser.add_argument(
        "--distro",
        choices=("humble", "jazzy", "kilted"),
        default=None,
        help="bag format of this ROS distro (default: $ROS_DISTRO, else kilted)",
    )
    parser.add_argument("--stats", type=Path, default=None, help="write a JSON summary (counts, rates, latency)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Record until a stop condition or Ctrl-C / SIGTERM; the bag is complete either way."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from vimpnet_ros.bags.record import BagRecorder
    from vimpnet_ros.bags.stats import Percentiles

    recorder = BagRecorder(
        args.output,
        args.topics,
        storage=args.storage,
        reliability=args.reliability,
        overwrite=args.overwrite,
        distro=args.distro,
    )
    rclpy.init()
    signal.signal(signal.SIGTERM, _interrupt)  # finish the bag on SIGTERM too (process managers, timeouts)
    node = rclpy.create_node("vimpnet_bag_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    recorder.attach(node)
    started = time.monotonic()
    first_topic = args.topics[0]
    print(f"recording {', '.join(args.topics)} to {args.output}", flush=True)
    announced = False
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
            if not announced and recorder.all_matched():
                print(f"{MATCHED_LINE} ({time.monotonic() - started:.1f} s)", flush=True)
                announced = True
            now = time.monotonic()
            if args.duration is not None and now - started >= args.duration:
                break
            if args.count is not None and recorder.stats.count(first_topic) >= args.count:
                break
            if args.idle_timeout is not None and recorder.idle_for(args.idle_timeout):
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stats = recorder.close()
        node.destroy_node()
        rclpy.try_shutdown()
    for topic in args.topics:
        record = stats.topics.get(topic)
        if record is None:
            print(f"  {topic}: nothing received{' (' + stats.skipped[topic] + ')' if topic in stats.skipped else ''}")
            continue
        latency = Percentiles.of(record.latencies_ms())
        text = f"  {topic}: {len(record.arrivals)} msgs, {record.rate_hz():.2f} Hz"
        if latency.count:
            text += f", latency p50 {latency.p50:.1f} ms p95 {latency.p95:.1f} ms max {latency.max:.1f} ms"
        print(text)
    if args.stats is not None:
        args.stats.parent.mkdir(parents=True, exist_ok=True)
        args.stats.write_text(json.dumps(stats.to_dict(), indent=2))
    return 0
