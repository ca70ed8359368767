"""launch/vimpnet.launch.py and config/vimpnet.yaml agree with the node's parameter table.

``launch``/``launch_ros`` are not installable from PyPI, so the file is checked
statically (it parses; every parameter it sets is one the node declares; the
params file lists exactly the declared parameters with their defaults). The
description is built for real only where launch_ros imports.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from vimpnet_ros.pipeline.settings import PARAMETERS, PARAMETERS_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "vimpnet.launch.py"
CONFIG_FILE = ROOT / "config" / "vimpnet.yaml"
LAUNCH_ROS_MISSING = "launch_ros is not installed (the PyPI ROS 2 wheels have no launch)"


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _assigned_dict(tree: ast.Module, name: str) -> dict[str, str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return ast.literal_eval(node.value)  # type: ignore[arg-type]
    raise AssertionError(f"{name} not found in {LAUNCH_FILE}")


def test_launch_file_sets_only_declared_parameters() -> None:
    tree = _launch_tree()
    overrides = _assigned_dict(tree, "PARAMETER_OVERRIDES")
    assert overrides, "the launch file should offer parameter overrides (backend at least)"
    assert "backend" in overrides.values()
    unknown = set(overrides.values()) - set(PARAMETERS_BY_NAME)
    assert not unknown, f"launch file sets parameters the node does not declare: {unknown}"
    declared_args = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "DeclareLaunchArgument"
        and isinstance(node.args[0], ast.Constant)
    }
    assert set(overrides) <= declared_args, "every override needs a DeclareLaunchArgument"
    assert {"params_file", "namespace", "image", "managed"} <= declared_args
    literal_dicts = [ast.literal_eval(n) for n in ast.walk(tree) if isinstance(n, ast.Dict) and _is_literal(n)]
    for mapping in literal_dicts:  # any literal parameter dict must use declared names
        if mapping is not overrides and set(mapping) & set(PARAMETERS_BY_NAME):
            assert set(mapping) <= set(PARAMETERS_BY_NAME), mapping


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def test_config_lists_every_parameter_with_its_default() -> None:
    data = yaml.safe_load(CONFIG_FILE.read_text())
    params = data["/**"]["ros__parameters"]
    declared = [spec.name for spec in PARAMETERS]
    assert sorted(params) == sorted(declared), (
        f"missing in yaml: {set(declared) - set(params)}; not declared: {set(params) - set(declared)}"
    )
    for spec in PARAMETERS:
        assert params[spec.name] == spec.default, spec.name
        assert type(params[spec.name]) is type(spec.default), f"{spec.name}: YAML type differs from the declared type"


def test_launch_description_builds_where_launch_ros_exists() -> None:
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip(LAUNCH_ROS_MISSING)
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("vimpnet_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for action in description.entities:
        if isinstance(action, DeclareLaunchArgument):
            context.launch_configurations[action.name] = "" if action.name != "params_file" else str(CONFIG_FILE)
    context.launch_configurations.update(
        {
            "image": "/cam/image_raw",
            "camera_info": "camera_info",
            "managed": "false",
            "log_level": "info",
            "node_name": "vimpnet",
            "backend": "torch",
        }
    )
    opaque = [a for a in description.entities if isinstance(a, OpaqueFunction)]
    nodes = opaque[0].execute(context)
    assert len(nodes) == 1 and nodes[0].node_executable == "vimpnet_node"
