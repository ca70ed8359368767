"""Params files and ``-p name:=value`` overrides: how bag evaluation and the demo read the node's settings.

The node reads the same files through rclpy; both end in :func:`~.table.validate_settings`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.settings.table import NODE_NAME, NodeSettings, validate_settings


def default_params_file() -> Path | None:
    """``config/vimpnet.yaml`` of the source tree or of an install's share dir, if present."""
    candidates = [
        Path(__file__).resolve().parents[3] / "config" / "vimpnet.yaml",
        Path(sys.prefix) / "share" / "vimpnet_ros" / "config" / "vimpnet.yaml",
    ]
    return next((c for c in candidates if c.is_file()), None)


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The node's ``ros__parameters`` from a ROS 2 params YAML (``vimpnet:``, ``/**:`` or any single node)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read params file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"params file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must map node names to {{ros__parameters: ...}}")
    sections = {k: v["ros__parameters"] for k, v in data.items() if isinstance(v, dict) and "ros__parameters" in v}
    for key in (NODE_NAME, f"/{NODE_NAME}", "vimpnet_node", "/vimpnet_node", "/**"):
        if key in sections:
            return dict(sections[key] or {})
    if len(sections) == 1:
        return dict(next(iter(sections.values())) or {})
    raise ConfigError(
        f"params file {path} has no '{NODE_NAME}' or '/**' section with ros__parameters; sections: {sorted(data)}"
    )


def parse_param_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["backend:=torch", "window_size:=3"]`` -> typed values (YAML scalars, like ``ros2 run -p``)."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition(":=")
        if not sep or not name:
            raise ConfigError(f"parameter override {item!r} must look like name:=value")
        values[name] = yaml.safe_load(text) if text else ""
    return values


def load_node_settings(
    params_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> NodeSettings:
    """Validated node settings: the params file (None = the package's config/vimpnet.yaml if found), then overrides."""
    path = default_params_file() if params_file is None else Path(params_file)
    values = read_params_file(path) if path is not None else {}
    values.update(overrides or {})
    return validate_settings(values)
