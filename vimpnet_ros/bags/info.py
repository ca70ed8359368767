"""What a rosbag2 holds, as ``ros2 bag info`` shows it (the PyPI ROS install has no ``ros2 bag``), and more.

:func:`read_bag_info` reads every message once through :class:`~vimpnet_ros.bags.io.BagReader`
(sqlite3 or MCAP), because neither storage records per-topic sizes: storage, metadata version and
distro, the time span, and per topic the type, message count, total and mean size, the rate from
the receive times, and for image topics the size and encoding of the first message (compressed
images: read from the image's own header, the pixels are not decoded).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vimpnet_ros.bags.io import BagMessage, BagReader
from vimpnet_ros.bags.typestore import COMPRESSED_TYPE, DISTROS, IMAGE_TYPE
from vimpnet_ros.errors import BagError, InputError
from vimpnet_ros.pipeline.decode import compressed_size

#: Storage files by suffix, for bags whose metadata does not name the storage.
STORAGE_SUFFIXES: dict[str, str] = {".mcap": "mcap", ".db3": "sqlite3"}


@dataclass
class TopicInfo:
    """One topic: type, count, bytes, first and last receive time [ns], and the first image's format."""

    name: str
    msgtype: str
    count: int = 0
    total_bytes: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    image: dict[str, Any] | None = None  # width, height, encoding (or format) of the first image; error if unreadable

    @property
    def mean_bytes(self) -> float | None:
        """Mean serialized message size [bytes]."""
        return self.total_bytes / self.count if self.count else None

    @property
    def rate_hz(self) -> float | None:
        """Messages per second over the topic's own span of receive times (None below two messages)."""
        if self.count < 2 or self.first_ns is None or self.last_ns is None or self.last_ns <= self.first_ns:
            return None
        return (self.count - 1) / ((self.last_ns - self.first_ns) / 1e9)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the derived mean size and rate."""
        return {**asdict(self), "mean_bytes": self.mean_bytes, "rate_hz": self.rate_hz}


@dataclass
class BagInfo:
    """A bag's summary: where it is, how it is stored, what it covers, and its topics."""

    path: str
    storage: str
    version: int | None
    ros_distro: str | None  # as the writer recorded it (``rosbags`` for bags written by that library)
    definitions: str  # the distro whose message definitions fill in where the bag carries none
    compression: str | None
    files: list[str]
    size_bytes: int
    message_count: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    topics: list[TopicInfo] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last message [s] (0 for an empty bag)."""
        return (self.end_ns - self.start_ns) / 1e9 if self.start_ns is not None and self.end_ns is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``--json``)."""
        data = {k: v for k, v in asdict(self).items() if k != "topics"}
        return {**data, "duration_s": self.duration_s, "topics": [t.to_dict() for t in self.topics]}


def first_image_format(message: Any, msgtype: str) -> dict[str, Any]:
    """Width, height and encoding of an Image, or width, height and format of a CompressedImage (header only)."""
    if msgtype == COMPRESSED_TYPE:
        try:
            kind, width, height = compressed_size(np.frombuffer(bytes(message.data), np.uint8))
        except InputError as error:
            return {"format": str(message.format), "error": str(error)}
        return {"width": width, "height": height, "format": str(message.format), "decoded_as": kind}
    return {"width": int(message.width), "height": int(message.height), "encoding": str(message.encoding)}


def _storage_of(path: Path, metadata: dict[str, Any]) -> tuple[str, list[Path]]:
    files = sorted(f for f in path.iterdir() if f.suffix in STORAGE_SUFFIXES)
    named = str(metadata.get("storage_identifier") or "")
    return named or (STORAGE_SUFFIXES[files[0].suffix] if files else "unknown"), files


