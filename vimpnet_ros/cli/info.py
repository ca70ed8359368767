"""``vimpnet-ros info``: versions and locations, for bug reports."""

from __future__ import annotations

import argparse
import importlib.util
import platform
from pathlib import Path

import vimpnet_ros


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print versions of the package and of the libraries it runs on."""
    print(f"vimpnet_ros {vimpnet_ros.__version__} at {Path(vimpnet_ros.__file__).parent}")
    print(f"python {platform.python_version()} on {platform.machine()}")
    for module in ("torch", "numpy", "cv2", "rclpy", "onnxruntime", "torch_tensorrt"):
        spec = importlib.util.find_spec(module)
        if spec is None:
            print(f"{module}: not installed")
            continue
        imported = importlib.import_module(module)
        print(f"{module}: {getattr(imported, '__version__', 'installed')}")
    messages = importlib.util.find_spec("vimpnet_msgs")
    print(f"vimpnet_msgs: {'built' if messages else 'NOT built (run: make setup, or build it with colcon)'}")
    return 0
