"""tools/stage_frames.py: per frame of a streamed video, what stage 1, the output and the drop fill change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tool_loader import load_tool
from vimpnet_ros.data.rain.config import load_rain_config
from vimpnet_ros.data.synthesize import render_dataset, source_clips
from vimpnet_ros.model.checkpoint import shipped_checkpoint


def _render(root: Path, rain: str, seed: int) -> Path:
    clips = source_clips("road", videos=1, frames=3, size=(320, 192), seed=seed)
    render_dataset(clips, root, load_rain_config(rain), seed)
    return root


def test_stage_one_passes_a_rain_free_video_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _render(tmp_path / "clear", "none", 7)  # seed 7: read and shot noise, JPEG at quality 62
    video = next(p.name for p in (root / "gt").iterdir())
    assert load_tool("stage_frames").main([str(shipped_checkpoint("vimpnet_lite_gated")), str(root), video]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for line in lines:
        # The shipped presence rule shuts stage 1 on the camera's noise alone: not one grey level moves.
        assert "in 100.00" not in line and "stage1 +0.000" in line and "presence 0.00" in line, line


def test_a_rule_that_never_opens_shuts_stage_one_on_a_downpour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tool = load_tool("stage_frames")
    root = _render(tmp_path / "rain", "heldout", 5)
    video = next(p.name for p in (root / "gt").iterdir())
    args = [str(shipped_checkpoint("vimpnet_lite_gated")), str(root), video]
    assert tool.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and any("stage1 +0.000" not in line for line in lines)  # the shipped rule opens
    assert tool.main([*args, "--presence", "0.99", "1.0"]) == 0  # no gate's mean reaches 0.99
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("stage1 +0.000" in line and "presence 0.00" in line for line in lines)
    assert tool.main([*args[:2], "no_such_video"]) == 2
    assert "no video 'no_such_video'" in capsys.readouterr().err
