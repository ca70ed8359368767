"""Small numeric summaries shared by the player, the recorder and bag evaluation (no ROS needed)."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: CDR encapsulation ids (first two bytes of a serialized message): plain CDR big / little endian.
_CDR_BE, _CDR_LE = b"\x00\x00", b"\x00\x01"


@dataclass(frozen=True)
class Percentiles:
    """count, mean, p50, p95 and max of a list of values (NaN when empty)."""

    count: int
    mean: float
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        """Summarise ``values`` (NaN-free list)."""
        if len(values) == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        data = np.asarray(values, dtype=np.float64)
        return cls(
            count=int(data.size),
            mean=float(data.mean()),
            p50=float(np.percentile(data, 50)),
            p95=float(np.percentile(data, 95)),
            max=float(data.max()),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def cdr_header_stamp(raw: bytes | memoryview) -> int | None:
    """Stamp [ns] of a CDR message whose first field is ``std_msgs/Header``, read from the bytes.

    The header's ``stamp`` (int32 sec, uint32 nanosec) is the first thing after the
    4-byte encapsulation, so no deserialization is needed. None for a buffer too short
    or of an unknown encapsulation.
    """
    view = bytes(raw[:12])
    if len(view) < 12:
        return None
    if view[:2] == _CDR_LE:
        sec, nanosec = struct.unpack_from("<iI", view, 4)
    elif view[:2] == _CDR_BE:
        sec, nanosec = struct.unpack_from(">iI", view, 4)
    else:
        return None
    return sec * 1_000_000_000 + nanosec


def cdr_replace_header_stamp(raw: bytes | memoryview, stamp_ns: int) -> bytes:
    """A copy of a CDR message (first field ``std_msgs/Header``) with ``header.stamp`` set to ``stamp_ns``."""
    data = bytearray(raw)
    fmt = "<iI" if bytes(data[:2]) == _CDR_LE else ">iI"
    struct.pack_into(fmt, data, 4, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    return bytes(data)


def has_header_first(typestore: Any, msgtype: str) -> bool:
    """Whether ``msgtype``'s first field is a ``std_msgs/msg/Header`` (so its stamp sits at bytes 4..12)."""
    fielddefs = getattr(typestore, "fielddefs", {})
    if msgtype not in fielddefs:
        return False
    fields = fielddefs[msgtype][1]
    if not fields:
        return False
    _, (kind, name) = fields[0]
    return getattr(kind, "name", "") == "NAME" and name == "std_msgs/msg/Header"
