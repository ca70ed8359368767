"""Fast DDS transport of the node process: receive camera-sized frames over UDP with large socket buffers.

Why (measured; docs/node.md "Camera-sized frames and the DDS transport"): Fast DDS splits a
sample into 64 KB fragments. Between processes on one host it sends them through the
*publisher's* shared-memory segment, 512 KiB by default; when that segment is full the
publisher recycles fragments a reader has not picked up yet, without blocking. A reliable
reader asks for them again; a best-effort reader loses the whole frame. A 1280x720 rgb8
frame is 2.8 MB, so with the defaults a best-effort subscription (or any subscription to a
best-effort publisher) received 0-2 of 20 such frames. Over UDP the same happens in the
receiver's socket buffer (``net.core.rmem_default``, 208 KiB on a stock kernel).

The node cannot resize another process's segment, but it can choose where its own data
arrive: this module gives the node's participant one UDPv4 transport (no shared memory)
whose socket buffers are as large as the kernel allows (``net.core.rmem_max``), so a
frame's fragments wait in the node's own socket buffer. With ``ROS_AUTOMATIC_DISCOVERY_RANGE
=LOCALHOST`` rmw_fastrtps ignores ``FASTDDS_BUILTIN_TRANSPORTS`` and adds its own
shared-memory and UDP transports to the profile's, so the profile also restricts the
node's locators to UDP on 127.0.0.1 there (otherwise publishers would still pick shared
memory).

It is an XML profile (``FASTDDS_DEFAULT_PROFILES_FILE``) set in the node's environment
before ``rclpy.init``, only with the parameter ``dds_profile: auto`` (``off`` never touches the
transport), and only when nobody configured Fast DDS: another RMW, any Fast DDS
variable or default XML file, static peers with LOCALHOST discovery, ``VIMPNET_DDS_TUNING=0``,
or a kernel limit too small for the buffers to help (< :data:`MIN_RECEIVE_BUFFER`) leave
everything as it is.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from vimpnet_ros.engine import default_engine_cache_dir

#: RMW implementations this module configures (Fast DDS).
FASTDDS_RMWS: tuple[str, ...] = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
#: Variables that mean "Fast DDS is configured by the user": the node leaves the transport alone.
USER_CONFIG_VARIABLES: tuple[str, ...] = (
    "FASTDDS_BUILTIN_TRANSPORTS",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_ENVIRONMENT_FILE",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
    "ROS_DISCOVERY_SERVER",
)
#: Profiles Fast DDS loads from the working directory on its own (unless SKIP_DEFAULT_XML=1).
DEFAULT_XML_FILES: tuple[str, ...] = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
#: ``VIMPNET_DDS_TUNING=0`` (or off/false/no) keeps the Fast DDS defaults.
OPT_OUT_VARIABLE = "VIMPNET_DDS_TUNING"
#: The profile asks for this socket buffer size, capped by net.core.rmem_max / wmem_max [bytes].
REQUESTED_BUFFER = 32 * 1024 * 1024
#: Below this net.core.rmem_max a UDP buffer cannot hold a 1280x720 rgb8 frame (2.8 MB): keep the defaults.
MIN_RECEIVE_BUFFER = 4 * 1024 * 1024
#: Where Linux publishes the largest socket buffers a process may ask for.
RMEM_MAX_PATH = Path("/proc/sys/net/core/rmem_max")
WMEM_MAX_PATH = Path("/proc/sys/net/core/wmem_max")
#: The sysctl a deployment runs to let the node hold whole camera frames (docs/node.md).
SYSCTL_HINT = "sudo sysctl -w net.core.rmem_max=33554432 net.core.wmem_max=33554432"

_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- Written by vimpnet_ros.node.transport for the vimpnet node process only: UDPv4 without shared
     memory, socket buffers of {buffer} bytes, so camera-sized best-effort frames are not lost. -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>vimpnet_udp_large_buffers</transport_id>
        <type>UDPv4</type>
        <sendBufferSize>{send_buffer}</sendBufferSize>
        <receiveBufferSize>{buffer}</receiveBufferSize>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="vimpnet_node" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>vimpnet_udp_large_buffers</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>{locators}
      </rtps>
    </participant>
  </profiles>
</dds>
"""
_LOCALHOST_LOCATORS = """
        <defaultUnicastLocatorList>
          <locator>
            <udpv4>
              <address>127.0.0.1</address>
            </udpv4>
          </locator>
        </defaultUnicastLocatorList>"""


@dataclass(frozen=True)
class TransportSetup:
    """What :func:`configure_transport` did, for the node to log once rclpy is up."""

    applied: bool
    summary: str
    profile: Path | None = None
    #: True when the summary is advice a deployment should act on (logged as a warning).
    warn: bool = False


