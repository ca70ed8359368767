"""Tools that write bags stop cleanly on SIGINT and SIGTERM: real signals to real processes on real bags.

The output bag is finished and readable with what was done, bag-eval's report says it was
interrupted (frames done of total), the tool prints one line and exits 130 or 143, and no
hidden ``.<bag>.partial-*`` folder is left behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.bags.conftest import cli_command, collect_lines, wait_for_line
from vimpnet_ros.bags.io import BagReader
from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag


def _start(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``command``; its stderr lines are collected as they come."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, collect_lines(process.stderr)


@pytest.mark.slow
def test_bag_eval_stops_on_sigint_and_sigterm_with_a_readable_bag_and_a_report(
    checkpoint: Path, tmp_path: Path, ros_env: dict[str, str]
) -> None:
    bag = tmp_path / "input"
    write_sample_bag(bag, SampleBagConfig(num_frames=60, size=(320, 192), fps=10.0, seed=5))
    runs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        report = tmp_path / f"report_{sig.name}"
        settings = ["-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "backend:=torch"]
        command = cli_command("bag_eval", str(bag), "--report", str(report), "--no-progress", *settings)
        runs[sig] = (report, *_start(command, ros_env))
    for _report, _process, lines in runs.values():
        assert wait_for_line(lines, "engine ready", 120), "".join(lines)
    time.sleep(4.0)  # some frames restored, far from all 60
    for sig, (_report, process, _lines) in runs.items():
        process.send_signal(sig)
    for sig, (report, process, lines) in runs.items():
        code = process.wait(120)
        time.sleep(0.2)
        stderr = "".join(lines)
        assert code == 128 + sig, f"{sig.name}: exit {code}\n{stderr[-3000:]}"
        assert "Traceback" not in stderr, stderr[-3000:]
        message = [line for line in lines if "interrupted by" in line]
        assert len(message) == 1 and f"interrupted by {sig.name} after" in message[0], stderr[-3000:]
        summary = json.loads((report / "report.json").read_text())["interrupted"]
        assert summary["signal"] == sig.name and 0 < summary["frames_done"] < summary["frames_total"] == 60, summary
        with BagReader(report / "output_bag") as reader:
            counts = {t.name: t.count for t in reader.topics()}
        assert counts["/camera/derained/image"] == summary["frames_done"], counts
        assert [p.name for p in report.iterdir() if p.name.startswith(".")] == []  # no .output_bag.partial-*


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_make_sample_bag_leaves_no_debris_when_stopped(tmp_path: Path, ros_env: dict[str, str], sig: int) -> None:
    output = tmp_path / "sample"
    command = cli_command("make_sample_bag", str(output), "--frames", "400", "--size", "320x192")
    process, lines = _start(command, ros_env)
    time.sleep(2.0)  # rendering: stopped at once (nothing is written yet)
    process.send_signal(sig)
    started = time.monotonic()
    code = process.wait(120)
    assert time.monotonic() - started < 10.0  # not after rendering all 400 frames
    time.sleep(0.2)
    stderr = "".join(lines)
    assert code == 128 + sig and "Traceback" not in stderr, f"exit {code}\n{stderr[-2000:]}"
    assert sum("interrupted by" in line for line in lines) == 1, stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    if output.exists():  # stopped while writing: a finished bag of the frames written
        with BagReader(output) as reader:
            assert reader.topics()
