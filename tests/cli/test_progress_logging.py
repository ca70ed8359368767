"""Warnings logged while a progress bar is drawn get lines of their own (the CLI routes logging through tqdm)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO_ROOT
from vimpnet_ros.bags.images import array_to_image, make_header
from vimpnet_ros.bags.io import BagWriter
from vimpnet_ros.bags.typestore import make_typestore

#: The CLI's log line prefix (``logging.basicConfig`` format in ``vimpnet_ros.cli.main``).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (WARNING|INFO|ERROR) ")


def _bag_with_broken_frames(path: Path, frames: int = 3, broken: tuple[int, ...] = (0, 2)) -> None:
    """A camera bag whose frames ``broken`` are truncated (bag-eval warns and goes on)."""
    store = make_typestore()
    rng = np.random.default_rng(1)
    with BagWriter(path, "mcap", store) as writer:
        for index in range(frames):
            stamp = 1_000_000_000 + index * 100_000_000
            image = array_to_image(
                store, rng.integers(0, 256, (48, 64, 3), np.uint8), "rgb8", make_header(store, stamp, "c")
            )
            if index in broken:
                image.data = image.data[: image.data.size // 2]
            writer.write("/camera/image", image, stamp)


def test_bag_eval_warnings_do_not_break_the_progress_bar(checkpoint: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    _bag_with_broken_frames(bag)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "vimpnet_ros", "bag-eval", str(bag), "--report", str(tmp_path / "report")]
    command += ["--checkpoint", str(checkpoint), "-p", "backend:=torch", "-p", "device:=cpu", "--no-output-bag"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bag-eval:" in result.stderr and "frame/s" in result.stderr  # the bar was drawn (stderr is not a tty)
    warnings = [line for line in result.stderr.split("\n") if "frame dropped" in line]
    assert len(warnings) == 2, result.stderr
    for line in warnings:
        # What the terminal shows of the line is what follows its last carriage return: the log record alone.
        assert LOG_LINE.match(line.split("\r")[-1]), repr(line)
