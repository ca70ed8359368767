"""Fixtures for the rosbag tools: tiny sample bags written with rosbags in the test session."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
import yaml

from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag

#: Small enough to render in about a second, big enough for SSIM (11x11 window) and the model (multiples of 4).
TINY = SampleBagConfig(num_frames=6, size=(64, 48), fps=10.0, seed=3)


@pytest.fixture(scope="session")
def tiny_bag_mcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-frame MCAP sample bag (read-only: copy before changing)."""
    path = tmp_path_factory.mktemp("bags") / "tiny_mcap"
    write_sample_bag(path, TINY)
    return path


@pytest.fixture(scope="session")
def tiny_bag_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 6 frames as a sqlite3 bag."""
    path = tmp_path_factory.mktemp("bags") / "tiny_sqlite"
    write_sample_bag(path, SampleBagConfig(**{**TINY.__dict__, "storage": "sqlite3"}))
    return path


def make_humble_like(path: Path) -> None:
    """Turn a sqlite3 bag written by rosbags into what Humble's rosbag2 writes: metadata v5, no type definitions."""
    db = next(path.glob("*.db3"))
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE message_definitions")
        connection.execute("UPDATE schema SET schema_version = 3")
    metadata_path = path / "metadata.yaml"
    metadata = yaml.safe_load(metadata_path.read_text())
    info = metadata["rosbag2_bagfile_information"]
    info["version"] = 5
    for key in ("ros_distro", "custom_data"):
        info.pop(key, None)
    for topic in info["topics_with_message_count"]:
        topic["topic_metadata"].pop("type_description_hash", None)
    metadata_path.write_text(yaml.safe_dump(metadata))


#: Runs one ``vimpnet_ros.cli`` subcommand module (``python -c RUNNER module args...``), as the CLI would.
CLI_RUNNER = (
    "import argparse, importlib, logging, sys; logging.basicConfig(level=logging.INFO); "
    "module = importlib.import_module('vimpnet_ros.cli.' + sys.argv[1]); "
    "parser = argparse.ArgumentParser(); module.add_arguments(parser); "
    "sys.exit(module.run(parser.parse_args(sys.argv[2:])))"
)


def cli_command(module: str, *args: str) -> list[str]:
    """Command line running the subcommand module ``module`` with ``args`` in a fresh interpreter."""
    return [sys.executable, "-c", CLI_RUNNER, module, *args]


def collect_lines(stream: IO[str] | None) -> list[str]:
    """A process's output lines, collected by a background thread (the list grows as lines arrive)."""
    lines: list[str] = []

    def pump() -> None:
        assert stream is not None
        for line in stream:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(lines: list[str], text: str, timeout: float) -> bool:
    """Whether a line containing ``text`` arrives within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in lines):
            return True
        time.sleep(0.05)
    return False
