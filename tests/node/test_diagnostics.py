"""Rates, percentiles and status levels of the per-camera diagnostics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.node.rosprobe import image_msg, make_rgb
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
from vimpnet_ros.pipeline.settings import DiagnosticsSettings

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
    thresholds = Thresholds(DiagnosticsSettings(min_rate_fraction=0.5, error_after_failures=3), 100.0, "auto for cuda")
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


def _levels(stats: CameraStats, thresholds: Thresholds, now: float) -> tuple[int, str]:
    level, message, _ = stats.status(thresholds, gated=False, now=now)
    return level, message


def test_a_silent_camera_warns_then_errs_and_recovers_with_its_next_frame() -> None:
    """Auto thresholds at 20 Hz: WARN after max(1 s, 5 periods), ERROR after max(5 s, 5 x WARN); OK again on input."""
    thresholds = Thresholds(DiagnosticsSettings(min_rate_fraction=0.0), 5000.0, "auto for cpu")
    stats = CameraStats("front", CameraCounters())
    stats.watch(now=0.0)
    assert _levels(stats, thresholds, 0.5)[0] == OK
    level, message = _levels(stats, thresholds, 1.5)
    assert level == WARN and "no input yet for 1.5 s" in message  # never sent anything since activation
    for i in range(20):
        stats.received(0.01, now=2.0 + i * 0.05)
    assert _levels(stats, thresholds, 2.96)[0] == OK
    level, message = _levels(stats, thresholds, 4.5)
    assert level == WARN and "no input for 1.5 s (WARN after 1.0 s; input period 0.050 s)" in message
    level, message = _levels(stats, thresholds, 8.5)
    assert level == ERROR and "(ERROR after 5.0 s)" in message
    stats.received(0.01, now=9.0)
    assert _levels(stats, thresholds, 9.1)[0] == OK
    stats.unwatch()  # deactivated: silence is expected
    assert _levels(stats, thresholds, 100.0)[0] == OK


def test_slow_camera_and_explicit_thresholds() -> None:
    stats = CameraStats("front", CameraCounters())
    stats.watch(now=0.0)
    for i in range(5):
        stats.received(0.0, now=i * 2.0)  # 0.5 Hz: auto WARN after 10 s, ERROR after 50 s
    auto = Thresholds(DiagnosticsSettings(min_rate_fraction=0.0), 5000.0, "auto for cpu")
    assert _levels(stats, auto, 8.0 + 9.0)[0] == OK and _levels(stats, auto, 8.0 + 11.0)[0] == WARN
    assert _levels(stats, auto, 8.0 + 51.0)[0] == ERROR
    fixed = Thresholds(
        DiagnosticsSettings(min_rate_fraction=0.0, stale_input_warn_s=0.2, stale_input_error_s=0.4),
        5000.0,
        "auto for cpu",
    )
    assert [_levels(stats, fixed, 8.0 + s)[0] for s in (0.1, 0.3, 0.5)] == [OK, WARN, ERROR]


def test_old_and_future_stamps_are_flagged_until_they_stop() -> None:
    thresholds = Thresholds(
        DiagnosticsSettings(min_rate_fraction=0.0, stamp_max_delay_s=2.0, stamp_max_future_s=0.5), 5000.0, "cpu"
    )
    stats = CameraStats("front", CameraCounters())
    stats.watch(now=0.0)
    stats.received(0.05, now=0.1)
    stats.received(3.5, now=0.2)  # a lagging camera
    level, message, values = stats.status(thresholds, gated=False, now=0.3)
    assert level == WARN and "stamps up to 3.5 s old (stamp_max_delay_s 2)" in message
    assert dict(values)["stamp_delay_s_max"] == "3.500" and dict(values)["stamp_delay_s_min"] == "0.050"
    stats.received(-0.8, now=0.4)
    level, message = _levels(stats, thresholds, 0.5)
    assert level == WARN and "0.8 s in the future" in message
    stats.received(0.04, now=0.6)  # the next report judges only what arrived since the last one
    assert _levels(stats, thresholds, 0.7) == (OK, "ok")


def test_error_threshold_must_exceed_the_warn_threshold() -> None:
    from vimpnet_ros.errors import ConfigError

    with pytest.raises(ConfigError, match="stale_input_error_s"):
        DiagnosticsSettings(stale_input_warn_s=3.0, stale_input_error_s=2.0)


def _camera_statuses(probe: Any, since: int) -> list[Any]:
    """The single camera's statuses in /diagnostics arrays received after the first ``since``."""
    return [s for a in probe.messages("/diagnostics")[since:] for s in a.status if s.name.endswith(": camera")]


def _wait_level(probe: Any, level: int, words: str, sending_age_s: float | None = None, timeout: float = 60.0) -> Any:
    """The first camera status of ``level`` containing ``words``. With ``sending_age_s`` a 10 Hz camera runs meanwhile
    (stamps that many seconds before the probe's clock), so a slow, loaded machine cannot make the test miss it."""
    since = probe.count("/diagnostics")
    found: list[Any] = []

    def seen() -> bool:
        found[:] = [s for s in _camera_statuses(probe, since) if s.level == bytes([level]) and words in s.message]
        return bool(found)

    deadline = time.monotonic() + timeout
    index = 0
    while not seen() and time.monotonic() < deadline:
        if sending_age_s is not None:
            stamp = probe.node.get_clock().now().nanoseconds - int(sending_age_s * 1e9)
            probe.send(image_msg(make_rgb(index), "rgb8", stamp))
            index += 1
        probe.spin_until(seen, 0.1)
    assert found, [s.message for s in _camera_statuses(probe, since)][-5:]
    return found[0]


def test_live_camera_that_stops_restarts_and_lags(start_node: Any, probe_factory: Any, checkpoint: Path) -> None:
    """A real node: WARN then ERROR while the camera is silent, OK when it is back, WARN for stamps 4 s old."""
    values = {"checkpoint": str(checkpoint), "device": "cpu", "backend": "torch", "precision": "fp32",
              "diagnostics_period_s": 0.2, "stale_input_warn_s": 1.0, "stale_input_error_s": 2.5,
              "stamp_max_delay_s": 2.0, "min_rate_fraction": 0.0, "latency_budget_ms": 600000.0}  # fmt: skip
    node = start_node(ros_args=[arg for k, v in values.items() for arg in ("-p", f"{k}:={v}")])
    probe = probe_factory()
    assert probe.wait_connected(), node.log()
    _wait_level(probe, OK, "", sending_age_s=0.0)
    _wait_level(probe, WARN, "no input for")  # the camera stopped
    error = _wait_level(probe, ERROR, "no input for")
    assert "(ERROR after 2.5 s)" in error.message
    assert float({kv.key: kv.value for kv in error.values}["seconds_since_input"]) > 2.5
    _wait_level(probe, OK, "", sending_age_s=0.0)  # back
    lag = _wait_level(probe, WARN, "stamps up to", sending_age_s=4.0)  # lagging: stamps 4 s old
    assert "s old (stamp_max_delay_s 2)" in lag.message
    assert node.alive()
    node.stop()
