"""The package's metadata agrees across setup.py, package.xml, CMake and the installed distribution."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from catkin_pkg.package import parse_package
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
#: none and docs/install.md installs it with pip. Keys checked in rosdistro's rosdep/python.yaml (python3-numpy,
#: -opencv, -pil, -yaml, -tqdm, -skimage, -matplotlib, -pytest, -pytest-timeout, -onnxruntime-pip: pip package
#: onnxruntime) and https://github.com/ros/rosdistro/pull/37795 (python3-rosbags-pip: pip package rosbags).
#: The node's run-time requirements (install_requires; package.xml exec_depend):
ROSDEP_KEY_OF_REQUIREMENT: dict[str, str | None] = {
    "torch": None,  # python3-torch is the distro's old build (Jammy) and resolves to nothing on Noble
    "numpy": "python3-numpy",
    "opencv-python-headless": "python3-opencv",
    "pillow": "python3-pil",
    "pyyaml": "python3-yaml",
}
#: The extras the tests need (train, eval, export, test; package.xml test_depend). fleet (Ray) is pip only.
ROSDEP_KEY_OF_EXTRA: dict[str, str | None] = {
    "tensorboard": None,  # training logs only
    "tqdm": "python3-tqdm",
    "scikit-image": "python3-skimage",
    "rosbags": "python3-rosbags-pip",
    "rosbags-image": None,
    "matplotlib": "python3-matplotlib",
    "onnx": None,
    "onnxscript": None,
    "onnxruntime": "python3-onnxruntime-pip",
    "pytest": "python3-pytest",
    "pytest-timeout": "python3-pytest-timeout",
    "mcap": None,  # the tests' independent MCAP reader
    "mcap-ros2-support": None,
}
TESTED_EXTRAS = ("train", "eval", "export", "test")
#: Imported by the node only when installed (probed first), for the onnxruntime backend: in the export extra.
OPTIONAL_AT_RUN_TIME = {"onnxruntime"}
#: Top-level modules that are ROS packages (resolved by rosdep from the distro, not from PyPI).
ROS_MODULE = re.compile(r"(rclpy|launch|launch_ros|cv_bridge|rcl_interfaces|rosidl_runtime_py|\w+_msgs|\w+_srvs)")
IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)


def setup_keyword(name: str) -> Any:
    """The literal value of a ``setup()`` keyword in setup.py (read, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == name))


def install_requires() -> list[str]:
    """Distribution names in setup.py's ``install_requires``."""
    return [Requirement(item).name for item in setup_keyword("install_requires")]


def extra_requires(*extras: str) -> set[str]:
    """Distribution names in setup.py's ``extras_require`` for ``extras``."""
    table = setup_keyword("extras_require")
    return {Requirement(item).name for extra in extras for item in table[extra]}


def declared(*tags: str) -> set[str]:
    """Dependency names declared in package.xml under ``tags`` (any *depend tag when none given)."""
    return {e.text for e in package_xml() if (e.tag in tags if tags else e.tag.endswith("depend")) and e.text}


def test_every_python_requirement_has_a_rosdep_decision() -> None:
    """A new requirement must be given its rosdep key, or None (pip on a distro), here and in package.xml."""
    assert sorted(install_requires()) == sorted(ROSDEP_KEY_OF_REQUIREMENT)
    keys = {key for key in ROSDEP_KEY_OF_REQUIREMENT.values() if key}
    system_keys = {name for name in declared("exec_depend", "depend") if name.startswith("python3-")}
    assert system_keys == keys, "package.xml's python3-* exec_depends must be exactly the rosdep keys above"
    assert extra_requires(*TESTED_EXTRAS) == set(ROSDEP_KEY_OF_EXTRA)
    test_keys = {key for key in ROSDEP_KEY_OF_EXTRA.values() if key}
    assert {name for name in declared("test_depend") if name.startswith("python3-")} == test_keys


def test_extras_cover_training_evaluation_export_tests_and_the_fleet() -> None:
    table = setup_keyword("extras_require")
    assert {"train", "eval", "export", "test", "fleet", "ros-pypi", "dev", "tensorrt"} <= set(table)
    assert "scipy" not in extra_requires(*table) | set(install_requires()), "scipy is never imported"
    assert {"mcap", "mcap-ros2-support"} <= extra_requires("test")
    assert "ray" in extra_requires("fleet")
    assert not {"tensorboard", "onnx", "onnxscript", "mcap", "rosbags", "matplotlib"} & set(install_requires())


