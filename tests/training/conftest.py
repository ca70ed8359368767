"""Fixtures for the training tests: a tiny synthetic VRDS folder and a tiny training config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vimpnet_ros.training.config import DataSource
from vimpnet_ros.training.data import prepare_source


@pytest.fixture(scope="session")
def tiny_train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two rendered rainy videos of 7 frames at 48x40 (all five VRDS streams)."""
    root = tmp_path_factory.mktemp("tiny_train") / "vrds"
    source = DataSource(type="synthetic", root=str(root), num_videos=2, num_frames=7, size=(48, 40), seed=5)
    return prepare_source(source)


@pytest.fixture(scope="session")
def tiny_val_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One rendered rainy video of 6 frames at 48x40 (seed never used for training)."""
    root = tmp_path_factory.mktemp("tiny_val") / "vrds"
    source = DataSource(type="synthetic", root=str(root), num_videos=1, num_frames=6, size=(48, 40), seed=6)
    return prepare_source(source)


def tiny_config_dict(train_root: Path, out_dir: Path, **changes: Any) -> dict[str, Any]:
    """A config that trains vimpnet_lite on 32x32 crops of the tiny set in about a second per step."""
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 7,
        "model": "vimpnet_lite",
        "device": "cpu",
        "precision": "fp32",
        "cpu_threads": 1,
        "data": {
            "train": {"type": "vrds", "root": str(train_root)},
            "crop_size": 32,
            "batch_size": 1,
            "num_workers": 0,
        },
        "optim": {"lr": 1e-3, "spynet_freeze_iters": 2, "grad_clip": 1.0},
        "schedule": {"total_iters": 20, "eta_min": 1e-6},
        "log": {
            "out_dir": str(out_dir),
            "log_every": 1,
            "val_every": 0,
            "save_every": 0,
            "tensorboard": False,
            "progress": False,
        },
    }
    for key, value in changes.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


@pytest.fixture
def make_config() -> Any:
    """The :func:`tiny_config_dict` factory (test modules cannot import conftest)."""
    return tiny_config_dict
