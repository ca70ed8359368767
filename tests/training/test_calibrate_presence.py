"""Calibrating ``stage1_presence``: the three renderings, the choice rule and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vimpnet_ros.data import load_rain_config, make_road_clip, render_video
from vimpnet_ros.model.checkpoint import load_model
from vimpnet_ros.training.calibrate_presence import KINDS, calibrate, candidates, choose, kind_configs, main


def test_the_three_kinds_are_rain_drops_alone_and_no_rain() -> None:
    clean = make_road_clip(3, (96, 64), np.random.default_rng(0))
    videos = {
        kind: render_video(clean, config, np.random.default_rng(1))
        for kind, config in kind_configs(load_rain_config("heldout")).items()
    }
    assert tuple(videos) == KINDS
    assert videos["rain"].streak_map.any()
    assert not videos["drops_only"].streak_map.any() and videos["drops_only"].drop_mask.any()
    assert not videos["no_rain"].streak_map.any() and not videos["no_rain"].drop_mask.any()


def test_the_choice_keeps_rain_and_then_leaves_streak_free_frames_best() -> None:
    off = {"rain": 30.0, "drops_only": 44.0, "no_rain": 50.0}
    table = {
        (0.2, 0.3): {"rain": 29.5, "drops_only": 60.0, "no_rain": 54.0},  # best without streaks, costs rain
        (0.1, 0.2): {"rain": 30.0, "drops_only": 57.0, "no_rain": 54.0},
        (0.12, 0.2): {"rain": 30.0, "drops_only": 57.0, "no_rain": 54.0},  # a tie: the smaller low wins
        (0.05, 0.1): {"rain": 30.1, "drops_only": 52.0, "no_rain": 54.0},
    }
    assert choose(off, table) == (0.1, 0.2)
    assert choose({**off, "rain": 31.0}, table) is None
    assert all(0.0 <= low < high <= 1.0 for low, high in candidates())


def test_calibration_scores_every_candidate_and_leaves_the_models_rule(tmp_path: Path) -> None:
    """Two small clips through the shipped default weights: every candidate and the rule off are scored per kind,
    the command prints the table and the choice and writes them as JSON, and the model keeps its own rule."""
    model = load_model(None, "vimpnet_lite_gated")
    rule = model.stage1_presence
    grid = candidates(lows=(0.0, 0.1), widths=(0.05,))
    result = calibrate(model, load_rain_config("wide"), clips=2, frames=3, size=(96, 64), window=2, grid=grid)
    assert model.stage1_presence == rule
    assert set(result.table) == set(grid) and set(result.off) == set(KINDS)
    assert all(np.isfinite(list(scores.values())).all() for scores in result.table.values())
    # A rule can only bring a streak-free frame nearer to its input, which is its target up to the camera.
    assert result.table[(0.1, 0.15)]["no_rain"] >= result.off["no_rain"] - 1e-9
    output = tmp_path / "calibration.json"
    args = ["--clips", "1", "--frames", "3", "--window", "2", "--size", "64", "48", "--output", str(output)]
    assert main(args) == 0
    saved = json.loads(output.read_text(encoding="utf-8"))
    assert set(saved) == {"off", "table", "choice"} and len(saved["table"]) == len(candidates())


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--frames", "3", "--window", "5"]) == 2
    assert "--frames >= --window" in capsys.readouterr().err
    ungated = ["--model", "vimpnet_lite", "--clips", "1", "--frames", "2", "--window", "2", "--size", "32", "32"]
    assert main(ungated) == 2
    assert "gated model" in capsys.readouterr().err
