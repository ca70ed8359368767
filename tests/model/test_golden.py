"""Golden equivalence: our generator reproduces the reference implementation's outputs.

Weights come from the recipe in ``golden/README.md`` (hash-checked in conftest),
the input and outputs from ``vimpnet_seed20231024_5x256x256.npz``. Tolerance as
stated there: max abs 2e-4, mean abs 1e-5 on every array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vimpnet_ros.model import VimpNet, get_config
from vimpnet_ros.model.checkpoint import load_state_dict_strict

MAX_ABS = 2e-4
MEAN_ABS = 1e-5
ARRAYS = ("stage1", "drop_mask", "streak_map", "output", "streak_quarter", "flows_backward", "flows_forward")


@pytest.fixture(scope="module")
def golden_results(reference_dir: Path, golden_weights: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Run every stage once on the golden clip; {array name: (ours, reference)}."""
    data = np.load(reference_dir / "golden" / "vimpnet_seed20231024_5x256x256.npz")
    model = VimpNet(get_config("vimpnet")).eval()
    load_state_dict_strict(model, golden_weights, "golden weights")
    lqs = torch.from_numpy(data["input"])
    with torch.no_grad():
        flows_backward, flows_forward = model.compute_flows(lqs)
        feats = model.extract_features(lqs)
        streaks = model.estimate_streaks(feats)
        backward, forward = model.propagate(feats, flows_backward, flows_forward, streaks)
        stage1, drop_mask = model.reconstruct(lqs, feats, backward, forward)
        output = model.remove_drops(stage1, drop_mask)
        streak_map = model.upsample_streaks(streaks)
    ours = {
        "stage1": stage1,
        "drop_mask": drop_mask,
        "streak_map": streak_map,
        "output": output,
        "streak_quarter": streaks,
        "flows_backward": flows_backward,
        "flows_forward": flows_forward,
    }
    return {name: (ours[name].numpy(), data[name]) for name in ARRAYS}


@pytest.mark.parametrize("name", ARRAYS)
def test_matches_reference(golden_results: dict[str, tuple], name: str) -> None:
    ours, reference = golden_results[name]
    assert ours.shape == reference.shape
    error = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    assert error.max() < MAX_ABS, f"{name}: max abs error {error.max():.2e} >= {MAX_ABS}"
    assert error.mean() < MEAN_ABS, f"{name}: mean abs error {error.mean():.2e} >= {MEAN_ABS}"


def test_outputs_are_not_trivial(golden_results: dict[str, tuple]) -> None:
    """Guard against a comparison that passes because both sides are ~0 or equal to the input."""
    for name in ("output", "stage1", "flows_backward", "streak_quarter"):
        _, reference = golden_results[name]
        assert np.abs(reference).mean() > 100 * MEAN_ABS, name
    stage1, _ = golden_results["stage1"]
    output, _ = golden_results["output"]
    assert np.abs(output - stage1).mean() > 1e-3  # stage 2 changes the frames
