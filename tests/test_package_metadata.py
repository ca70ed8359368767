"""The package's metadata agrees across setup.py, package.xml, CMake and the installed distribution."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import vimpnet_ros

ROOT = Path(__file__).resolve().parent.parent


def setup_py_constants() -> dict[str, str]:
    """NAME and VERSION as written in setup.py (read, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def test_name_and_version_agree_everywhere() -> None:
    setup = setup_py_constants()
    root = package_xml()
    assert root.get("format") == "3"
    assert root.findtext("name") == setup["NAME"] == "vimpnet_ros"
    assert root.findtext("version") == setup["VERSION"] == vimpnet_ros.__version__
    assert importlib.metadata.version("vimpnet_ros") == setup["VERSION"]
    assert "project(vimpnet_ros)" in (ROOT / "CMakeLists.txt").read_text()


def test_package_xml_declares_runtime_and_build_dependencies() -> None:
    root = package_xml()
    declared = {element.text for element in root if element.tag.endswith("depend")}
    for dependency in (
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "diagnostic_msgs",
        "rosidl_default_generators",
        "rosidl_default_runtime",
        "ament_cmake_python",
        "python3-torch",
        "python3-numpy",
        "python3-opencv",
    ):
        assert dependency in declared, dependency
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert "@" in root.find("maintainer").get("email")


def test_cmake_installs_messages_launch_config_and_executable() -> None:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for message in sorted((ROOT / "msg").glob("*.msg")):
        assert f"msg/{message.name}" in cmake
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in cmake
    assert "install(PROGRAMS scripts/vimpnet_node DESTINATION lib/${PROJECT_NAME})" in cmake
    assert (ROOT / "scripts" / "vimpnet_node").stat().st_mode & 0o111


@pytest.mark.parametrize(
    "entry_point",
    [ep for ep in importlib.metadata.distribution("vimpnet_ros").entry_points if ep.group == "console_scripts"],
    ids=lambda ep: ep.name,
)
def test_console_entry_point_imports(entry_point: importlib.metadata.EntryPoint) -> None:
    assert callable(entry_point.load())


def test_console_scripts_are_the_documented_ones() -> None:
    names = {ep.name for ep in importlib.metadata.distribution("vimpnet_ros").entry_points}
    assert {"vimpnet-ros", "vimpnet_node"} <= names


def test_cli_help_lists_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vimpnet_ros", "--help"], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    from vimpnet_ros.cli import SUBCOMMANDS

    for name, _, _ in SUBCOMMANDS:
        assert name in result.stdout
