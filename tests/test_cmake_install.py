"""The colcon path: the package builds, installs and tests itself the way a ROS user's workspace does.

``test_full_cmake_install`` runs what ``colcon build`` runs for the two ament_cmake packages (CMake configure,
build, install of the interface package ``vimpnet_msgs``, then of ``vimpnet_ros``) and checks the install tree:
messages, Python package, node executable, the ``vimpnet-ros`` command, launch and config, and the tests
``colcon test`` would run; without ``vimpnet_msgs`` the configure step stops with a line saying how to build it.
``test_colcon_build_and_test`` runs colcon itself (``colcon-common-extensions`` from PyPI, in the dev extras):
``colcon build`` of both packages (messages first), the ``vimpnet-ros`` command after sourcing the workspace,
``colcon test`` and ``colcon test-result``. Both build
against the PyPI ROS wheels in the environment (no distro installed). The sources are copied out of the
repository first (what a clone holds), because the .venv inside the checkout would otherwise make CMake see
numpy's include directory as part of the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PREFIX = Path(sys.prefix)
#: The tests `colcon test` runs (CMakeLists.txt, BUILD_TESTING): one ament pytest target per area.
COLCON_TEST_TARGETS = ("vimpnet_ros_model", "vimpnet_ros_bags")
#: A subcommand that `vimpnet-ros --help` must list (the bag tools that used to need `python3 -m`).
BAG_SUBCOMMAND = "bag-eval"

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def copy_clone_files(destination: Path) -> None:
    """Copy what a clone of the working tree holds (tracked files and new, not ignored ones) to ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        if (ROOT / relative).is_file():  # a file deleted in the working tree but still in the index is skipped
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, destination / relative)


def build_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a shell with the ROS underlay "sourced": here the PyPI wheels' prefix."""
    return {
        **os.environ,
        "AMENT_PREFIX_PATH": str(PREFIX),
        "CMAKE_PREFIX_PATH": str(PREFIX),
        "PATH": f"{PREFIX / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "COLCON_HOME": str(tmp_path / "colcon_home"),  # no user defaults or mixins
    }


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    """Run ``command``; its output on success, a failure showing the output's tail otherwise."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{output[-6000:]}"
    return output


def configure_command(source: Path, install: Path, prefixes: list[Path]) -> list[str]:
    """CMake's configure step as colcon runs it for an ament_cmake package."""
    return [
        "cmake",
        str(source),
        f"-DCMAKE_PREFIX_PATH={';'.join(map(str, prefixes))}",
        f"-DCMAKE_INSTALL_PREFIX={install}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=ON",
    ]


