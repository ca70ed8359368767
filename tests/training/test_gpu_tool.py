"""tools/train_gpu.py: its config stays valid, and it runs end to end without PyYAML, scikit-image or ROS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tool_loader import load_tool
from vimpnet_ros.training.config import config_from_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = REPO_ROOT / "tools" / "train_gpu.py"
#: Runs a script with the modules a bare GPU machine lacks made unimportable.
WITHOUT_EXTRAS = """
import runpy, sys
for name in ("yaml", "skimage", "rclpy", "rosbags", "matplotlib", "mcap"):
    sys.modules[name] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_gpu_config_validates_and_renders_online(tmp_path: Path) -> None:
    tool = load_tool("train_gpu")
    args = tool.parse_args(["--out", str(tmp_path), "--recipe", "road", "--model", "vimpnet_lite_s2wm", "--compile"])
    config = config_from_dict(tool.build_config(args, "heldout", tmp_path))
    assert config.data.train.type == "online" and config.data.train.clean == "road"
    assert config.compile and config.model == "vimpnet_lite_s2wm"
    assert config.log.save_every_seconds == 60.0 and config.data.batch_size % config.data.train.clips_per_item == 0
    assert config.data.val is not None and config.data.val.seed != config.data.train.seed != tool.HELDOUT_SEED
    assert config.loss.mask_balance == 0.25 and config.loss.mask_dice == 4.0 and config.loss.mask == 8.0


def test_the_gated_recipe_matches_its_packaged_config(tmp_path: Path) -> None:
    """The default recipe writes out vimpnet_lite_gated.yaml's model, data mix and loss (no YAML on a GPU machine)."""
    from vimpnet_ros.training.config import load_train_config

    tool = load_tool("train_gpu")
    args = tool.parse_args(["--out", str(tmp_path)])
    config = config_from_dict(tool.build_config(args, "heldout", tmp_path, "wide"))
    packaged = load_train_config("vimpnet_lite_gated")
    assert config.model == packaged.model == "vimpnet_lite_gated"
    train = config.data.train
    assert (train.clean, train.clear_fraction, train.rain_config) == (
        packaged.data.train.clean,
        packaged.data.train.clear_fraction,
        packaged.data.train.rain_config,
    )
    assert config.loss == packaged.loss
    with_term = config_from_dict(
        tool.build_config(tool.parse_args(["--out", str(tmp_path), "--no-worse", "2"]), None, tmp_path)
    )
    assert with_term.loss.no_worse == 2.0 and packaged.loss.no_worse == 0.0


@pytest.mark.slow
def test_a_tiny_cpu_budget_leaves_weights_logs_and_held_out_scores(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable, "-c", WITHOUT_EXTRAS, str(TOOL), "--out", str(out), "--budget-s", "20", "--device", "cpu",
        "--workers", "1", "--batch-size", "2", "--clips-per-item", "2", "--crop", "32", "--size", "64", "48",
        "--frames", "5", "--heldout-videos", "1", "--heldout-frames", "5", "--val-every", "0", "--reserve-s", "10",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"]["stopped_by"] == "max_seconds" and summary["train"]["steps"] >= 1
    assert (out / "run" / "final.pth").is_file() and (out / "run" / "config.json").is_file()
    assert "psnr_in_mask" in summary["heldout"]["gain"] and summary["heldout"]["drop_mask"]["threshold"] == 0.5
    assert "unavailable" in summary["log"][0]  # no PyYAML: the default rain ranges, and it says so
