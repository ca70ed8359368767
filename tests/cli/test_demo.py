"""The demo's sample-bag settings: fast and full defaults, and a WIDTHxHEIGHT override parsed like elsewhere."""

from __future__ import annotations

import pytest

from vimpnet_ros.cli import build_parser
from vimpnet_ros.cli.demo import _sample_config


@pytest.mark.parametrize(
    ("argv", "frames", "size", "fps"),
    [
        (["demo", "--fast"], 8, (64, 48), 4.0),
        (["demo"], 24, (256, 160), 10.0),
        (["demo", "--fast", "--size", "96x64", "--frames", "5", "--fps", "2"], 5, (96, 64), 2.0),
    ],
)
def test_sample_config(argv: list[str], frames: int, size: tuple[int, int], fps: float) -> None:
    config = _sample_config(build_parser().parse_args(argv))
    assert (config.num_frames, config.size, config.fps) == (frames, size, fps)


def test_bad_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--size", "96by64"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
