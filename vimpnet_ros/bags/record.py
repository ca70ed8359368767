"""Record ROS topics into a rosbag2 and measure end-to-end latency on the way.

Subscriptions take the serialized CDR bytes (``raw=True``), which go into the bag
unchanged with the receive time as the bag timestamp. Topics are subscribed as
soon as they appear in the ROS graph (their type is read from there), with the
publishers' reliability (``auto``: reliable only if every publisher is). For
messages that start with a ``std_msgs/Header`` the recorder keeps the pair
(header stamp, receive time): latency = receive time - header stamp, which is
the end-to-end latency when the source was stamped at capture (or restamped by
:mod:`vimpnet_ros.bags.play`). Like ``ros2 bag record``, the bag stores each
topic's offered QoS profiles as the graph reports its publishers, in the format
of the running distro (``$ROS_DISTRO``; Kilted for the PyPI wheels).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from vimpnet_ros.bags.io import BagWriter
from vimpnet_ros.bags.play import message_class
from vimpnet_ros.bags.stats import Percentiles, cdr_header_stamp, has_header_first
from vimpnet_ros.bags.typestore import make_typestore, running_distro
from vimpnet_ros.errors import BagError, ConfigError

LOGGER = logging.getLogger(__name__)

RELIABILITIES: tuple[str, ...] = ("auto", "reliable", "best_effort")


def offered_qos(profile: Any) -> Qos:
    """A publisher's rclpy ``QoSProfile`` (from ``get_publishers_info_by_topic``) as the bag stores it.

    rclpy's policy enums carry rmw's values, which rosbags' enums share; durations become
    (sec, nsec) as rmw splits them, so an unset one stays 9223372036 s + 854775807 ns.
    """

    def split(duration: Any) -> QosTime:
        sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
        return QosTime(sec, nsec)

    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=split(profile.deadline),
        lifespan=split(profile.lifespan),
        liveliness=QosLiveliness(int(profile.liveliness)),
        liveliness_lease_duration=split(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


@dataclass
class TopicRecord:
    """Per-topic arrivals: (header stamp or None, receive time [ns]) in arrival order."""

    msgtype: str
    arrivals: list[tuple[int | None, int]] = field(default_factory=list)

    def latencies_ms(self) -> list[float]:
        """Receive time minus header stamp for every message with a header [ms]."""
        return [(received - stamp) / 1e6 for stamp, received in self.arrivals if stamp is not None]

    def rate_hz(self) -> float:
        """Mean receive rate over the topic's first to last message (0 with fewer than 2)."""
        if len(self.arrivals) < 2:
            return 0.0
        span = (self.arrivals[-1][1] - self.arrivals[0][1]) / 1e9
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0


@dataclass
class RecordStats:
    """What a recording holds; :meth:`to_dict` gives counts, rates and latency percentiles per topic."""

    topics: dict[str, TopicRecord] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def count(self, topic: str) -> int:
        """Messages received on ``topic``."""
        record = self.topics.get(topic)
        return len(record.arrivals) if record else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {
            "topics": {
                name: {
                    "type": record.msgtype,
                    "count": len(record.arrivals),
                    "rate_hz": record.rate_hz(),
                    "latency_ms": Percentiles.of(record.latencies_ms()).to_dict(),
                }
                for name, record in sorted(self.topics.items())
            },
            "skipped": dict(self.skipped),
        }


