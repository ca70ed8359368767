"""Rates, percentiles and status levels of the per-camera diagnostics."""

from __future__ import annotations

import pytest

from vimpnet_ros.node.diagnostics import (
    ERROR,
    OK,
    WARN,
    CameraStats,
    RateMeter,
    Thresholds,
    make_status,
)
from vimpnet_ros.pipeline.camera import CameraCounters

pytestmark = pytest.mark.ros


def test_rate_meter() -> None:
    meter = RateMeter(window_s=5.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)
    assert abs(meter.rate(101.0) - 10.0) < 1e-6
    assert meter.rate(200.0) == 0.0


def _stats(in_hz: float, out_hz: float, latency_ms: float) -> CameraStats:
    stats = CameraStats("front", CameraCounters())
    for i in range(int(in_hz * 2) + 1):
        stats.input_rate.tick(10.0 + i / in_hz)
    for i in range(int(out_hz * 2) + 1):
        stats.output_rate.tick(10.0 + i / out_hz)
        stats.latency_ms.add(latency_ms)
        stats.inference_ms.add(latency_ms / 2)
    stats.counters.received = 10
    return stats


def test_levels() -> None:
    thresholds = Thresholds(100.0, "auto for cuda", min_rate_fraction=0.5, error_after_failures=3)
    level, message, values = _stats(30, 30, 50).status(thresholds, gated=False, now=12.0)
    assert level == OK and message == "ok"
    assert dict(values)["inference_ms_p95"] == "25.0" and dict(values)["latency_budget_ms"] == "100 (auto for cuda)"
    level, message, _ = _stats(30, 5, 50).status(thresholds, gated=False, now=12.0)
    assert level == WARN and "output" in message
    level, message, _ = _stats(30, 30, 500).status(thresholds, gated=False, now=12.0)
    assert level == WARN and "latency" in message and "auto for cuda" in message
    stats = _stats(30, 30, 50)
    stats.counters.consecutive_failures = 3
    stats.counters.last_error = "boom"
    level, message, _ = stats.status(thresholds, gated=False, now=12.0)
    assert level == ERROR and "boom" in message
    status = make_status("n: front", "n", level, message, [("a", "1")])
    assert status.level == b"\x02" and status.values[0].key == "a"


def test_implausible_stamps_stay_out_of_the_latency_percentiles() -> None:
    stats = CameraStats("front", CameraCounters())
    stats.published(20.0, float("nan"))
    stats.published(20.0, 40.0)
    assert stats.latency_ms.p(50) == 40.0 and stats.inference_ms.p(50) == 20.0
