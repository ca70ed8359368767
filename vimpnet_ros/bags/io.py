"""Reading and writing rosbag2 recordings (sqlite3 and MCAP) with ``rosbags``.

:class:`BagReader` opens any rosbag2 that ``rosbags`` reads (Humble, Jazzy,
Kilted; sqlite3 or MCAP), fills in message definitions a Humble bag lacks, and
turns the library's exceptions into :class:`~vimpnet_ros.errors.BagError` with
the bag's topics in the message. When ``metadata.yaml`` and the storage files
disagree about a topic (QoS profiles or type hash), ``rosbags`` would silently
yield none of its messages; the reader then reads the storage's own topic records
instead, and fails loudly where it cannot.

:class:`BagWriter` writes a bag into a hidden temporary folder and moves it into
place only when closed without error, so a failed run never leaves a half-written
bag that looks valid. It writes what ``ros2 bag record`` of the target distro
writes: the metadata version, offered QoS profiles serialized for that version,
and RIHS01 type description hashes.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import (
    Connection,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.rosbag2.errors import WriterError
from rosbags.serde import SerdeError
from rosbags.typesys.store import Typestore

from vimpnet_ros.bags.typestore import DEFAULT_DISTRO, DISTROS, distro_for_bag, make_typestore
from vimpnet_ros.errors import BagError

LOGGER = logging.getLogger(__name__)

#: Output storage name -> rosbags plugin.
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

#: rosbag2 metadata version written for each target distro. Jazzy and Kilted write 9: offered QoS
#: profiles as a YAML list with named policies (https://github.com/ros2/rosbag2/pull/1476). Humble reads the
#: profiles only as a YAML string with integer policies and fails on version 9 ("bad conversion",
#: https://github.com/ros2/rosbag2/issues/2013); version 8 keeps that string form, and Humble decodes the
#: fields it knows (it has no version gate). rosbags writes versions 8 and 9 only.
BAG_VERSIONS: dict[str, int] = {"humble": 8, "jazzy": 9, "kilted": 9}

#: An unset QoS duration as the ROS graph reports it and ``ros2 bag record`` stores it
#: (RMW_DURATION_INFINITE: 9223372036 s + 854775807 ns).
QOS_INFINITE = QosTime(9_223_372_036, 854_775_807)

#: What ``ros2 bag record`` stores for a topic whose publisher uses the rclpy default profile
#: (reliable, volatile): the graph reports neither history nor depth, and unset durations as
#: infinite. Written for topics whose publisher QoS is not known; a reliable, volatile offer is
#: also what lets ``ros2 bag play`` reach both reliable and best-effort subscribers.
DEFAULT_OFFERED_QOS = Qos(
    history=QosHistory.UNKNOWN,
    depth=0,
    reliability=QosReliability.RELIABLE,
    durability=QosDurability.VOLATILE,
    deadline=QOS_INFINITE,
    lifespan=QOS_INFINITE,
    liveliness=QosLiveliness.AUTOMATIC,
    liveliness_lease_duration=QOS_INFINITE,
    avoid_ros_namespace_conventions=False,
)


@dataclass(frozen=True)
class TopicSummary:
    """One topic of a bag: name, message type and message count."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagMessage:
    """One message in bag order: ``timestamp`` is the bag's receive time [ns], ``raw`` the CDR bytes."""

    topic: str
    msgtype: str
    timestamp: int
    raw: bytes
    connection: Connection