class BagRecorder:
    """Subscribe to ``topics`` on an rclpy node and write what arrives to a bag.

    Cheap to build; :meth:`attach` opens the bag and starts discovery on a node the
    caller spins; :meth:`close` finishes the bag. Thread-safe: callbacks may run on a
    multi-threaded executor.
    """

    def __init__(
        self,
        output: str | Path,
        topics: Sequence[str],
        storage: str = "mcap",
        reliability: str = "auto",
        depth: int = 100,
        overwrite: bool = False,
        distro: str | None = None,
    ) -> None:
        if not topics:
            raise ConfigError("the recorder needs at least one topic")
        bad = [t for t in topics if not t.startswith("/")]
        if bad:
            raise ConfigError(f"record topics must be absolute names (start with '/'): {bad}")
        if reliability not in RELIABILITIES:
            raise ConfigError(f"record reliability must be one of {', '.join(RELIABILITIES)}, got {reliability!r}")
        self.output = Path(output)
        self.topics = list(dict.fromkeys(topics))
        self.storage = storage
        self.reliability = reliability
        self.depth = depth
        self.overwrite = overwrite
        #: Whose ``ros2 bag`` must read the bag (BagWriter's ``distro``); None: the running distro.
        self.distro = distro or running_distro()
        self.stats = RecordStats()
        self._writer: BagWriter | None = None
        self._node: Any = None
        self._subscriptions: dict[str, Any] = {}
        self._timer: Any = None
        self._lock = threading.Lock()
        self._last_message = 0.0
        self._header_first: dict[str, bool] = {}
        self._changed = threading.Condition(self._lock)

    def attach(self, node: Any) -> None:
        """Open the bag and subscribe (now, and later as topics appear) on ``node``."""
        self._writer = BagWriter(
            self.output,
            storage=self.storage,
            typestore=make_typestore(self.distro),
            overwrite=self.overwrite,
            distro=self.distro,
        )
        self._writer.open()
        self._node = node
        self._discover()
        self._timer = node.create_timer(0.1, self._discover)

    @property
    def subscribed(self) -> list[str]:
        """Topics subscribed so far."""
        return sorted(self._subscriptions)

    def all_matched(self) -> bool:
        """Every topic is subscribed and matched to at least one publisher."""
        return all(
            (sub := self._subscriptions.get(topic)) is not None and sub.get_publisher_count() > 0
            for topic in self.topics
        )

    def wait_matched(self, topics: Sequence[str], timeout_s: float) -> bool:
        """Block until every topic in ``topics`` is subscribed and matched to a publisher (spin elsewhere)."""
        deadline = time.monotonic() + timeout_s
        while True:
            subscriptions = [self._subscriptions.get(t) for t in topics]
            if all(s is not None and s.get_publisher_count() > 0 for s in subscriptions):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _qos_for(self, topic: str) -> Any:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        reliability = ReliabilityPolicy.RELIABLE
        if self.reliability == "best_effort":
            reliability = ReliabilityPolicy.BEST_EFFORT
        elif self.reliability == "auto":
            infos = self._node.get_publishers_info_by_topic(topic)
            if any(info.qos_profile.reliability != ReliabilityPolicy.RELIABLE for info in infos):
                reliability = ReliabilityPolicy.BEST_EFFORT
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self.depth,
            reliability=reliability,
            durability=DurabilityPolicy.VOLATILE,
        )

    def _discover(self) -> None:
        """Subscribe to wanted topics that have appeared in the graph."""
        pending = [t for t in self.topics if t not in self._subscriptions and t not in self.stats.skipped]
        if not pending or self._node is None or self._writer is None:
            return
        known = dict(self._node.get_topic_names_and_types())
        for topic in pending:
            types = known.get(topic)
            if not types:
                continue
            msgtype = types[0]
            if msgtype not in self._writer.typestore.fielddefs:
                self.stats.skipped[topic] = f"type {msgtype} is unknown to the bag typestore"
                LOGGER.warning("not recording %s: %s", topic, self.stats.skipped[topic])
                continue
            try:
                cls = message_class(msgtype)
            except BagError as error:
                self.stats.skipped[topic] = str(error)
                continue
            offered = [offered_qos(info.qos_profile) for info in self._node.get_publishers_info_by_topic(topic)]
            with self._lock:
                self.stats.topics[topic] = TopicRecord(msgtype)
                self._header_first[topic] = has_header_first(self._writer.typestore, msgtype)
                self._writer.connection(topic, msgtype, offered)  # as `ros2 bag record`: the offers at subscription
            self._subscriptions[topic] = self._node.create_subscription(
                cls, topic, lambda raw, t=topic: self._on_message(t, raw), self._qos_for(topic), raw=True
            )
            LOGGER.info("recording %s (%s)", topic, msgtype)

    def _on_message(self, topic: str, raw: bytes) -> None:
        received = time.time_ns()
        stamp = cdr_header_stamp(raw) if self._header_first.get(topic) else None
        with self._lock:
            if self._writer is None:
                return
            record = self.stats.topics[topic]
            self._writer.write_raw(topic, record.msgtype, received, raw)
            record.arrivals.append((stamp, received))
            self._last_message = time.monotonic()
            self._changed.notify_all()

    def wait_for(self, topic: str, count: int, timeout_s: float) -> bool:
        """Block until ``count`` messages of ``topic`` arrived (the node must be spun elsewhere)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.stats.count(topic) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
        return True

    def wait_for_stamp(self, topic: str, stamp_ns: int, timeout_s: float) -> bool:
        """Block until a message of ``topic`` with header stamp ``stamp_ns`` arrived (spin the node elsewhere)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                record = self.stats.topics.get(topic)
                if record is not None and any(stamp == stamp_ns for stamp, _ in record.arrivals):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))

    def idle_for(self, idle_s: float) -> bool:
        """True when at least one message arrived and none for the last ``idle_s`` seconds."""
        with self._lock:
            last = self._last_message
        return bool(last) and time.monotonic() - last >= idle_s

    def wait_idle(self, idle_s: float, timeout_s: float) -> bool:
        """Block until :meth:`idle_for` ``idle_s`` holds, or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while not self.idle_for(idle_s):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> RecordStats:
        """Stop subscribing and finish the bag; returns the statistics."""
        if self._node is not None:
            try:
                if self._timer is not None:
                    self._node.destroy_timer(self._timer)
                for subscription in self._subscriptions.values():
                    self._node.destroy_subscription(subscription)
            except Exception as error:  # the context may already be shut down (Ctrl-C): the bag still closes
                LOGGER.debug("while unsubscribing: %s", error)
        self._timer = None
        self._subscriptions.clear()
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        return self.stats

    def abort(self) -> None:
        """Stop and drop the bag (nothing half-written is left)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
