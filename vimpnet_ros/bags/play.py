"""Live replay of a rosbag2 onto ROS topics (the pip-installed ROS has no ``ros2 bag play``).

Messages are published as the recorded CDR bytes (exact: no conversion), at the
recorded rate, a multiple of it, or as fast as possible, optionally with
``/clock`` for nodes that run on ``use_sim_time``. With ``restamp`` every header
stamp is replaced by the wall-clock time of publishing (messages that shared a
stamp, like an image and its camera_info, still share the new one), so a
receiver measures true end-to-end latency as receive time minus header stamp;
:attr:`PlayStats.stamp_map` maps the new stamps back to the recorded ones.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vimpnet_ros.bags.io import BagReader
from vimpnet_ros.bags.stats import Percentiles, cdr_header_stamp, cdr_replace_header_stamp, has_header_first
from vimpnet_ros.errors import BagError, ConfigError

LOGGER = logging.getLogger(__name__)

RELIABILITIES: tuple[str, ...] = ("reliable", "best_effort")


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Type`` (BagError when its Python package is not installed)."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as error:
        raise BagError(
            f"cannot publish {msgtype}: its Python message package '{package}' is not installed in this environment"
        ) from error


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    """``["/a:=/b", ...]`` -> {"/a": "/b"}; both sides must be absolute topic names."""
    remaps: dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition(":=")
        if not sep or not source.startswith("/") or not target.startswith("/"):
            raise ConfigError(f"remap {item!r} must look like /bag/topic:=/published/topic (absolute names)")
        remaps[source] = target
    return remaps


@dataclass(frozen=True)
class PlayOptions:
    """How to replay.

    ``rate``: speed factor (1 = recorded rate); ``0`` = as fast as possible.
    ``topics``: bag topics to play (None = all). ``remap``: bag topic -> published topic.
    ``clock``: publish ``/clock`` (bag time) at ``clock_hz`` and before every message.
    ``restamp``: replace header stamps by the publish time (see module docstring).
    ``wait_for_subscribers``: published topics that need at least one matched
    subscriber before playing starts (waits up to ``wait_timeout_s``).
    ``start_offset_s`` / ``duration_s``: play only part of the bag (bag time).
    """

    rate: float = 1.0
    topics: tuple[str, ...] | None = None
    remap: Mapping[str, str] = field(default_factory=dict)
    clock: bool = False
    clock_hz: float = 50.0
    restamp: bool = False
    reliability: str = "reliable"
    depth: int = 100
    wait_for_subscribers: tuple[str, ...] = ()
    wait_timeout_s: float = 60.0
    start_offset_s: float = 0.0
    duration_s: float | None = None
    distro: str = "auto"
    linger_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.rate >= 0:
            raise ConfigError(f"play rate must be >= 0 (0 = as fast as possible), got {self.rate}")
        if self.reliability not in RELIABILITIES:
            raise ConfigError(f"play reliability must be one of {', '.join(RELIABILITIES)}, got {self.reliability!r}")
        if self.depth < 1:
            raise ConfigError(f"play QoS depth must be >= 1, got {self.depth}")
        if not self.clock_hz > 0:
            raise ConfigError(f"clock rate must be > 0 Hz, got {self.clock_hz}")


@dataclass
class PlayStats:
    """What a replay did. ``lateness_ms``: publish time minus scheduled time (player overload)."""

    messages: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    bag_s: float = 0.0
    lateness_ms: Percentiles = field(default_factory=lambda: Percentiles.of([]))
    #: published (restamped) header stamp -> recorded stamp [ns]; empty without restamp.
    stamp_map: dict[int, int] = field(default_factory=dict)
    interrupted: bool = False
    #: speed factor played at (0 = as fast as possible)
    rate: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the stamp map as a list of [published, recorded] pairs)."""
        return {
            "messages": dict(self.messages),
            "wall_s": self.wall_s,
            "bag_s": self.bag_s,
            "lateness_ms": self.lateness_ms.to_dict(),
            "stamp_map": [[k, v] for k, v in sorted(self.stamp_map.items())],
            "interrupted": self.interrupted,
            "rate": self.rate,
        }


