"""``vimpnet-ros train`` and ``vimpnet-ros evaluate`` end to end on a tiny config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vimpnet_ros.cli import main


def test_train_then_evaluate(
    tiny_train_root: Path, tiny_val_root: Path, tmp_path: Path, make_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tiny_train_root, tmp_path / "ignored", **{"schedule.total_iters": 3, "log.tensorboard": True})
    config["data"]["val"] = {"type": "vrds", "root": str(tiny_val_root)}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    code = main(["train", "--config", str(path), "--out-dir", str(out), "--set", "log.val_every=3"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["out_dir"] == str(out)
    assert summary["validation"]["psnr"] > 0
    assert (out / "final.pth").is_file() and (out / "config.yaml").is_file()
    assert any((out / "tb").iterdir())

    # A second call with --resume auto continues (here: nothing left to do) instead of restarting.
    assert main(["train", "--config", str(path), "--out-dir", str(out), "--resume", "auto"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3

    # Weights alone (what a new machine has) continue the schedule at the step given: here one step is left.
    args = [
        "train",
        "--config",
        str(path),
        "--out-dir",
        str(tmp_path / "continued"),
        "--init-from",
        str(out / "final.pth"),
    ]
    assert main([*args, "--start-step", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert [entry["step"] for entry in json.loads((tmp_path / "continued" / "log.json").read_text())["history"]] == [3]
    assert main([*args, "--start-step", "4"]) == 2
    assert "outside the schedule" in capsys.readouterr().err

    results = tmp_path / "results.json"
    frames = tmp_path / "frames"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(out / "final.pth"),
            "--data",
            str(tiny_val_root),
            "--output",
            str(results),
            "--save-frames",
            str(frames),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    written = json.loads(results.read_text())
    assert written["restored"]["num_frames"] == 6 and written["settings"]["temporal_stride"] == 1
    assert len(list(frames.rglob("*.png"))) == 6

    # As the node streams: the newest frame of a 3-frame window, every frame scored once.
    streamed = tmp_path / "streamed.json"
    args = ["evaluate", "--checkpoint", str(out / "final.pth"), "--data", str(tiny_val_root), "--device", "cpu"]
    assert main([*args, "--output", str(streamed), "--output-frame", "latest", "--clip-length", "3"]) == 0
    settings = json.loads(streamed.read_text())["settings"]
    assert (settings["output_frame"], settings["clip_length"], settings["temporal_stride"]) == ("latest", 3, None)
    assert main([*args, "--output", str(streamed), "--output-frame", "latest", "--clip-length", "4"]) == 2
    assert "odd" in capsys.readouterr().err


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "no_such_config" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pth"), "--data", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_list_configs_needs_no_config_and_a_missing_config_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--list-configs"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"vimpnet_reference", "vimpnet_lite_synthetic"} <= set(listed)
    assert main(["train"]) == 2
    assert "--config is required" in capsys.readouterr().err


def test_evaluate_quality_sets_saves_each_sets_frames_apart(tmp_path: Path) -> None:
    """The quality sets share video names (``0004_road_dusk`` is in all three): each set's frames go apart."""
    frames, results = tmp_path / "frames", tmp_path / "sets.json"
    args = ["evaluate", "--set", "clean", "--set", "light", "--sets-dir", str(tmp_path / "sets"), "--device", "cpu"]
    args += ["--max-videos", "1", "--max-frames", "2", "--save-frames", str(frames), "--output", str(results)]
    assert main(args) == 0
    written = json.loads(results.read_text())["sets"]
    for name in ("clean", "light"):
        video = written[name]["videos"][0]["video"]
        saved = sorted(p.name for p in (frames / name / video).iterdir())
        assert saved == ["00000000.png", "00000001.png"]
    clean, light = (frames / n / written[n]["videos"][0]["video"] / "00000000.png" for n in ("clean", "light"))
    assert clean.read_bytes() != light.read_bytes()
