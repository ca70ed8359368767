"""Message types for bags: the ROS 2 distro typestores of ``rosbags`` plus our ``RainStatus``.

Bags recorded on Jazzy and Kilted (and all MCAP bags) carry their message
definitions, so they are read with those. Humble's sqlite3 bags carry none; for
them (or when asked) the distro's typestore fills in. Writing always registers
``vimpnet_msgs/msg/RainStatus`` from the ``.msg`` text so output bags are
self-describing for any reader; the same definition under its former name
``vimpnet_ros/msg/RainStatus`` (before the messages had their own package) keeps older bags readable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from vimpnet_ros.errors import BagError

#: Distro name -> rosbags typestore; "auto" picks from the bag (see :func:`distro_for_bag`).
DISTROS: dict[str, Stores] = {
    "humble": Stores.ROS2_HUMBLE,
    "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED,
}
DEFAULT_DISTRO = "kilted"
RAIN_STATUS_TYPE = "vimpnet_msgs/msg/RainStatus"
#: The same message in bags written before the interface package existed.
LEGACY_RAIN_STATUS_TYPE = "vimpnet_ros/msg/RainStatus"

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
IMAGE_TYPES = frozenset({IMAGE_TYPE, COMPRESSED_TYPE})


def rain_status_msg_path() -> Path:
    """Find ``RainStatus.msg``: the source tree, the colcon/ament share dir, or the venv's share dir."""
    package = RAIN_STATUS_TYPE.partition("/")[0]
    candidates = [Path(__file__).resolve().parents[2] / package / "msg" / "RainStatus.msg"]
    for prefix in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        if prefix:
            candidates.append(Path(prefix) / "share" / package / "msg" / "RainStatus.msg")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BagError(
        "cannot find RainStatus.msg (looked in the source tree, $AMENT_PREFIX_PATH and the environment's share/); "
        "run `make setup` or source the colcon install"
    )


def make_typestore(distro: str = DEFAULT_DISTRO) -> Typestore:
    """A typestore of ``distro`` (humble, jazzy, kilted) with ``RainStatus`` registered (current and former name)."""
    if distro not in DISTROS:
        raise BagError(f"unknown ROS distro {distro!r} for bag message types; choose one of {', '.join(DISTROS)}")
    store = get_typestore(DISTROS[distro])
    text = rain_status_msg_path().read_text()
    for name in (RAIN_STATUS_TYPE, LEGACY_RAIN_STATUS_TYPE):
        store.register(get_types_from_msg(text, name))
    return store


def running_distro() -> str:
    """The ROS 2 release this process runs on: ``$ROS_DISTRO`` if we know it, else Kilted (the PyPI wheels)."""
    distro = os.environ.get("ROS_DISTRO", "")
    return distro if distro in DISTROS else DEFAULT_DISTRO


def distro_for_bag(version: int, ros_distro: str | None) -> str:
    """The distro whose typestore fills in missing definitions: the bag's own if known, else by bag version.

    Humble writes rosbag2 metadata version 5 and no message definitions; newer bags name their distro.
    """
    if ros_distro in DISTROS:
        return str(ros_distro)
    return "humble" if version <= 5 else DEFAULT_DISTRO
