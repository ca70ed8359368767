"""Averaging the weights of several checkpoints (what ``ship_weights`` does with repeated ``--checkpoint``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vimpnet_ros.errors import CheckpointError
from vimpnet_ros.model.checkpoint import build_model, load_model
from vimpnet_ros.training.checkpoints import average_models, save_model


def _saved(tmp_path: Path, name: str, config: str, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_model(tmp_path / f"{name}.pth", build_model(config))


def test_the_average_is_the_mean_of_every_tensor(tmp_path: Path) -> None:
    paths = [_saved(tmp_path, f"w{seed}", "vimpnet_lite_gated", seed) for seed in range(3)]
    states = [load_model(path).state_dict() for path in paths]
    averaged = average_models(paths).state_dict()
    assert averaged.keys() == states[0].keys()
    for name, tensor in averaged.items():
        expected = sum(state[name] for state in states) / 3
        torch.testing.assert_close(tensor, expected, rtol=1e-6, atol=1e-6)
    changed = [name for name in averaged if not torch.equal(averaged[name], states[0][name])]
    assert len(changed) > len(averaged) // 2  # the seeds give different weights: the mean is none of them


def test_one_checkpoint_comes_back_unchanged(tmp_path: Path) -> None:
    path = _saved(tmp_path, "one", "vimpnet_lite", 0)
    for name, tensor in average_models([path], "vimpnet_lite").state_dict().items():
        assert torch.equal(tensor, load_model(path).state_dict()[name]), name


def test_checkpoints_of_different_models_are_refused(tmp_path: Path) -> None:
    lite, gated = _saved(tmp_path, "lite", "vimpnet_lite", 0), _saved(tmp_path, "gated", "vimpnet_lite_gated", 0)
    with pytest.raises(CheckpointError, match="cannot average"):
        average_models([lite, gated])
    with pytest.raises(CheckpointError, match="no checkpoint"):
        average_models([])
