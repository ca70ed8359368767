"""``ship_weights`` end to end on tiny sets: the shipped file, its record, every way of scoring every set."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from vimpnet_ros.engine import MAX_WINDOW, EngineConfig
from vimpnet_ros.model import get_config
from vimpnet_ros.model.checkpoint import load_model
from vimpnet_ros.model.config import RECORDED_RULES
from vimpnet_ros.training.config import load_train_config
from vimpnet_ros.training.ship_weights import QUALITY_SETS, main, trained_window


def test_ship_writes_the_file_and_scores_every_set_every_way(checkpoint: Path, tmp_path: Path) -> None:
    model = EngineConfig().model
    out = tmp_path / "weights"
    args = ["--checkpoint", str(checkpoint), "--model", model, "--output-dir", str(out)]
    args += ["--held-out", str(tmp_path / "sets" / "heldout"), "--held-out-videos", "1", "--held-out-frames", "4"]
    args += ["--module-from", f"drop_head={checkpoint}"]
    assert main([*args, "--held-out-size", "48", "32"]) == 0
    load_model(out / f"{model}.pth", model)  # the shipped file loads
    record = json.loads((out / f"{model}.json").read_text())
    assert record["training"]["ship_command"].endswith("--held-out-size 48 32")
    assert [(m["module"], m["file"]) for m in record["training"]["modules_from"]] == [("drop_head", checkpoint.name)]
    streamed, widest = record["test_sets_streamed"], record["test_sets_streamed_widest"]
    assert (streamed["window_size"], streamed["output_frame"]) == (EngineConfig().window_size, "latest")
    assert (widest["window_size"], widest["output_frame"]) == (MAX_WINDOW, "latest")
    assert record["max_window"] == load_train_config(model).data.clip_length == 5  # trained on 5-frame clips
    rules = get_config(model).to_dict()  # the rules the figures were measured with, the pass count the engine's
    assert {rule: record[rule] for rule in RECORDED_RULES} == {rule: rules[rule] for rule in RECORDED_RULES}
    assert "stage1_passes" not in record
    for name, spec in QUALITY_SETS.items():
        for scores in (record["test_sets"][name], streamed[name], widest[name]):
            assert scores["seed"] == spec.seed and scores["output_vs_input_psnr"] > 0
            assert ("gain_psnr" in scores) is not spec.no_rain
    # Streamed and averaged restoration differ on a model that changes frames (random weights do).
    heldout = record["test_sets"]["heldout"]["psnr_restored"]
    assert streamed["heldout"]["psnr_restored"] != pytest.approx(heldout, abs=1e-6)
    assert widest["heldout"]["psnr_restored"] != pytest.approx(streamed["heldout"]["psnr_restored"], abs=1e-6)


def test_a_module_source_must_name_a_module_and_a_checkpoint(checkpoint: Path) -> None:
    for value in ("drop_remover", "=w.pth", "drop_remover="):
        with pytest.raises(SystemExit) as stopped:
            main(["--checkpoint", str(checkpoint), "--module-from", value])
        assert stopped.value.code == 2


def test_the_window_limit_defaults_to_the_longest_training_clip() -> None:
    """Odd, within the engine's range: weights trained on 5-frame clips allow 5, on 6 still 5, on 12 the largest."""
    config = load_train_config("vimpnet_lite_gated")
    clips = {n: replace(config, data=replace(config.data, clip_length=n)) for n in (2, 5, 6, 9, 12)}
    assert {n: trained_window([c]) for n, c in clips.items()} == {2: 3, 5: 5, 6: 5, 9: 9, 12: 9}
    assert trained_window([clips[5], clips[9]]) == 9
