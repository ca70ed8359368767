"""tools/error_budget.py splits a restoration's remaining error into the drops, the streaks and the rest."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.tool_loader import load_tool
from vimpnet_ros.data.layout import frame_name, scan_vrds, write_png
from vimpnet_ros.data.synthesize import render_dataset, source_clips
from vimpnet_ros.evaluation.metrics import to_uint8
from vimpnet_ros.evaluation.vrds_eval import load_video


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("set") / "heavy"
    render_dataset(source_clips("bundled", videos=2, frames=3, size=(320, 192), seed=4), root, seed=4)
    return root


def _restore(root: Path, out: Path, keep_input_where: str) -> None:
    """Frames equal to the clean ones except where ``keep_input_where`` names: there the rainy input is kept."""
    for video in scan_vrds(root).videos:
        lq, gt = to_uint8(load_video(video, "lq")), to_uint8(load_video(video, "gt"))
        drops = load_video(video, "01drop") >= 0.5
        streaks = (load_video(video, "mstreak") >= 0.1) & ~drops
        keep = {"streaks": streaks, "drops": drops, "everywhere": np.ones_like(drops)}[keep_input_where]
        for i in range(len(gt)):
            frame = np.where(keep[i][..., None], lq[i], gt[i])
            write_png(out / video.name / frame_name(i), np.ascontiguousarray(frame))


def test_the_error_left_on_the_streaks_is_all_the_streaks_share(rendered: Path, tmp_path: Path) -> None:
    tool = load_tool("error_budget")
    _restore(rendered, tmp_path / "out", "streaks")
    result = tool.budget(rendered, tmp_path / "out")
    assert result.pixels["drops"] > 0 and result.pixels["streaks"] > 0
    assert result.output_error["drops"] == 0 and result.output_error["rest"] == 0
    assert result.output_error["streaks"] == pytest.approx(result.input_error["streaks"])
    table = result.table()
    assert "| streaks |" in table and "100.0% |" in table and "inf dB" in table


def test_a_restoration_that_keeps_the_input_gains_nothing_and_the_true_mask_fill_changes_only_the_drops(
    rendered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tool = load_tool("error_budget")
    _restore(rendered, tmp_path / "out", "everywhere")
    unchanged = tool.budget(rendered, tmp_path / "out")
    assert unchanged.output_error == unchanged.input_error and max(map(abs, unchanged.gains)) == 0
    filled = tool.budget(rendered, tmp_path / "out", fill_with_truth=1.0)
    assert filled.output_error["drops"] != unchanged.output_error["drops"]
    assert filled.output_error["streaks"] == unchanged.output_error["streaks"]
    assert filled.output_error["rest"] == unchanged.output_error["rest"]
    assert all(math.isfinite(g) for g in filled.drop_gains)
    assert tool.main([str(rendered), str(tmp_path / "out"), "--fill-with-truth", "0.5"]) == 0
    assert "per-frame mean over 6 frames" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no frames"):
        tool.budget(rendered, tmp_path / "nothing")
