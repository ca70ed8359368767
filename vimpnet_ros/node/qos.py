"""QoS profiles from validated strings (no magic integers in parameters).

Inputs default to sensor-data QoS (best effort, keep last, volatile): a best-effort
subscription matches both reliable and best-effort camera drivers, and stale
frames are never retransmitted. Outputs default to reliable so that recorders and
detectors that ask for reliable QoS match.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.settings import RELIABILITIES

_RELIABILITY: dict[str, ReliabilityPolicy] = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
    "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
}
assert set(_RELIABILITY) == set(RELIABILITIES)

#: QoS of /diagnostics, as diagnostic_updater uses it (reliable, keep last 10).
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """A keep-last, volatile profile with the given reliability name and depth."""
    if reliability not in _RELIABILITY:
        raise ConfigError(f"QoS reliability must be one of {', '.join(RELIABILITIES)}; got '{reliability}'")
    if depth < 1:
        raise ConfigError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def sensor_data_qos(depth: int | None = None) -> QoSProfile:
    """rclpy's sensor-data profile, optionally with another depth."""
    if depth is None:
        return qos_profile_sensor_data
    return make_qos("best_effort", depth)
