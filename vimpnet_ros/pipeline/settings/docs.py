"""The generated documents: ``config/vimpnet.yaml`` and the README's parameter table (``tools/regenerate_docs.py``).

A test compares both with what these functions return, so they cannot drift from the table.
"""

from __future__ import annotations

from vimpnet_ros.pipeline.settings.specs import ParamValue
from vimpnet_ros.pipeline.settings.table import PARAMETERS, SECTIONS


def _yaml_value(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return repr(value)


def params_yaml() -> str:
    """``config/vimpnet.yaml``: every parameter with its default and description, under its section's heading."""
    lines = [
        "# Parameters of vimpnet_node, every one with its default. Generated from the parameter table",
        "# (vimpnet_ros/pipeline/settings/) by `python tools/regenerate_docs.py`; do not edit by hand.",
        "# Use: vimpnet_node --ros-args --params-file config/vimpnet.yaml -r image:=/cam/image_raw",
        "/**:",
        "  ros__parameters:",
    ]
    for section in SECTIONS:
        lines.append(f"    # --- {section.heading} ---")
        for spec in section.specs:
            choices = f" ({', '.join(spec.choices)})" if spec.choices else ""
            lines.append(f"    # {spec.description}{choices}")
            lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The README's parameter table (generated; a test compares)."""
    rows = [
        "| parameter | type | default | restart | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in PARAMETERS:
        default = _yaml_value(spec.default).replace('"', "'")
        rows.append(
            f"| `{spec.name}` | {spec.type} | `{default}` | {'yes' if spec.read_only else ''} | "
            f"{spec.description}; {spec.allowed} |"
        )
    return "\n".join(rows) + "\n"
