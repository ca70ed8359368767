"""``vimpnet-ros fleet`` as a user runs it: its own local Ray, a progress bar, exit 1 when a bag failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.fleet.conftest import SEGMENT_S, FleetBags


@pytest.mark.slow
def test_the_command_starts_ray_reports_the_failed_bag_and_finishes_the_others(
    fleet_bags: FleetBags, checkpoint: Path, tmp_path: Path
) -> None:
    output = tmp_path / "fleet"
    command = [sys.executable, "-m", "vimpnet_ros", "fleet", str(fleet_bags.inputs / "drive_gt"),
               str(fleet_bags.inputs / "cars" / "drive_c*"), "-o", str(output), "--workers", "2",
               "--segment-s", str(SEGMENT_S), "--checkpoint", str(checkpoint), "-p", "backend:=torch",
               "-p", "device:=cpu", "-p", "precision:=fp32"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "1/2 bags done" in done.stdout and "failed: drive_corrupt" in done.stdout
    assert "12/12" in done.stderr  # the progress bar counts frames
    report = json.loads((output / "fleet_report" / "report.json").read_text())
    assert report["summary"]["frames_run"] == 12 and report["summary"]["workers"] == 2
    assert (output / "drive_gt" / "derained" / "metadata.yaml").is_file()
