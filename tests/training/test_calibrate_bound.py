"""Calibrating ``propagation_bound``: the measurement with the bound off, the bound it gives, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vimpnet_ros.data import load_rain_config
from vimpnet_ros.model import get_config
from vimpnet_ros.model.checkpoint import load_model
from vimpnet_ros.training.calibrate_bound import BOUND_MARGIN, calibrate, main
from vimpnet_ros.training.calibrate_presence import KINDS


def test_calibration_measures_the_unbounded_features_of_each_kind_and_leaves_the_models_bound() -> None:
    """Shipped default weights under a bound far below their norms: every kind is measured as the weights make
    the features (above that bound), the bound is the margin times the largest, and the model keeps its own."""
    model = load_model(None, "vimpnet_lite_gated")
    model.set_propagation_bound(0.05)
    result = calibrate(model, load_rain_config("wide"), clips=1, frames=3, size=(96, 64), window=3, passes=2)
    assert model.config.propagation_bound == 0.05
    assert set(result.largest) == set(KINDS)
    assert all(0.05 < norm < math.inf for norm in result.largest.values())
    assert result.bound == math.ceil(BOUND_MARGIN * max(result.largest.values()))


def test_the_command_prints_and_writes_the_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "bound.json"
    args = ["--clips", "1", "--frames", "2", "--window", "2", "--passes", "1", "--size", "64", "48"]
    assert main([*args, "--output", str(output)]) == 0
    saved = json.loads(output.read_text(encoding="utf-8"))
    assert set(saved) == {"largest", "bound", "margin"} and set(saved["largest"]) == set(KINDS)
    assert f"propagation_bound: {saved['bound']:g}" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--clips", "0"]) == 2
    assert "--clips >= 1" in capsys.readouterr().err
    assert main(["--model", "no_such_model", "--clips", "1", "--frames", "1", "--size", "32", "32"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 12 minutes on a 2-core Intel Xeon with one thread; more on a shared machine
def test_the_registered_bound_is_the_calibrated_one() -> None:
    """The default model's registered bound is what the command computes for its shipped weights: a change of
    weights without a new calibration fails here."""
    model = load_model(None, "vimpnet_lite_gated")
    result = calibrate(model, load_rain_config("wide"), clips=30, frames=8, size=(224, 160), window=5, passes=2)
    assert get_config("vimpnet_lite_gated").propagation_bound == result.bound