class BagPlayer:
    """Publish a bag's messages on a given rclpy node. Cheap to build; :meth:`play` opens the bag."""

    def __init__(self, bag: str | Path, options: PlayOptions | None = None) -> None:
        self.bag = Path(bag)
        self.options = options or PlayOptions()
        self._stop = False

    def stop(self) -> None:
        """Ask a running :meth:`play` to end after the current message (thread-safe)."""
        self._stop = True

    def _qos(self) -> Any:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self.options.depth,
            reliability=reliability[self.options.reliability],
            durability=DurabilityPolicy.VOLATILE,
        )

    def _wait_for_subscribers(self, publishers: Mapping[str, Any]) -> None:
        """Block until every topic in ``wait_for_subscribers`` has a matched subscriber."""
        pending = [t for t in self.options.wait_for_subscribers if t in publishers]
        unknown = [t for t in self.options.wait_for_subscribers if t not in publishers]
        if unknown:
            raise BagError(f"cannot wait for subscribers of {unknown}: not published; published: {sorted(publishers)}")
        deadline = time.monotonic() + self.options.wait_timeout_s
        while pending:
            pending = [t for t in pending if publishers[t].get_subscription_count() == 0]
            if not pending:
                break
            if self._stop:
                return
            if time.monotonic() > deadline:
                raise BagError(
                    f"no subscriber appeared on {', '.join(pending)} within {self.options.wait_timeout_s:.0f} s; "
                    "is the node running on the same ROS_DOMAIN_ID?"
                )
            time.sleep(0.05)
        if self.options.wait_for_subscribers:
            LOGGER.info("subscribers matched on %s", ", ".join(self.options.wait_for_subscribers))

    def play(self, node: Any, on_message: Callable[[str, int], None] | None = None) -> PlayStats:
        """Replay on ``node`` (an rclpy Node); returns when the bag (or the selected part) is done.

        ``on_message(published_topic, stamp_ns)`` is called after each publish.
        """
        options = self.options
        stats = PlayStats(rate=options.rate)
        with BagReader(self.bag, options.distro) as reader:
            topics = [t.name for t in reader.topics()] if options.topics is None else list(options.topics)
            for topic in topics:
                reader.topic_type(topic)  # BagError listing the bag's topics if missing
            for source in options.remap:
                if source not in topics:
                    raise BagError(f"remap source {source} is not a played topic; played: {', '.join(topics)}")
            qos = self._qos()
            publishers: dict[str, Any] = {}
            header_first: dict[str, bool] = {}
            for topic in topics:
                msgtype = reader.topic_type(topic)
                target = options.remap.get(topic, topic)
                publishers[target] = node.create_publisher(message_class(msgtype), target, qos)
                header_first[topic] = has_header_first(reader.typestore, msgtype)
            clock_pub = None
            if options.clock:
                from rclpy.qos import QoSProfile
                from rosgraph_msgs.msg import Clock

                clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10))
            self._wait_for_subscribers({**publishers, **({"/clock": clock_pub} if clock_pub is not None else {})})

            bag_start = reader.start_time + int(options.start_offset_s * 1e9)
            bag_end = None if options.duration_s is None else bag_start + int(options.duration_s * 1e9)
            lateness: list[float] = []
            restamped: dict[int, int] = {}
            wall_start = time.monotonic()
            next_clock = wall_start
            last_bag_time = bag_start
            for message in reader.messages(topics):
                if self._stop:
                    stats.interrupted = True
                    break
                if message.timestamp < bag_start:
                    continue
                if bag_end is not None and message.timestamp > bag_end:
                    break
                if options.rate > 0:
                    due = wall_start + (message.timestamp - bag_start) / 1e9 / options.rate
                    while (now := time.monotonic()) < due and not self._stop:
                        if clock_pub is not None and now >= next_clock:
                            sim = bag_start + int((now - wall_start) * options.rate * 1e9)
                            clock_pub.publish(_clock_message(sim))
                            next_clock = now + 1.0 / options.clock_hz
                        time.sleep(min(due - now, 0.002 if clock_pub is None else 1.0 / options.clock_hz))
                    lateness.append(max(0.0, (time.monotonic() - due) * 1e3))
                if clock_pub is not None:
                    clock_pub.publish(_clock_message(message.timestamp))
                raw = message.raw
                stamp = cdr_header_stamp(raw) if header_first[message.topic] else None
                if options.restamp and stamp is not None:
                    if stamp not in restamped:
                        new_stamp = time.time_ns()
                        while new_stamp in stats.stamp_map:  # keep the map one-to-one
                            new_stamp += 1
                        restamped[stamp] = new_stamp
                        stats.stamp_map[new_stamp] = stamp
                    stamp = restamped[stamp]
                    raw = cdr_replace_header_stamp(raw, stamp)
                target = options.remap.get(message.topic, message.topic)
                publishers[target].publish(raw)
                stats.messages[target] = stats.messages.get(target, 0) + 1
                last_bag_time = message.timestamp
                if on_message is not None:
                    on_message(target, stamp if stamp is not None else message.timestamp)
            stats.wall_s = time.monotonic() - wall_start
            stats.bag_s = (last_bag_time - bag_start) / 1e9
            stats.lateness_ms = Percentiles.of(lateness)
            if options.reliability == "reliable":
                from rclpy.duration import Duration

                for publisher in publishers.values():  # let reliable subscribers get the last messages
                    publisher.wait_for_all_acked(Duration(seconds=options.linger_s))
            for publisher in [*publishers.values(), *([clock_pub] if clock_pub is not None else [])]:
                node.destroy_publisher(publisher)
        return stats


def _clock_message(stamp_ns: int) -> Any:
    from rosgraph_msgs.msg import Clock

    message = Clock()
    message.clock.sec = int(stamp_ns // 1_000_000_000)
    message.clock.nanosec = int(stamp_ns % 1_000_000_000)
    return message