def _read_metadata(path: Path) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` section of ``metadata.yaml`` ({} when absent or unreadable)."""
    try:
        data = yaml.safe_load((path / "metadata.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    info = data.get("rosbag2_bagfile_information")
    return info if isinstance(info, dict) else {}


def _offered_or_default(qos: Sequence[Qos]) -> list[Qos]:
    """The offered profiles to store: ``qos``, or :data:`DEFAULT_OFFERED_QOS` when none are known."""
    return list(qos) or [DEFAULT_OFFERED_QOS]


def _same_topic_record(listed: Connection, stored: Connection) -> bool:
    """Whether rosbags pairs a metadata.yaml topic with a storage topic record (rosbags 0.11's rule).

    ``rosbags.rosbag2.Reader.messages`` reads a listed topic only from storage records with the same
    name, type, serialization format and offered QoS profiles, and a type hash that is equal or
    missing on one side; a topic matching none yields no messages and no error. Repeated here so
    that the reader can see the problem when it opens the bag.
    """
    return (
        listed.topic == stored.topic
        and listed.msgtype == stored.msgtype
        and listed.ext == stored.ext
        and (not listed.digest or not stored.digest or listed.digest == stored.digest)
    )


def _topics_missing_from_storage(listed: Sequence[Connection], files: Sequence[Path]) -> list[str]:
    """Topics with messages in metadata.yaml whose record matches no topic record in the storage ``files``."""
    stored: list[Connection] = []
    for file in files:
        try:
            with Reader(file) as storage:
                stored.extend(storage.connections)
        except (ReaderError, OSError) as error:
            raise BagError(f"cannot read the storage file {file}: {error}") from error
    return sorted({c.topic for c in listed if c.msgcount and not any(_same_topic_record(c, other) for other in stored)})


#: How an MCAP file ends when it was closed properly (its magic bytes).
MCAP_MAGIC = b"\x89MCAP0\r\n"


def _mcap_is_cut(path: Path) -> bool:
    """Whether a file starts like an MCAP file but does not end like one (it was cut short)."""
    with path.open("rb") as handle:
        if handle.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            return False
        handle.seek(max(0, path.stat().st_size - len(MCAP_MAGIC)))
        return handle.read() != MCAP_MAGIC


def _copy_readable_mcap(bag: Path, files: Sequence[Path], info: Mapping[str, Any], folder: Path) -> int:
    """Copy ``bag`` into ``folder`` with every MCAP file rewritten from its records before the cut; messages kept.

    The official ``mcap`` reader streams records without the index a truncated file lacks; its
    writer gives the copy a new index. ``metadata.yaml`` is copied with the counts of the copy.
    """
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    counts: Counter[str] = Counter()
    for source in files:
        with source.open("rb") as reading, (folder / source.name).open("wb") as writing:
            writer = McapWriter(writing, compression=CompressionType.NONE)
            writer.start(profile="ros2", library="vimpnet_ros (repaired copy)")
            schemas: dict[int, int] = {}
            channels: dict[int, tuple[int, str]] = {}
            with contextlib.suppress(McapError, EOFError, ValueError):  # the cut: everything before it is kept
                for record in StreamReader(reading, skip_magic=False, emit_chunks=False).records:
                    if isinstance(record, Schema):
                        schemas[record.id] = writer.register_schema(record.name, record.encoding, record.data)
                    elif isinstance(record, Channel):
                        channel = writer.register_channel(
                            record.topic, record.message_encoding, schemas.get(record.schema_id, 0), record.metadata
                        )
                        channels[record.id] = (channel, record.topic)
                    elif isinstance(record, Message) and record.channel_id in channels:
                        channel, topic = channels[record.channel_id]
                        writer.add_message(channel, record.log_time, record.data, record.publish_time, record.sequence)
                        counts[topic] += 1
            writer.finish()
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    section = meta["rosbag2_bagfile_information"]
    for entry in section.get("topics_with_message_count") or []:
        entry["message_count"] = counts.get(entry.get("topic_metadata", {}).get("name", ""), 0)
    section["message_count"] = sum(counts.values())
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return sum(counts.values())


class BagReader:
    """A rosbag2 opened for reading; use as a context manager.

    ``distro`` ("auto", "humble", "jazzy", "kilted") decides the typestore used for
    messages whose definitions the bag does not carry (Humble sqlite3 bags).
    """

    def __init__(self, path: str | Path, distro: str = "auto") -> None:
        self.path = Path(path)
        if distro != "auto" and distro not in DISTROS:
            raise BagError(f"unknown ROS distro {distro!r}; choose auto or one of {', '.join(DISTROS)}")
        self.distro = distro
        #: The distro whose message definitions fill in for the bag (``distro``, or the bag's own when "auto").
        self.resolved_distro = DEFAULT_DISTRO if distro == "auto" else distro
        #: The ``rosbag2_bagfile_information`` section of ``metadata.yaml`` (filled by :meth:`open`).
        self.metadata: dict[str, Any] = {}
        self._reader: AnyReader | None = None
        self._repaired: Path | None = None  # a readable copy of a truncated bag, removed on close

    def __enter__(self) -> BagReader:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Open the bag; raise BagError saying what is wrong with it."""
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        if not self.path.is_dir() or not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path} is not a rosbag2 folder (a folder with metadata.yaml and .db3 or .mcap files)")
        info = _read_metadata(self.path)
        self.metadata = info
        version = int(info.get("version", 9)) if str(info.get("version", "9")).isdigit() else 9
        distro = self.distro if self.distro != "auto" else distro_for_bag(version, info.get("ros_distro"))
        self.resolved_distro = distro
        typestore = make_typestore(distro)
        folder = self.path
        try:
            reader = self._open_any([folder], typestore)
        except BagError:
            folder = self._repair(info)
            if folder is None:
                raise
            reader = self._open_any([folder], typestore)
        # Compressed storage records cannot be read on their own: there, messages() fails loudly instead.
        if str(info.get("compression_mode") or "").lower() in ("", "none"):
            files = [folder / PurePath(str(name)).name for name in info.get("relative_file_paths") or []]
            try:
                disagreeing = _topics_missing_from_storage(reader.connections, files)
            except BagError:
                reader.close()
                raise
            if disagreeing:
                LOGGER.warning(
                    "bag %s: metadata.yaml and the storage files disagree on %s (QoS profiles or type hash); "
                    "reading the storage's own topic records (`ros2 bag reindex` rewrites metadata.yaml)",
                    self.path,
                    ", ".join(disagreeing),
                )
                reader.close()
                reader = self._open_any(files, typestore)
        self._reader = reader

    def _repair(self, info: Mapping[str, Any]) -> Path | None:
        """A readable copy of a bag whose MCAP files were cut short (None when none was: the error stands).

        The copy (in a temporary folder, removed by :meth:`close`) holds every message before the
        cut; it is said once, as a warning, with how much was kept.
        """
        files = [self.path / PurePath(str(name)).name for name in info.get("relative_file_paths") or []]
        if not files or any(f.suffix != ".mcap" or not f.is_file() for f in files):
            return None
        if not any(_mcap_is_cut(f) for f in files):
            return None
        folder = Path(tempfile.mkdtemp(prefix="vimpnet-repaired-bag-"))
        try:
            kept = _copy_readable_mcap(self.path, files, info, folder)
        except Exception as error:  # the copy failed too: the original error stands
            shutil.rmtree(folder, ignore_errors=True)
            LOGGER.warning("bag %s is truncated and its readable part could not be recovered: %s", self.path, error)
            return None
        if kept == 0:  # cut inside its first chunk: nothing to read, the original error stands
            shutil.rmtree(folder, ignore_errors=True)
            return None
        self._repaired = folder
        LOGGER.warning(
            "bag %s is truncated (its MCAP file ends without an index): reading the %d message(s) before the cut "
            "of the %s its metadata.yaml lists",
            self.path,
            kept,
            info.get("message_count", "?"),
        )
        return folder

    def _open_any(self, paths: Sequence[Path], typestore: Typestore) -> AnyReader:
        """An open ``AnyReader`` over ``paths`` (the bag folder, or its storage files); BagError if unreadable."""
        try:
            reader = AnyReader(list(paths), default_typestore=typestore)
            reader.open()
        except (AnyReaderError, OSError, ValueError, KeyError, SerdeError) as error:
            raise BagError(f"cannot read bag {self.path}: {error}") from error
        except Exception as error:  # storage back-ends raise their own types on corrupt files
            raise BagError(f"cannot read bag {self.path} (corrupt or unsupported file): {error}") from error
        return reader

    def close(self) -> None:
        """Close the bag (idempotent); a repaired copy of a truncated one is removed."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()
        if self._repaired is not None:
            shutil.rmtree(self._repaired, ignore_errors=True)
            self._repaired = None

    @property
    def reader(self) -> AnyReader:
        """The open ``rosbags`` reader."""
        if self._reader is None:
            raise BagError(f"bag {self.path} is not open")
        return self._reader

    @property
    def typestore(self) -> Typestore:
        """Types of this bag's messages (its own definitions, or the distro's)."""
        return self.reader.typestore

    def topics(self) -> list[TopicSummary]:
        """Every topic with type and count, sorted by name."""
        summaries: dict[str, TopicSummary] = {}
        for connection in self.reader.connections:
            previous = summaries.get(connection.topic)
            count = connection.msgcount + (previous.count if previous else 0)
            summaries[connection.topic] = TopicSummary(connection.topic, connection.msgtype, count)
        return sorted(summaries.values(), key=lambda topic: topic.name)

    def describe_topics(self) -> str:
        """``/a (sensor_msgs/msg/Image, 40 msgs), ...`` for error messages."""
        topics = self.topics()
        if not topics:
            return "the bag has no topics"
        return "the bag has: " + ", ".join(f"{t.name} ({t.msgtype}, {t.count} msgs)" for t in topics)

    def topic_type(self, topic: str) -> str:
        """Message type of ``topic``; BagError listing the bag's topics when it is missing."""
        for summary in self.topics():
            if summary.name == topic:
                return summary.msgtype
        raise BagError(f"topic {topic} is not in bag {self.path}; {self.describe_topics()}")

    @property
    def start_time(self) -> int:
        """Receive time of the first message [ns]."""
        return int(self.reader.start_time)

    @property
    def duration_ns(self) -> int:
        """Time between first and last message [ns]."""
        return max(0, int(self.reader.end_time) - int(self.reader.start_time) - 1)

    @property
    def storage(self) -> str:
        """The bag's storage, "mcap" or "sqlite3" (from metadata.yaml, else the files' suffix)."""
        identifier = str(_read_metadata(self.path).get("storage_identifier") or "")
        if identifier in STORAGES:
            return identifier
        return "mcap" if any(self.path.glob("*.mcap")) else "sqlite3"

    def messages(self, topics: Iterable[str] | None = None, start: int | None = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None) in bag (receive time) order, from bag time ``start`` [ns] on."""
        wanted = None if topics is None else set(topics)
        if wanted is not None:
            for topic in wanted:
                self.topic_type(topic)
        connections = [c for c in self.reader.connections if wanted is None or c.topic in wanted]
        yielded: Counter[str] = Counter()
        try:
            for connection, timestamp, raw in self.reader.messages(connections=connections, start=start):
                yielded[connection.topic] += 1
                yield BagMessage(connection.topic, connection.msgtype, int(timestamp), bytes(raw), connection)
        except (AnyReaderError, SerdeError) as error:
            raise BagError(f"cannot read messages from bag {self.path}: {error}") from error
        # rosbags skips topics whose metadata.yaml record matches no storage record; never end silently.
        silent = sorted({c.topic for c in connections if c.msgcount and not yielded[c.topic] and start is None})
        if silent:
            raise BagError(
                f"bag {self.path}: metadata.yaml lists messages on {', '.join(silent)} but the storage yielded none "
                "(its topic records disagree with metadata.yaml, e.g. in QoS profiles or type hash); "
                f"rewrite the metadata with `ros2 bag reindex {self.path}`"
            )

    def deserialize(self, message: BagMessage) -> Any:
        """Message object (rosbags dataclass) of a raw bag message."""
        try:
            return self.reader.deserialize(message.raw, message.msgtype)
        except (AnyReaderError, SerdeError, KeyError) as error:
            raise BagError(f"cannot decode a {message.msgtype} message on {message.topic}: {error}") from error


class BagWriter:
    """Write a rosbag2 atomically: into a temporary folder, moved to ``path`` on a clean :meth:`close`.

    ``storage`` is "mcap" (default) or "sqlite3". ``distro`` ("humble", "jazzy", "kilted") is the
    ROS 2 release whose ``ros2 bag`` must read the bag: it sets the metadata version and how QoS
    profiles are serialized (:data:`BAG_VERSIONS`). ``typestore`` gives the definitions embedded
    in the bag (default: the distro's plus RainStatus). ``overwrite`` replaces an existing bag at
    ``path`` only once the new one is complete.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        typestore: Typestore | None = None,
        overwrite: bool = False,
        custom_data: Mapping[str, str] | None = None,
        distro: str = DEFAULT_DISTRO,
    ) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
        if distro not in BAG_VERSIONS:
            raise BagError(f"unknown ROS distro {distro!r} for the output bag; choose one of {', '.join(BAG_VERSIONS)}")
        self.path = Path(path)
        self.storage = storage
        self.distro = distro
        self.overwrite = overwrite
        self._typestore = typestore
        self.custom_data = dict(custom_data or {})
        self._tmpdir: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[tuple[str, str], Connection] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def typestore(self) -> Typestore:
        """The typestore messages are serialized with (created on first use)."""
        if self._typestore is None:
            self._typestore = make_typestore(self.distro)
        return self._typestore

    def open(self) -> None:
        """Create the temporary bag; fails early when ``path`` exists and ``overwrite`` is off."""
        if self.path.exists() and not self.overwrite:
            raise BagError(f"output bag {self.path} already exists; remove it or choose another path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
        writer = Writer(
            self._tmpdir / self.path.name, version=BAG_VERSIONS[self.distro], storage_plugin=STORAGES[self.storage]
        )
        for key, value in self.custom_data.items():
            writer.set_custom_data(key, value)
        try:
            writer.open()
        except (WriterError, OSError) as error:
            self.abort()
            raise BagError(f"cannot create bag {self.path}: {error}") from error
        self._writer = writer

    def connection(self, topic: str, msgtype: str, qos: Sequence[Qos] = ()) -> Connection:
        """The connection for (topic, type), added on first use.

        ``qos``: the publishers' offered profiles, as the graph reports them (what ``ros2 bag record``
        stores); none known means :data:`DEFAULT_OFFERED_QOS`. Ignored once the connection exists.
        """
        key = (topic, msgtype)
        if key not in self._connections:
            if self._writer is None:
                raise BagError(f"bag {self.path} is not open for writing")
            if msgtype not in self.typestore.fielddefs:
                raise BagError(f"cannot write {topic}: message type {msgtype} is unknown to the typestore")
            self._connections[key] = self._writer.add_connection(
                topic, msgtype, typestore=self.typestore, offered_qos_profiles=_offered_or_default(qos)
            )
        return self._connections[key]

    def add_connection_like(self, connection: Connection) -> Connection:
        """Copy a reader's connection (its own definition and hash), e.g. to pass a topic through unchanged."""
        key = (connection.topic, connection.msgtype)
        if key not in self._connections:
            if self._writer is None:
                raise BagError(f"bag {self.path} is not open for writing")
            offered = getattr(connection.ext, "offered_qos_profiles", [])
            if connection.msgdef.data and connection.digest:
                self._connections[key] = self._writer.add_connection(
                    connection.topic,
                    connection.msgtype,
                    msgdef=connection.msgdef.data,
                    rihs01=connection.digest,
                    offered_qos_profiles=_offered_or_default(offered),
                )
            else:
                return self.connection(connection.topic, connection.msgtype, offered)
        return self._connections[key]

    def write_raw(self, topic: str, msgtype: str, timestamp: int, raw: bytes | memoryview) -> None:
        """Write already serialized CDR bytes."""
        self._write(self.connection(topic, msgtype), timestamp, raw)

    def write(self, topic: str, message: Any, timestamp: int) -> None:
        """Serialize a rosbags message object of this typestore and write it."""
        msgtype = message.__msgtype__
        raw = self.typestore.serialize_cdr(message, msgtype)
        self._write(self.connection(topic, msgtype), timestamp, raw)

    def write_passthrough(self, connection: Connection, timestamp: int, raw: bytes | memoryview) -> None:
        """Write a message read from another bag under that bag's definition of its type."""
        self._write(self.add_connection_like(connection), timestamp, raw)

    def _write(self, connection: Connection, timestamp: int, raw: bytes | memoryview) -> None:
        if self._writer is None:
            raise BagError(f"bag {self.path} is not open for writing")
        self._writer.write(connection, int(timestamp), raw)
        self.counts[connection.topic] = self.counts.get(connection.topic, 0) + 1

    def close(self) -> None:
        """Finish the bag and move it to ``path``."""
        if self._writer is None or self._tmpdir is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
            if self.path.exists():
                if not self.overwrite:
                    raise BagError(f"output bag {self.path} appeared while writing; not replacing it")
                shutil.rmtree(self.path)
            (self._tmpdir / self.path.name).rename(self.path)
        except (WriterError, OSError) as error:
            raise BagError(f"cannot finish bag {self.path}: {error}") from error
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left as it was."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # best effort: the folder is removed below anyway
                writer.abort()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
