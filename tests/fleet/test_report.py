"""Rainy segments found in a camera's rain timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fleet.conftest import fleet_settings
from vimpnet_ros.fleet.report import RAIN_GAP_S, rainy_segments

SECOND = 1_000_000_000


def _timeline(detected: list[bool], coverage: float = 0.05) -> dict[str, Any]:
    count = len(detected)
    return {
        "topic": "/cam/image",
        "stamp_ns": [1_735_689_600 * SECOND + i * SECOND // 10 for i in range(count)],  # 10 Hz
        "raindrop_coverage": [coverage if d else 0.0 for d in detected],
        "streak_intensity": [0.0] * count,
        "gated": [False] * count,
        "rain_detected": detected,
    }


def test_rainy_segments_join_short_dry_spells_and_grade_severity(checkpoint: Path) -> None:
    settings = fleet_settings(checkpoint)
    gap = int(RAIN_GAP_S * 10)
    detected = [False] * 5 + [True] * 10 + [False] * (gap - 1) + [True] * 5 + [False] * (gap + 5) + [True] * 3
    found = rainy_segments("drive", _timeline(detected), settings)
    assert [(s.frames, s.start_s, s.end_s) for s in found] == [(15, 0.5, 3.8), (3, 6.4, 6.6)]
    assert found[0].start == "2025-01-01T00:00:00.500+00:00" and found[0].camera == "/cam/image"
    threshold = settings.rain.rain_coverage_threshold
    assert found[0].rain_ratio == 0.05 / threshold
    heavy = rainy_segments("drive", _timeline([True] * 3, coverage=10 * threshold), settings)
    light = rainy_segments("drive", _timeline([True] * 3, coverage=1.5 * threshold), settings)
    assert [heavy[0].severity, light[0].severity] == ["heavy", "light"]
    assert rainy_segments("drive", _timeline([False] * 20), settings) == []
