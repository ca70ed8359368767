"""Training on clips rendered on the fly: runs, stops at a time budget, logs JSON, resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from vimpnet_ros.errors import ConfigError, DatasetError
from vimpnet_ros.training.config import config_from_dict
from vimpnet_ros.training.trainer import Trainer

ONLINE = {"type": "online", "clean": "road", "num_videos": 40, "num_frames": 5, "size": [40, 40], "seed": 8,
          "clips_per_item": 2}  # fmt: skip


def _online_config(make_config: Any, out_dir: Path, **changes: Any) -> dict[str, Any]:
    """The tiny config (conftest) on 32x32 crops of road scenes rendered in the main process (no workers)."""
    settings = {"data.train": dict(ONLINE), "data.batch_size": 2, "data.crop_size": 32, "log.save_every": 2,
                "schedule.total_iters": 50, "loss.mask_balance": 1.0, "loss.mask_dice": 1.0}  # fmt: skip
    return make_config(Path("unused"), out_dir, **{**settings, **changes})


def _trainer(config: dict[str, Any], resume: str | Path | None = None) -> Trainer:
    trainer = Trainer(config_from_dict(config), log=lambda message: None)
    trainer.setup(resume=resume)
    return trainer


def test_online_training_logs_json_and_resumes_exactly(tmp_path: Path, make_config: Any) -> None:
    config = _online_config(make_config, tmp_path / "a")
    straight = _trainer(config)
    summary = straight.train(max_steps=3)
    assert summary["steps"] == 3 and summary["stopped_by"] == "max_steps"
    log = json.loads((tmp_path / "a" / "log.json").read_text())
    assert [record["step"] for record in log["history"]] == [1.0, 2.0, 3.0]
    assert {"mask", "dice", "stage1", "output"} <= set(log["history"][0])
    assert log["summary"]["steps"] == 3 and log["config"]["data"]["train"]["type"] == "online"
    expected = {k: v.clone() for k, v in straight.model.state_dict().items()}

    resumed = _trainer(config, resume=tmp_path / "a" / "checkpoints" / "iter_00000002.state.pt")
    assert resumed.step == 2
    resumed.train(max_steps=1)
    assert resumed.history[-1]["loss"] == straight.history[-1]["loss"]
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_a_time_budget_stops_the_run_and_saves(tmp_path: Path, make_config: Any) -> None:
    config = _online_config(make_config, tmp_path, **{"log.save_every": 0, "log.save_every_seconds": 0.01})
    trainer = _trainer(config)
    summary = trainer.train(max_seconds=0.0)  # the budget is checked after each step: one step runs
    assert summary["stopped_by"] == "max_seconds" and summary["steps"] == 1
    assert (tmp_path / "final.pth").is_file()
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["step"] == 1


def test_online_batches_hold_whole_items(make_config: Any) -> None:
    with pytest.raises(ConfigError, match=r"multiple of data\.train\.clips_per_item"):
        config_from_dict(_online_config(make_config, Path("unused"), **{"data.batch_size": 3}))
    with pytest.raises(ConfigError, match="clean source"):
        config_from_dict(_online_config(make_config, Path("unused"), **{"data.train": {**ONLINE, "clean": "photos"}}))


def test_clear_clips_target_their_input_and_mixed_sources_alternate() -> None:
    from vimpnet_ros.data.online import OnlineRainDataset, OnlineSpec

    spec = OnlineSpec(
        num_items=4, num_frames=5, size=(64, 48), clip_length=5, crop_size=32, clips_per_item=2, seed=3,
        clear_fraction=1.0, clean="mixed",
    )  # fmt: skip
    dataset = OnlineRainDataset(spec)
    item = dataset[0]
    assert torch.equal(item["gt"], item["lq"]) and torch.equal(item["drop"], item["lq"])
    assert item["01drop"].sum() == 0 and item["mstreak"].sum() == 0
    rainy = OnlineRainDataset(OnlineSpec(**{**spec.__dict__, "clear_fraction": 0.0}))[0]
    assert not torch.equal(rainy["gt"], rainy["lq"])
    # Items 0-2 are road scenes, item 3 a bundled photograph: different clean clips for the same seed.
    assert dataset.clean_clip(3).shape == dataset.clean_clip(0).shape
    with pytest.raises(DatasetError):
        OnlineSpec(num_items=1, num_frames=5, size=(64, 48), clip_length=5, crop_size=32, clear_fraction=1.5)


def test_online_training_on_footage_in_a_loader_worker(tmp_path: Path, make_config: Any) -> None:
    # 1280x720 frames read by a spawned loader worker (the index travels to it) as every item's clean clip.
    import cv2
    import numpy as np

    drive = tmp_path / "drive"
    drive.mkdir()
    for i, frame in enumerate(np.random.default_rng(1).integers(0, 255, (6, 720, 1280, 3), dtype=np.uint8)):
        cv2.imwrite(str(drive / f"{i:04d}.jpg"), frame)
    train = {**ONLINE, "footage": [str(drive)], "footage_fraction": 1.0}
    config = _online_config(make_config, tmp_path / "run", **{"data.train": train, "data.num_workers": 1})
    trainer = _trainer(config)
    assert trainer.train(max_steps=1)["steps"] == 1
    broken = {**ONLINE, "footage": [str(tmp_path / "missing")], "footage_fraction": 1.0}
    with pytest.raises(DatasetError, match="neither an image folder nor a video file"):
        _trainer(_online_config(make_config, tmp_path / "broken", **{"data.train": broken}))
