"""The node's parameters as data, one record per concern; params files and ``-p``; the generated documents.

- :mod:`.specs`: what a parameter is (:class:`ParamSpec`) and its type check; :func:`param` declares one;
- :mod:`.records`: the section records (topics, input limits, outputs, rain and gating, node,
  diagnostics) with their parameters, and the parameters that fill the engine's
  :class:`~vimpnet_ros.engine.config.EngineConfig`;
- :mod:`.table`: the sections in order, :data:`PARAMETERS`, :class:`NodeSettings` and validation;
- :mod:`.files`: params files and ``-p`` overrides (bag evaluation, the demo);
- :mod:`.docs`: ``config/vimpnet.yaml`` and the README table (``tools/regenerate_docs.py``; a test checks them).

The node declares exactly these parameters (ROS descriptors built from the specs,
:mod:`vimpnet_ros.node.ros_params`). Engine choices and ranges are the engine's own,
imported, never restated, and its validation reports a bad combination. No ROS import and
no torch, so training and evaluation machines can read the table. Parameters marked
``read_only`` need a restart (or, in managed mode, a cleanup/configure cycle) because they
shape the loaded engine, the topics or the QoS; the others take effect at the next frame.
"""

from vimpnet_ros.pipeline.settings.docs import markdown_table, params_yaml
from vimpnet_ros.pipeline.settings.files import (
    default_params_file,
    load_node_settings,
    parse_param_overrides,
    read_params_file,
)
from vimpnet_ros.pipeline.settings.records import (
    AUTO_RELIABILITY,
    INPUT_RELIABILITIES,
    RELIABILITIES,
    DiagnosticsSettings,
    InputSettings,
    NodeOptions,
    OutputSettings,
    RainSettings,
    TopicSettings,
)
from vimpnet_ros.pipeline.settings.specs import ParamSpec, ParamValue, param
from vimpnet_ros.pipeline.settings.table import (
    NODE_NAME,
    PARAMETERS,
    PARAMETERS_BY_NAME,
    SECTIONS,
    NodeSettings,
    Section,
    default_values,
    validate_settings,
)

__all__ = [
    "AUTO_RELIABILITY",
    "INPUT_RELIABILITIES",
    "NODE_NAME",
    "PARAMETERS",
    "PARAMETERS_BY_NAME",
    "RELIABILITIES",
    "SECTIONS",
    "DiagnosticsSettings",
    "InputSettings",
    "NodeOptions",
    "NodeSettings",
    "OutputSettings",
    "ParamSpec",
    "ParamValue",
    "RainSettings",
    "Section",
    "TopicSettings",
    "default_params_file",
    "default_values",
    "load_node_settings",
    "markdown_table",
    "param",
    "params_yaml",
    "parse_param_overrides",
    "read_params_file",
    "validate_settings",
]
