"""The colcon path: a full CMake build installs messages, Python package, node executable, launch and config.

This is what `colcon build` runs on a ROS 2 distro; here it is built against the PyPI ROS wheels in .venv.
The source is copied out of the repository first because the .venv inside the checkout would otherwise make
CMake see numpy's include directory as part of the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def test_full_cmake_install(tmp_path: Path) -> None:
    prefix = Path(sys.prefix)
    source, build, install = tmp_path / "src", tmp_path / "build", tmp_path / "install"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for relative in tracked:
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, source / relative)
    build.mkdir()
    env = {**os.environ, "AMENT_PREFIX_PATH": str(prefix), "PATH": f"{prefix / 'bin'}:{os.environ['PATH']}"}
    configure = [
        "cmake",
        str(source),
        f"-DCMAKE_PREFIX_PATH={prefix}",
        f"-DCMAKE_INSTALL_PREFIX={install}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
    ]
    for command in (configure, ["cmake", "--build", ".", "--target", "install", "--parallel", "2"]):
        result = subprocess.run(command, cwd=build, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    site = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    package = site / "vimpnet_ros"
    assert (package / "msg" / "_rain_status.py").exists()
    assert "__version__" in (package / "__init__.py").read_text(), "the generated empty __init__.py won"
    assert os.access(install / "lib" / "vimpnet_ros" / "vimpnet_node", os.X_OK)
    assert (install / "share" / "vimpnet_ros" / "launch" / "vimpnet.launch.py").exists()
    assert (install / "share" / "vimpnet_ros" / "config" / "vimpnet.yaml").exists()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "vimpnet_ros").exists()

    # The installed tree alone (as after `source install/setup.bash`) provides the package and its messages.
    run_env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "LD_LIBRARY_PATH": f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        "PYTHONNOUSERSITE": "1",
    }
    check = (
        "import vimpnet_ros, vimpnet_ros.msg as m; from pathlib import Path;"
        "assert Path(vimpnet_ros.__file__).parent == Path(m.__file__).parent.parent, vimpnet_ros.__path__;"
        "print(m.RainStatus().PROCESSING_FALLBACK)"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