def read_sysctl(path: Path) -> int | None:
    """An integer from /proc/sys (None where it does not exist, e.g. outside Linux)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def localhost_only(environ: MutableMapping[str, str]) -> bool | None:
    """True for LOCALHOST discovery, False for SUBNET/SYSTEM_DEFAULT, None for OFF (rcl's rules).

    rcl honours the deprecated ``ROS_LOCALHOST_ONLY=1`` first and reads an unknown
    ``ROS_AUTOMATIC_DISCOVERY_RANGE`` value as LOCALHOST; an empty one means SUBNET.
    """
    if environ.get("ROS_LOCALHOST_ONLY", "") == "1":
        return True
    value = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if value == "OFF":
        return None
    return value not in ("", "SUBNET", "SYSTEM_DEFAULT")


def profile_xml(buffer: int, send_buffer: int, localhost: bool) -> str:
    """The Fast DDS XML profile (see the module docstring)."""
    return _PROFILE.format(buffer=buffer, send_buffer=send_buffer, locators=_LOCALHOST_LOCATORS if localhost else "")


def write_profile(text: str, directory: Path | None = None) -> Path:
    """Write ``text`` to a file named by its digest in ``directory`` (default: the user's vimpnet_ros cache).

    Written once and shared by later node processes; the write goes through a private
    temporary file and an atomic rename. Where the cache cannot be written, a private file
    in the temporary directory is used instead.
    """
    folder = directory or default_engine_cache_dir().parent / "fastdds"
    path = folder / f"profile_{hashlib.sha256(text.encode()).hexdigest()[:16]}.xml"
    try:
        if path.is_file() and path.read_text() == text:
            return path
        folder.mkdir(parents=True, exist_ok=True)
        return _write_private(text, folder).replace(path)
    except OSError:
        return _write_private(text, None)


def _write_private(text: str, folder: Path | None) -> Path:
    """``text`` in a new file only this process could have created (mkstemp), in ``folder`` or the temp dir."""
    handle, name = tempfile.mkstemp(prefix="vimpnet_ros_fastdds_", suffix=".xml", dir=folder)
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    return Path(name)


def _user_configuration(environ: MutableMapping[str, str], cwd: Path) -> str | None:
    """Why the user's own configuration wins, or None when there is none."""
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw not in FASTDDS_RMWS:
        return f"RMW_IMPLEMENTATION={rmw} (not Fast DDS)"
    if environ.get(OPT_OUT_VARIABLE, "").strip().lower() in ("0", "off", "false", "no"):
        return f"{OPT_OUT_VARIABLE}={environ[OPT_OUT_VARIABLE]}"
    for name in USER_CONFIG_VARIABLES:
        if environ.get(name):
            return f"{name} is set"
    if environ.get("SKIP_DEFAULT_XML", "") != "1":
        for name in DEFAULT_XML_FILES:
            if (cwd / name).is_file():
                return f"{name} in the working directory"
    return None


def configure_transport(
    environ: MutableMapping[str, str] | None = None,
    rmem_max: int | None = None,
    wmem_max: int | None = None,
    cwd: Path | None = None,
    directory: Path | None = None,
    profile: str = "auto",
) -> TransportSetup:
    """Point ``FASTDDS_DEFAULT_PROFILES_FILE`` at the node's UDP profile in ``environ`` (default: this process).

    Must run before ``rclpy.init``. ``rmem_max``/``wmem_max`` default to the kernel's limits;
    ``cwd`` to the working directory; ``directory`` (where the profile is written) to
    ``$XDG_CACHE_HOME/vimpnet_ros/fastdds``; ``profile`` is the ``dds_profile`` parameter (``off``:
    do nothing). Returns what was done, or why nothing was, for the log.
    """
    if profile == "off":
        return TransportSetup(False, "DDS transport: left as configured (dds_profile: off)")
    env = os.environ if environ is None else environ
    reason = _user_configuration(env, cwd or Path.cwd())
    if reason is not None:
        return TransportSetup(False, f"DDS transport: left as configured ({reason})")
    localhost = localhost_only(env)
    if localhost is None:
        return TransportSetup(False, "DDS transport: left as configured (ROS_AUTOMATIC_DISCOVERY_RANGE=OFF)")
    if localhost and env.get("ROS_STATIC_PEERS"):  # 127.0.0.1-only locators would hide the node from its peers
        return TransportSetup(False, "DDS transport: left as configured (ROS_STATIC_PEERS with LOCALHOST discovery)")
    receive_limit = read_sysctl(RMEM_MAX_PATH) if rmem_max is None else rmem_max
    send_limit = read_sysctl(WMEM_MAX_PATH) if wmem_max is None else wmem_max
    if receive_limit is None:
        return TransportSetup(False, "DDS transport: Fast DDS defaults (net.core.rmem_max unknown on this system)")
    if receive_limit < MIN_RECEIVE_BUFFER:
        return TransportSetup(
            False,
            f"DDS transport: Fast DDS defaults, because net.core.rmem_max is {receive_limit} bytes (< "
            f"{MIN_RECEIVE_BUFFER}); frames over ~0.5 MB from best-effort publishers on this host will be lost. "
            f"Raise the limit ({SYSCTL_HINT}) or have the camera publish reliable (see docs/node.md)",
            warn=True,
        )
    buffer = min(REQUESTED_BUFFER, receive_limit)
    send_buffer = min(REQUESTED_BUFFER, send_limit if send_limit is not None else buffer)
    try:
        path = write_profile(profile_xml(buffer, send_buffer, localhost), directory)
    except OSError as error:
        return TransportSetup(
            False, f"DDS transport: Fast DDS defaults (could not write the profile: {error})", warn=True
        )
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    scope = "127.0.0.1 (LOCALHOST discovery)" if localhost else "all interfaces"
    return TransportSetup(
        True,
        f"DDS transport: UDPv4 on {scope} without shared memory, socket buffers {buffer} bytes "
        f"(profile {path}; dds_profile: off keeps the Fast DDS defaults)",
        path,
    )
