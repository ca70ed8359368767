"""``vimpnet-ros render`` end to end, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from vimpnet_ros.data.layout import STREAMS, scan_vrds

REPO_ROOT = Path(__file__).resolve().parents[2]


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "vimpnet_ros", "render", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_render_bundled_with_preview(tmp_path: Path) -> None:
    output = tmp_path / "synthetic"
    preview = tmp_path / "preview.png"
    args = ["--output", str(output), "--videos", "2", "--frames", "6", "--size", "64x48", "--seed", "4"]
    args += ["--source", "bundled", "--images", "coffee,rocket"]
    result = _render(*args, "--preview", str(preview))
    assert result.returncode == 0, result.stderr
    assert "wrote 2 videos (12 frames)" in result.stdout
    index = scan_vrds(output, STREAMS)
    assert [(v.name, v.num_frames, v.width, v.height) for v in index.videos] == [
        ("0000_coffee", 6, 64, 48),
        ("0001_rocket", 6, 64, 48),
    ]
    sheet = cv2.imread(str(preview))
    assert sheet is not None and sheet.shape[0] > 4 * 100
    meta = json.loads((output / "meta" / "render.json").read_text())
    assert meta["seed"] == 4 and meta["source"] == "bundled" and len(meta["videos"]) == 2

    # The output folder is protected; --overwrite with the same seed reproduces the same data.
    first_lq = cv2.imread(str(index.videos[0].frames["lq"][3]))
    refused = _render(*args)
    assert refused.returncode == 2
    assert "--overwrite" in refused.stderr
    again = _render(*args, "--overwrite")
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(cv2.imread(str(index.videos[0].frames["lq"][3])), first_lq)


def test_render_road_scenes_by_default_with_the_held_out_presets(tmp_path: Path) -> None:
    output = tmp_path / "road"
    result = _render("--output", str(output), "--videos", "2", "--frames", "3", "--size", "64x48", "--seed", "9",
                     "--scene", "heldout", "--config", "heldout")  # fmt: skip
    assert result.returncode == 0, result.stderr
    index = scan_vrds(output, STREAMS)
    assert [(v.num_frames, v.width, v.height) for v in index.videos] == [(3, 64, 48)] * 2
    assert all("_road_" in v.name for v in index.videos)
    meta = json.loads((output / "meta" / "render.json").read_text())
    assert meta["source"] == "road" and meta["scene"] == "heldout"
    assert meta["config"]["drops"]["radius"] == [0.015, 0.085]  # the held-out rain ranges were used


def test_render_video_source_with_custom_config(tmp_path: Path) -> None:
    video = tmp_path / "clean.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 60))
    rng = np.random.default_rng(0)
    for _ in range(8):
        writer.write(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    writer.release()
    config = tmp_path / "rain.yaml"
    config.write_text("drops:\n  probability: 0.0\n")
    output = tmp_path / "out"
    result = _render(
        "--source", "video", "--input", str(video), "--output", str(output), "--videos", "3", "--frames", "4",
        "--config", str(config),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    index = scan_vrds(output)
    assert [(v.num_frames, v.width, v.height) for v in index.videos] == [(4, 80, 60)] * 2  # only 8 frames: 2 clips
    masks = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in index.videos[0].frames["01drop"]]
    assert all(mask.max() == 0 for mask in masks)  # the config disabled drops

    bad = tmp_path / "bad.yaml"
    bad.write_text("streaks:\n  sped: [1, 2]\n")
    failed = _render("--output", str(tmp_path / "x"), "--config", str(bad))
    assert failed.returncode == 2
    assert "unknown key(s) ['sped']" in failed.stderr
