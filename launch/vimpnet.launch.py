"""Launch vimpnet_node: the params file, a camera namespace, remappings, a backend override.

Examples:
    ros2 launch vimpnet_ros vimpnet.launch.py image:=/cam_front/image_raw
    ros2 launch vimpnet_ros vimpnet.launch.py namespace:=cam_front backend:=tensorrt
    ros2 launch vimpnet_ros vimpnet.launch.py managed:=true     # lifecycle node, waits for a manager
    ros2 launch vimpnet_ros vimpnet.launch.py managed:=true autostart:=true   # lifecycle node, active at once
    ros2 launch vimpnet_ros vimpnet.launch.py image:=/cam/image_raw input_transport:=compressed
        # subscribes /cam/image_raw/compressed: the node appends the transport to the resolved topic

Several cameras: either one node for all of them (one model in memory; set the
``cameras`` parameter in the params file, e.g. ``cameras: [front, rear]``, topics
``front/image`` ... ``rear/rain_status``), or include this file once per camera
with ``namespace:=<camera>`` (one model per camera: simpler isolation, more GPU
memory).
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

#: Launch arguments that override a node parameter when not empty (launch argument -> parameter).
PARAMETER_OVERRIDES: dict[str, str] = {
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "checkpoint": "checkpoint",
    "input_transport": "input_transport",
    "autostart": "autostart",
}


def _make_node(context: LaunchContext) -> list[Node]:
    """Build the node action once the arguments are known (overrides only when given)."""
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides: dict[str, str | bool] = {param: get(arg) for arg, param in PARAMETER_OVERRIDES.items() if get(arg)}
    if "autostart" in overrides:
        overrides["autostart"] = str(overrides["autostart"]).lower() in ("true", "1", "yes")
    parameters = [get("params_file"), overrides] if overrides else [get("params_file")]
    remappings = [("image", get("image")), ("camera_info", get("camera_info"))]
    common = {
        "package": "vimpnet_ros",
        "executable": "vimpnet_node",
        "name": get("node_name"),
        "namespace": get("namespace"),
        "parameters": parameters,
        "remappings": remappings,
        "output": "screen",
        "arguments": ["--ros-args", "--log-level", get("log_level")],
        "emulate_tty": True,
    }
    if get("managed").lower() in ("true", "1", "yes"):
        common["arguments"] = ["--managed", *common["arguments"]]
        return [LifecycleNode(**common)]
    return [Node(**common)]


def generate_launch_description() -> LaunchDescription:
    """Arguments, then the node."""
    default_params = PathJoinSubstitution([FindPackageShare("vimpnet_ros"), "config", "vimpnet.yaml"])
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="camera namespace of the node"),
        DeclareLaunchArgument("node_name", default_value="vimpnet", description="node name"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic (remapped from image)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="input camera_info topic"),
        DeclareLaunchArgument("managed", default_value="false", description="run as a lifecycle node"),
        DeclareLaunchArgument(
            "autostart", default_value="", description="override: with managed, configure and activate at start"
        ),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument("backend", default_value="", description="override: auto|torch|onnxruntime|tensorrt"),
        DeclareLaunchArgument("precision", default_value="", description="override: auto|fp32|bf16|fp16"),
        DeclareLaunchArgument("device", default_value="", description="override: auto|cpu|cuda|cuda:N"),
        DeclareLaunchArgument("checkpoint", default_value="", description="override: checkpoint path"),
        DeclareLaunchArgument("input_transport", default_value="", description="override: raw|compressed"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_make_node)])