def read_bag_info(path: str | Path, distro: str = "auto", progress: Callable[[int], None] | None = None) -> BagInfo:
    """Summarise the bag at ``path`` reading each message once; ``progress(n)`` is called per message read.

    BagError (one line) for a missing, unreadable or corrupt bag.
    """
    with BagReader(path, distro) as reader:
        metadata = reader.metadata
        storage, files = _storage_of(reader.path, metadata)
        version = metadata.get("version")
        info = BagInfo(
            path=str(reader.path),
            storage=storage,
            version=int(version) if str(version).isdigit() else None,
            ros_distro=str(metadata["ros_distro"]) if metadata.get("ros_distro") else None,
            definitions=reader.resolved_distro,
            compression=(
                f"{metadata.get('compression_format')} ({metadata.get('compression_mode')})"
                if str(metadata.get("compression_mode") or "").lower() not in ("", "none")
                else None
            ),
            files=[f.name for f in files],
            size_bytes=sum(f.stat().st_size for f in reader.path.iterdir() if f.is_file()),
        )
        topics = {t.name: TopicInfo(t.name, t.msgtype) for t in reader.topics()}
        try:
            for message in reader.messages():
                _count(topics[message.topic], message, reader)
                if progress is not None:
                    progress(1)
        except BagError:
            raise
        except Exception as error:  # storage back-ends raise their own types on a file corrupt past its index
            raise BagError(f"cannot read bag {reader.path} (corrupt file): {error}") from error
    info.topics = sorted(topics.values(), key=lambda t: t.name)
    stamps = [t for topic in info.topics for t in (topic.first_ns, topic.last_ns) if t is not None]
    info.message_count = sum(t.count for t in info.topics)
    info.start_ns, info.end_ns = (min(stamps), max(stamps)) if stamps else (None, None)
    return info


def _count(topic: TopicInfo, message: BagMessage, reader: BagReader) -> None:
    """Add one message to its topic's figures (and read the first image's format)."""
    topic.count += 1
    topic.total_bytes += len(message.raw)
    topic.first_ns = message.timestamp if topic.first_ns is None else min(topic.first_ns, message.timestamp)
    topic.last_ns = message.timestamp if topic.last_ns is None else max(topic.last_ns, message.timestamp)
    if topic.image is None and message.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE):
        try:
            topic.image = first_image_format(reader.deserialize(message), message.msgtype)
        except BagError as error:
            topic.image = {"error": str(error)}


def _size(size: float | None) -> str:
    """1536 -> ``1.5 KiB``."""
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _time(stamp_ns: int | None) -> str:
    if stamp_ns is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(stamp_ns // 1_000_000_000, datetime.UTC)
    seconds, nanoseconds = divmod(stamp_ns, 1_000_000_000)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{nanoseconds:09d} UTC ({seconds}.{nanoseconds:09d})"


def image_text(image: dict[str, Any] | None) -> str:
    """``1280x720 rgb8`` / ``1280x720 jpeg`` / ``unreadable: ...`` for the image column."""
    if image is None:
        return ""
    if "width" not in image:
        return f"unreadable: {image.get('error')}"
    if "encoding" in image:
        return f"{image['width']}x{image['height']} {image['encoding']}"
    return f"{image['width']}x{image['height']} {image['decoded_as']} (format '{image['format']}')"


def format_bag_info(info: BagInfo) -> str:
    """The text ``vimpnet-ros bag-info`` prints: a header block, then one row per topic."""
    if info.ros_distro is None:
        distro = "not recorded"
    elif info.ros_distro not in DISTROS:
        distro = f"not recorded (the writer put '{info.ros_distro}')"
    else:
        distro = info.ros_distro
    version = f"metadata version {info.version}" if info.version is not None else "metadata version unknown"
    lines = [
        f"Bag:          {info.path}",
        f"Files:        {', '.join(info.files) or '-'}",
        f"Size:         {_size(info.size_bytes)}",
        f"Storage:      {info.storage}" + (f", compressed {info.compression}" if info.compression else ""),
        f"ROS distro:   {distro}",
        f"Format:       {version}; definitions the bag lacks are taken from {info.definitions}",
        f"Start:        {_time(info.start_ns)}",
        f"End:          {_time(info.end_ns)}",
        f"Duration:     {info.duration_s:.3f} s",
        f"Messages:     {info.message_count}",
        f"Topics:       {len(info.topics)}",
        "",
    ]
    header = ("topic", "type", "count", "size", "mean", "rate [Hz]", "first image")
    rows = [
        (
            t.name,
            t.msgtype,
            str(t.count),
            _size(t.total_bytes),
            _size(t.mean_bytes),
            "-" if t.rate_hz is None or not math.isfinite(t.rate_hz) else f"{t.rate_hz:.2f}",
            image_text(t.image),
        )
        for t in info.topics
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4, 5}
    for row in [header, *rows]:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