#: Runs the node in this interpreter (configure and activate on the shipped weights, one compressed frame
#: decoded as its callback does) and prints the top-level modules that code of the package imported.
NODE_IMPORTS = textwrap.dedent(
    """
    import builtins, json, sys
    seen = set()
    original = builtins.__import__

    def recording(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__") or ""
        if level == 0 and importer.split(".")[0] == "vimpnet_ros":
            seen.add(name.split(".")[0])
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = recording
    import vimpnet_ros.node.main
    from vimpnet_ros.node.transport import configure_transport
    import cv2, numpy as np, rclpy
    from sensor_msgs.msg import CompressedImage

    configure_transport()
    rclpy.init(args=["vimpnet_node", "--ros-args", "-p", "device:=cpu", "-p", "backend:=torch"])
    from vimpnet_ros.node.node import VimpnetNode
    node = VimpnetNode()
    node.start()
    jpeg = CompressedImage(format="jpeg")
    jpeg.data = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    node.core._on_message(node.core.cameras[""], jpeg, compressed=True)
    node.stop()
    node.destroy_node()
    rclpy.shutdown()
    print(json.dumps(sorted(seen)))
    """
)


@pytest.mark.ros
def test_install_requires_is_what_the_node_imports(ros_env: dict[str, str]) -> None:
    """Run the node: every third-party module its code imports is a requirement, and every requirement is used."""
    result = subprocess.run(
        [sys.executable, "-c", NODE_IMPORTS], env=ros_env, cwd="/", capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = set(json.loads(result.stdout.strip().splitlines()[-1]))
    distributions = importlib.metadata.packages_distributions()
    third_party = set()
    for module in imported - set(sys.stdlib_module_names) - {"vimpnet_ros", "vimpnet_msgs"} - OPTIONAL_AT_RUN_TIME:
        names = distributions.get(module, [])
        assert names, f"the node imports {module!r}, which no installed distribution provides"
        if not any(name.startswith("ros-") for name in names):  # ROS packages: package.xml (test below)
            third_party |= {canonicalize_name(name) for name in names}
    assert third_party == {canonicalize_name(name) for name in install_requires()}


def test_ros_packages_the_code_imports_are_declared() -> None:
    """rosdep installs only what package.xml declares: every ROS package imported at run time is an exec_depend."""
    sources = [*(ROOT / "vimpnet_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py"), *(ROOT / "scripts").iterdir()]
    imported = {m for path in sources for m in IMPORT.findall(path.read_text()) if ROS_MODULE.fullmatch(m)}
    assert {"rclpy", "sensor_msgs", "rcl_interfaces", "rosgraph_msgs"} <= imported, imported  # the scan works
    missing = imported - declared("exec_depend", "depend")
    assert not missing, f"imported but not declared in package.xml: {sorted(missing)}"


def test_package_xml_declares_build_test_and_interface_parts() -> None:
    root = package_xml()
    assert {"ament_cmake", "ament_cmake_python"} <= declared("buildtool_depend")
    assert "vimpnet_msgs" in declared("depend"), "the node depends on the interface package"
    assert {"std_srvs", "launch_ros"} <= declared("exec_depend")
    assert {"ament_cmake_pytest", "python3-pytest", "python3-pytest-timeout"} <= declared("test_depend")
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") is None, "messages live in vimpnet_msgs"


def test_interface_package_is_messages_only() -> None:
    """vimpnet_msgs: an ament_cmake interface package with our version, depending on nothing of the node."""
    root = ET.parse(ROOT / "vimpnet_msgs" / "package.xml").getroot()
    assert root.findtext("name") == "vimpnet_msgs" and root.findtext("version") == vimpnet_ros.__version__
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert root.find("export/build_type").text == "ament_cmake"
    depends = {e.text for e in root if e.tag.endswith("depend")}
    assert depends == {"ament_cmake", "rosidl_default_generators", "std_msgs", "rosidl_default_runtime"}
    cmake = (ROOT / "vimpnet_msgs" / "CMakeLists.txt").read_text()
    assert "project(vimpnet_msgs)" in cmake
    for message in sorted((ROOT / "vimpnet_msgs" / "msg").glob("*.msg")):
        assert f"msg/{message.name}" in cmake
    assert not (ROOT / "msg").exists() and "rosidl_generate_interfaces" not in (ROOT / "CMakeLists.txt").read_text()


@pytest.mark.parametrize("distro", ["humble", "jazzy", "kilted"])
def test_catkin_pkg_reads_package_xml(distro: str) -> None:
    """colcon and rosdep read package.xml with catkin_pkg: it must parse, validate and evaluate its conditions."""
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    package.evaluate_conditions({"ROS_DISTRO": distro, "ROS_VERSION": "2", "ROS_PYTHON_VERSION": "3"})
    assert "python3-numpy" in {d.name for d in package.exec_depends if d.evaluated_condition}
    assert {"ament_cmake_pytest", "python3-rosbags-pip"} <= {
        d.name for d in package.test_depends if d.evaluated_condition
    }
    parse_package(str(ROOT / "vimpnet_msgs" / "package.xml")).validate()


def test_cmake_installs_launch_config_and_executables() -> None:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "find_package(vimpnet_msgs" in cmake
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