def test_full_cmake_install(tmp_path: Path) -> None:
    source, install = tmp_path / "src", tmp_path / "install"
    copy_clone_files(source)
    env = build_env(tmp_path)

    # Without the interface package, vimpnet_ros stops at configure and says how to build both (the
    # environment has vimpnet_msgs built by the set-up, so CMake is told not to find it).
    lonely = tmp_path / "build_without_messages"
    lonely.mkdir()
    hidden = [*configure_command(source, install, [PREFIX]), "-DCMAKE_DISABLE_FIND_PACKAGE_vimpnet_msgs=TRUE"]
    result = subprocess.run(hidden, cwd=lonely, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    said = " ".join((result.stdout + result.stderr).split())  # CMake wraps its messages
    assert "colcon build --base-paths src/vimpnet_ros src/vimpnet_ros/vimpnet_msgs" in said, said[-2000:]

    # colcon's order: the interface package first, then the node package against it.
    for name, folder in (("vimpnet_msgs", source / "vimpnet_msgs"), ("vimpnet_ros", source)):
        build = tmp_path / "build" / name
        build.mkdir(parents=True)
        run(
            configure_command(folder, install, [install, PREFIX]),
            build,
            {**env, "AMENT_PREFIX_PATH": f"{install}:{PREFIX}"},
        )
        run(["cmake", "--build", ".", "--target", "install", "--parallel", "2"], build, env)

    site = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    package = site / "vimpnet_ros"
    assert (site / "vimpnet_msgs" / "msg" / "_rain_status.py").exists()
    assert not (package / "msg").exists(), "vimpnet_ros must not carry messages of its own"
    assert (install / "share" / "vimpnet_msgs" / "msg" / "RainStatus.msg").exists()
    assert "__version__" in (package / "__init__.py").read_text()
    assert os.access(install / "lib" / "vimpnet_ros" / "vimpnet_node", os.X_OK)
    assert os.access(install / "bin" / "vimpnet-ros", os.X_OK)
    assert (install / "share" / "vimpnet_ros" / "launch" / "vimpnet.launch.py").exists()
    assert (install / "share" / "vimpnet_ros" / "config" / "vimpnet.yaml").exists()
    for name in ("vimpnet_ros", "vimpnet_msgs"):
        assert (install / "share" / "ament_index" / "resource_index" / "packages" / name).exists()

    # BUILD_TESTING registers the pytest targets that `colcon test` runs through ctest.
    listed = run(["ctest", "-N"], tmp_path / "build" / "vimpnet_ros", env)
    for target in COLCON_TEST_TARGETS:
        assert f": {target}\n" in listed, listed
    assert f"Total Tests: {len(COLCON_TEST_TARGETS)}" in listed, listed

    # The installed tree alone (as after `source install/setup.bash`) provides the package, the messages and
    # the `vimpnet-ros` command.
    run_env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "LD_LIBRARY_PATH": f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        "PYTHONNOUSERSITE": "1",
        "PATH": f"{install / 'bin'}{os.pathsep}{PREFIX / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    check = (
        "import vimpnet_ros, vimpnet_msgs.msg as m; from pathlib import Path;"
        f"assert Path(vimpnet_ros.__file__).parent == Path({str(package)!r}), vimpnet_ros.__file__;"
        "print(m.RainStatus().PROCESSING_FALLBACK)"
    )
    assert run([sys.executable, "-c", check], Path("/"), run_env, timeout=120).strip() == "2"
    help_text = run(["vimpnet-ros", "--help"], Path("/"), run_env, timeout=120)
    assert BAG_SUBCOMMAND in help_text, help_text


def test_colcon_build_and_test(tmp_path: Path) -> None:
    colcon = PREFIX / "bin" / "colcon"
    assert colcon.exists(), f"{colcon} is missing: colcon-common-extensions is in the dev extras (make setup)"
    workspace = tmp_path / "ws"
    copy_clone_files(workspace / "src" / "vimpnet_ros")
    env = build_env(tmp_path)
    cmake_args = ["--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}"]
    # The README's command: both package folders named, colcon orders them (messages first).
    base_paths = ["--base-paths", "src/vimpnet_ros", "src/vimpnet_ros/vimpnet_msgs"]
    listed = run([str(colcon), "list", "--topological-order", "--names-only", *base_paths], workspace, env)
    assert listed.split() == ["vimpnet_msgs", "vimpnet_ros"], listed
    run([str(colcon), "build", *base_paths, *cmake_args], workspace, env)

    # `source install/setup.bash` puts the command on PATH and the installed packages first on sys.path.
    shell = (
        "source install/setup.bash && command -v vimpnet-ros && vimpnet-ros --help && "
        "python3 -c 'from vimpnet_msgs.msg import RainStatus; import vimpnet_ros; print(vimpnet_ros.__file__)'"
    )
    output = run(["bash", "-c", shell], workspace, env, timeout=120)
    command_path, *_, module_path = output.strip().splitlines()
    assert Path(command_path) == workspace / "install" / "vimpnet_ros" / "bin" / "vimpnet-ros"
    assert BAG_SUBCOMMAND in output, output
    assert Path(module_path).is_relative_to(workspace / "install"), module_path

    run([str(colcon), "test", *base_paths, "--packages-select", "vimpnet_ros"], workspace, env, timeout=1800)
    summary = run([str(colcon), "test-result", "--verbose"], workspace, env)  # non-zero on any failure
    results = workspace / "build" / "vimpnet_ros" / "test_results" / "vimpnet_ros"
    totals = {}
    for target in COLCON_TEST_TARGETS:
        suite = ET.parse(results / f"{target}.xunit.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert suite is not None, target
        totals[target] = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    for target, counts in totals.items():
        assert counts["tests"] >= 10 and counts["failures"] == counts["errors"] == 0, (target, counts, summary)
