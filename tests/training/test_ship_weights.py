"""``ship_weights`` end to end on tiny sets: the shipped file, its record, both ways of scoring every set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vimpnet_ros.engine import EngineConfig
from vimpnet_ros.model.checkpoint import load_model
from vimpnet_ros.training.ship_weights import QUALITY_SETS, main


def test_ship_writes_the_file_and_scores_every_set_both_ways(checkpoint: Path, tmp_path: Path) -> None:
    model = EngineConfig().model
    out = tmp_path / "weights"
    args = ["--checkpoint", str(checkpoint), "--model", model, "--output-dir", str(out)]
    args += ["--held-out", str(tmp_path / "sets" / "heldout"), "--held-out-videos", "1", "--held-out-frames", "4"]
    assert main([*args, "--held-out-size", "48", "32"]) == 0
    load_model(out / f"{model}.pth", model)  # the shipped file loads
    record = json.loads((out / f"{model}.json").read_text())
    assert record["training"]["ship_command"].endswith("--held-out-size 48 32")
    streamed = record["test_sets_streamed"]
    assert (streamed["window_size"], streamed["output_frame"]) == (EngineConfig().window_size, "latest")
    for name, spec in QUALITY_SETS.items():
        for scores in (record["test_sets"][name], streamed[name]):
            assert scores["seed"] == spec.seed and scores["output_vs_input_psnr"] > 0
            assert ("gain_psnr" in scores) is not spec.no_rain
    # Streamed and averaged restoration differ on a model that changes frames (random weights do).
    heldout = record["test_sets"]["heldout"]["psnr_restored"]
    assert streamed["heldout"]["psnr_restored"] != pytest.approx(heldout, abs=1e-6)
