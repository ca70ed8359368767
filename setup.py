"""Packaging for pip. colcon builds the same package through CMakeLists.txt + package.xml.

The version and name here must equal package.xml's (tests/test_package_metadata.py checks).
"""

from pathlib import Path

from setuptools import find_packages, setup

NAME = "vimpnet_ros"
VERSION = "0.1.0"

ROOT = Path(__file__).resolve().parent

setup(
    name=NAME,
    version=VERSION,
    description="Real-time video rain-streak and raindrop removal for ROS 2 camera topics with ViMP-Net",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[NAME, f"{NAME}.*"]),
    package_data={
        NAME: [
            "weights/*.pth",
            "weights/*.json",
            "data/configs/*.yaml",
            "training/configs/*.yaml",
        ],
    },
    data_files=[
        (f"share/{NAME}/launch", ["launch/vimpnet.launch.py"]),
        (f"share/{NAME}/config", ["config/vimpnet.yaml"]),
    ],
    # What the node imports at run time (a test runs the node and compares); everything else is an extra.
    install_requires=[
        # torch is pinned by the set-up step (tools/setup_env.py) to the CPU build 2.13.0;
        # any 2.13.x satisfies this without pulling another build.
        "torch>=2.13,<2.14",
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "pillow>=10",  # reads a compressed image's declared size before it is decoded
        "pyyaml>=6",
    ],
    extras_require={
        # Training: logs, progress bars, the clean clips drawn from scikit-image's sample images, footage from bags.
        "train": ["tensorboard>=2.15", "tqdm>=4.66", "scikit-image>=0.22", "rosbags>=0.10"],
        # Bag tools (bag-play, bag-eval, bag-info, record), evaluation reports and their plots.
        # mcap: the readable part of a truncated MCAP bag (rosbags needs the index such a file lacks).
        "eval": ["rosbags>=0.10", "rosbags-image[opencv-headless]>=0.10", "matplotlib>=3.8", "tqdm>=4.66", "mcap>=1.1"],
        # ONNX export and the ONNX Runtime backend (torch.onnx.export(dynamo=True) needs onnx and onnxscript).
        "export": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
        # The test suite: reference metrics (scikit-image) and an MCAP reader independent of rosbags.
        "test": ["pytest>=8", "pytest-timeout>=2.3", "scikit-image>=0.22", "mcap>=1.1", "mcap-ros2-support>=0.5"],
        # `vimpnet-ros fleet`: many bags over the cores of one machine or a cluster.
        "fleet": ["ray[default]>=2.40"],
        # ROS 2 Kilted from PyPI plus what building the messages needs (no ROS distro installed).
        "ros-pypi": [
            "ros-kilted-rclpy[fastrtps]",
            "ros-kilted-sensor-msgs",
            "ros-kilted-std-msgs",
            "ros-kilted-diagnostic-msgs",
            "ros-kilted-std-srvs",
            "ros-kilted-rosidl-default-generators",
            "ros-kilted-ament-cmake",
            "ros-kilted-ament-cmake-pytest",  # BUILD_TESTING: the tests `colcon test` runs
            "ros-ament-package",
            "ros-ament-cmake-ros-core",
            "ros-rosidl-core-generators",
            "ros-ament-cmake-include-directories",
            "empy==3.3.4",
            "lark",
            "catkin_pkg",
        ],
        # Lint, and colcon for the slow test that builds and tests the packages the way a ROS user does.
        "dev": ["ruff>=0.6", "colcon-common-extensions>=0.3"],
        # Vehicle GPUs: needs CUDA and TensorRT; cannot be installed on CPU-only machines.
        "tensorrt": ["torch-tensorrt==2.13.*"],
    },
    entry_points={
        "console_scripts": [
            "vimpnet-ros = vimpnet_ros.cli:main",
            "vimpnet_node = vimpnet_ros.node.main:main",
        ],
    },
)
