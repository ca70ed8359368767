"""ROS parameter plumbing: declare the table's parameters on an rclpy node, read and validate them, apply updates.

The table and every rule live in :mod:`vimpnet_ros.pipeline.settings`; this module only
maps them to rclpy: a descriptor per entry (description, ranges, read-only), typed
values in, :class:`~vimpnet_ros.pipeline.settings.NodeSettings` out. Parameters are declared
with dynamic typing so that a value of the wrong type reaches the table's own check and is
refused with a message that names the parameter and what it accepts, instead of rclpy's
generic type error.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from vimpnet_ros.errors import ConfigError, VimpnetError
from vimpnet_ros.node.startup import unknown_parameter_warnings
from vimpnet_ros.pipeline.settings import PARAMETERS, PARAMETERS_BY_NAME, NodeSettings, ParamSpec, validate_settings

_ROS_TYPES: dict[str, int] = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
    "string": ParameterType.PARAMETER_STRING,
    "string_array": ParameterType.PARAMETER_STRING_ARRAY,
}


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS parameter descriptor of one table entry (description, ranges, read-only)."""
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=_ROS_TYPES[spec.type],
        description=spec.description,
        additional_constraints=spec.constraints or spec.allowed,
        read_only=spec.read_only,
        # Lists are declared by type (rclpy refuses dynamic typing then); everything else is typed by the table.
        dynamic_typing=spec.type != "string_array",
    )
    if spec.int_range is not None:
        low, high, step = spec.int_range
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=step)]
    if spec.float_range is not None:
        low_f, high_f = spec.float_range
        descriptor.floating_point_range = [FloatingPointRange(from_value=low_f, to_value=high_f, step=0.0)]
    return descriptor


class ParameterBridge:
    """The node's parameters: declared once at construction, validated on every update.

    ``settings`` is None until :meth:`load` (configure); afterwards updates are validated against
    the whole table and, when valid, replace it at once (the next frame uses them). Names given
    with ``-p`` or in a params file that the table does not have are logged as warnings at
    construction, each with the nearest known name.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.settings: NodeSettings | None = None
        for spec in PARAMETERS:
            default: Any = spec.default
            if spec.type == "string_array" and not default:
                default = Parameter.Type.STRING_ARRAY  # declared without a value: [] has no type
            try:
                node.declare_parameter(spec.name, default, descriptor_for(spec))
            except Exception as error:  # rclpy's ParameterException family for overrides it cannot take
                raise ConfigError(f"parameter '{spec.name}' must be {spec.allowed} ({error})") from error
        # rclpy keeps every override addressed to this node, declared or not, in _parameter_overrides.
        for warning in unknown_parameter_warnings(node._parameter_overrides, PARAMETERS_BY_NAME):
            node.get_logger().warning(warning)
        node.add_on_set_parameters_callback(self._on_set_parameters)

    def current_values(self) -> dict[str, Any]:
        """Parameter name -> value as rclpy holds it (unset lists as None)."""
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                parameter = self.node.get_parameter(spec.name)
            except ParameterUninitializedException:  # a list declared without a value and never set
                values[spec.name] = None
                continue
            values[spec.name] = parameter.value if parameter.type_ != Parameter.Type.NOT_SET else None
        return values

    def load(self) -> NodeSettings:
        """Validate the current values (raises ConfigError naming the parameter) and keep them."""
        self.settings = validate_settings(self.current_values())
        return self.settings

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate updates against the same rules as at start; apply valid ones at once.

        Parameters that are not in the table (rclpy's own ``qos_overrides.*``, ``use_sim_time``) are
        rclpy's to check.
        """
        changes = {p.name: p.value for p in parameters if p.name in PARAMETERS_BY_NAME}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            if self.settings is None:  # not configured yet: configure validates everything
                validate_settings({**self.current_values(), **changes})
                return SetParametersResult(successful=True)
            for name in changes:
                if PARAMETERS_BY_NAME[name].read_only:
                    raise ConfigError(f"parameter '{name}' is read-only: restart the node (or cleanup/configure)")
            new = self.settings.replace(**changes)
        except (VimpnetError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.settings = new
        self.node.get_logger().info("parameters updated: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        return SetParametersResult(successful=True)
