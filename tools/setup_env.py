#!/usr/bin/env python3
"""Create or update the development environment in ``.venv`` (the README's set-up step).

Steps: create the virtual environment, install torch 2.13.0 (the CPU build on our
machines), the package (editable) with its Python dependencies, every extra that installs
on a CPU machine (training, evaluation, export, test, fleet, dev) and the ROS 2 Kilted
wheels from PyPI, then build the interface package ``vimpnet_msgs`` with CMake into the
environment so that ``from vimpnet_msgs.msg import RainStatus`` works with no variables to set.

It is idempotent: a fingerprint of every input (this script, setup.py, package.xml,
CMakeLists.txt, the interface package) is stored in the environment; when it matches and the
messages import, nothing is touched. Standard library only, so it runs before the
environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_REQUIREMENT = "torch==2.13.0"
#: Every extra except tensorrt (CUDA only): `make test` covers training, evaluation, export and the fleet.
PACKAGE_EXTRAS = "ros-pypi,dev,train,eval,export,test,fleet"
#: The interface package (its own CMake project), built into the environment.
MESSAGES_PACKAGE = "vimpnet_msgs"
FINGERPRINT_INPUTS = (
    "tools/setup_env.py",
    "setup.py",
    "pyproject.toml",
    "package.xml",
    "CMakeLists.txt",
    f"{MESSAGES_PACKAGE}/package.xml",
    f"{MESSAGES_PACKAGE}/CMakeLists.txt",
)
#: What earlier set-ups wrote to put messages inside vimpnet_ros (removed: it would shadow the package).
LEGACY_MESSAGES_DIR_NAME = "vimpnet_ros_messages"
STAMP_NAME = ".vimpnet_ros_setup.json"


def log(message: str) -> None:
    """Progress line on stderr (stdout stays clean for scripts)."""
    print(f"[setup] {message}", file=sys.stderr, flush=True)


def run(command: list[str], **kwargs: object) -> None:
    """Run a command, echoing it, and stop the set-up if it fails."""
    log("$ " + " ".join(str(part) for part in command))
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def fingerprint() -> str:
    """Hash of everything that changes what the set-up installs or builds."""
    digest = hashlib.sha256()
    paths = [ROOT / name for name in FINGERPRINT_INPUTS] + sorted((ROOT / MESSAGES_PACKAGE / "msg").glob("*.msg"))
    for path in paths:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    digest.update(f"{TORCH_REQUIREMENT};{PACKAGE_EXTRAS};{sys.version_info[:2]}".encode())
    return digest.hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def site_packages(venv: Path) -> Path:
    python = venv_python(venv)
    output = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1"},
    ).stdout
    return Path(output.strip())


def messages_import(venv: Path) -> bool:
    """True when the built messages import in a fresh interpreter of the environment."""
    python = venv_python(venv)
    if not python.exists():
        return False
    result = subprocess.run(
        [str(python), "-c", f"from {MESSAGES_PACKAGE}.msg import RainStatus; RainStatus()"],
        capture_output=True,
        cwd="/",
    )
    return result.returncode == 0


def install_python_packages(venv: Path) -> None:
    python = str(venv_python(venv))
    run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    # torch first and pinned: an unpinned resolution would pull the CUDA build (several GB).
    run([python, "-m", "pip", "install", "--quiet", TORCH_REQUIREMENT])
    run([python, "-m", "pip", "install", "--quiet", "--editable", f"{ROOT}[{PACKAGE_EXTRAS}]", TORCH_REQUIREMENT])


def remove_legacy_messages(venv: Path) -> None:
    """Remove the message folder earlier set-ups merged into ``vimpnet_ros`` (it would shadow the package)."""
    (site_packages(venv) / f"{LEGACY_MESSAGES_DIR_NAME}.pth").unlink(missing_ok=True)
    shutil.rmtree(venv / "lib" / LEGACY_MESSAGES_DIR_NAME, ignore_errors=True)


def build_messages(venv: Path) -> None:
    """Generate and install the interface package into the environment with CMake + rosidl.

    The Python module goes to the environment's site-packages; its extensions find the
    message libraries in ``<venv>/lib`` through their RPATH.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise SystemExit("[setup] cmake is required to build the messages (apt-get install cmake)")
    build_dir = ROOT / "build" / MESSAGES_PACKAGE
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "AMENT_PREFIX_PATH": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    run(
        [
            cmake,
            str(ROOT / MESSAGES_PACKAGE),
            "-DBUILD_TESTING=OFF",
            f"-DCMAKE_PREFIX_PATH={venv}",
            f"-DCMAKE_INSTALL_PREFIX={venv}",
            f"-DPython3_EXECUTABLE={venv_python(venv)}",
            f"-DPYTHON_INSTALL_DIR={site_packages(venv).relative_to(venv)}",
        ],
        cwd=build_dir,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    run(
        [cmake, "--build", ".", "--target", "install", "--parallel", str(os.cpu_count() or 2)],
        cwd=build_dir,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv", help="environment folder (default: .venv)")
    parser.add_argument("--force", action="store_true", help="reinstall and rebuild even if up to date")
    args = parser.parse_args()
    venv: Path = args.venv.resolve()
    stamp_path = venv / STAMP_NAME
    wanted = fingerprint()

    if not args.force and stamp_path.exists():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("fingerprint") == wanted and messages_import(venv):
            log(f"environment {venv} is up to date (nothing changed)")
            return 0

    started = time.monotonic()
    if sys.version_info[:2] != (3, 11):
        log(f"warning: the ROS 2 Kilted wheels are built for Python 3.11; this is {sys.version.split()[0]}")
    if not venv_python(venv).exists():
        run([sys.executable, "-m", "venv", str(venv)])
    install_python_packages(venv)
    remove_legacy_messages(venv)
    build_messages(venv)
    if not messages_import(venv):
        raise SystemExit(f"[setup] the messages were built but `from {MESSAGES_PACKAGE}.msg import RainStatus` fails")
    stamp_path.write_text(json.dumps({"fingerprint": wanted, "seconds": round(time.monotonic() - started, 1)}) + "\n")
    log(f"environment {venv} ready in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
