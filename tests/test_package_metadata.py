"""The package's metadata agrees across setup.py, package.xml, CMake and the installed distribution."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package
from packaging.requirements import Requirement

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


#: How each Python requirement of setup.py reaches a ROS distro install: its rosdep key, or None when there is
#: none and docs/install.md installs it with pip. Keys checked in rosdistro's rosdep/python.yaml
#: (python3-numpy, -opencv, -yaml, -tqdm, -skimage, -matplotlib, -onnxruntime-pip: pip package onnxruntime) and
#: https://github.com/ros/rosdistro/pull/37795 (python3-rosbags-pip: pip package rosbags).
ROSDEP_KEY_OF_REQUIREMENT: dict[str, str | None] = {
    "torch": None,  # python3-torch is the distro's old build (Jammy) and resolves to nothing on Noble
    "numpy": "python3-numpy",
    "opencv-python-headless": "python3-opencv",
    "pillow": "python3-pil",
    "scikit-image": "python3-skimage",
    "scipy": None,  # not imported by the package; the distro's scikit-image depends on it
    "pyyaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "tensorboard": None,  # training logs only
    "onnx": None,
    "onnxscript": None,
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
    "rosbags-image": None,
    "mcap": None,  # the tests' independent MCAP reader
    "mcap-ros2-support": None,
}
#: Top-level modules that are ROS packages (resolved by rosdep from the distro, not from PyPI).
ROS_MODULE = re.compile(r"(rclpy|launch|launch_ros|cv_bridge|rcl_interfaces|rosidl_runtime_py|\w+_msgs|\w+_srvs)")
IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)


def install_requires() -> list[str]:
    """Distribution names in setup.py's ``install_requires`` (read, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    listed = next(k.value for k in call.keywords if k.arg == "install_requires")
    return [Requirement(ast.literal_eval(item)).name for item in listed.elts]


def declared(*tags: str) -> set[str]:
    """Dependency names declared in package.xml under ``tags`` (any *depend tag when none given)."""
    return {e.text for e in package_xml() if (e.tag in tags if tags else e.tag.endswith("depend")) and e.text}


def test_every_python_requirement_has_a_rosdep_decision() -> None:
    """A new requirement must be given its rosdep key, or None (pip on a distro), here and in package.xml."""
    assert sorted(install_requires()) == sorted(ROSDEP_KEY_OF_REQUIREMENT)
    keys = {key for key in ROSDEP_KEY_OF_REQUIREMENT.values() if key}
    system_keys = {name for name in declared("exec_depend", "depend") if name.startswith("python3-")}
    assert system_keys == keys, "package.xml's python3-* exec_depends must be exactly the rosdep keys above"


def test_ros_packages_the_code_imports_are_declared() -> None:
    """rosdep installs only what package.xml declares: every ROS package imported at run time is an exec_depend."""
    sources = [*(ROOT / "vimpnet_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py"), *(ROOT / "scripts").iterdir()]
    imported = {m for path in sources for m in IMPORT.findall(path.read_text()) if ROS_MODULE.fullmatch(m)}
    assert {"rclpy", "sensor_msgs", "rcl_interfaces", "rosgraph_msgs"} <= imported, imported  # the scan works
    missing = imported - declared("exec_depend", "depend")
    assert not missing, f"imported but not declared in package.xml: {sorted(missing)}"


def test_package_xml_declares_build_test_and_interface_parts() -> None:
    root = package_xml()
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= declared("buildtool_depend")
    assert {"rosidl_default_runtime", "std_srvs", "launch_ros"} <= declared("exec_depend")
    assert {"ament_cmake_pytest", "python3-pytest", "python3-pytest-timeout"} <= declared("test_depend")
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"


@pytest.mark.parametrize("distro", ["humble", "jazzy", "kilted"])
def test_catkin_pkg_reads_package_xml(distro: str) -> None:
    """colcon and rosdep read package.xml with catkin_pkg: it must parse, validate and evaluate its conditions."""
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    package.evaluate_conditions({"ROS_DISTRO": distro, "ROS_VERSION": "2", "ROS_PYTHON_VERSION": "3"})
    assert "python3-rosbags-pip" in {d.name for d in package.exec_depends if d.evaluated_condition}
    assert "ament_cmake_pytest" in {d.name for d in package.test_depends if d.evaluated_condition}


def test_cmake_installs_messages_launch_config_and_executables() -> None:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for message in sorted((ROOT / "msg").glob("*.msg")):
        assert f"msg/{message.name}" in cmake
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in cmake
    assert "install(PROGRAMS scripts/vimpnet_node DESTINATION lib/${PROJECT_NAME})" in cmake
    assert "install(PROGRAMS scripts/vimpnet-ros DESTINATION bin)" in cmake
    for script in ("vimpnet_node", "vimpnet-ros"):
        assert (ROOT / "scripts" / script).stat().st_mode & 0o111, script
    assert "ament_add_pytest_test(" in cmake and "if(BUILD_TESTING)" in cmake


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


@pytest.mark.parametrize(
    "command", [["-m", "vimpnet_ros"], [str(ROOT / "scripts" / "vimpnet-ros")]], ids=["module", "script"]
)
def test_cli_help_lists_subcommands(command: list[str]) -> None:
    """``python -m vimpnet_ros`` and the script a colcon install puts on PATH run the same CLI."""
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    from vimpnet_ros.cli import SUBCOMMANDS

    for name, _, _ in SUBCOMMANDS:
        assert name in result.stdout
