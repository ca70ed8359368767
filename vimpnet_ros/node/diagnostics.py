"""Per-camera statistics and their ``/diagnostics`` status.

The worker thread and the callbacks update :class:`CameraStats`; a timer turns
them into one ``diagnostic_msgs/DiagnosticStatus`` per camera plus one for the
engine. Levels: WARN when the output rate falls below ``min_rate_fraction`` of
the input rate or p95 end-to-end latency exceeds the budget; ERROR after
``error_after_failures`` consecutive inference failures.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from vimpnet_ros.pipeline.camera import CameraCounters

OK, WARN, ERROR = 0, 1, 2
_LEVEL_BYTES = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


class RateMeter:
    """Events per second over a sliding window (monotonic clock)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        """Record one event."""
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float | None = None) -> float:
        """Events per second in the window (0 with fewer than 2 events)."""
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class Percentiles:
    """p50/p95 over the last ``size`` samples."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        """Record one sample."""
        self._values.append(value)

    def p(self, q: float) -> float:
        """The q-th percentile (NaN when empty)."""
        if not self._values:
            return float("nan")
        return float(np.percentile(np.fromiter(self._values, float), q))


@dataclass
class Thresholds:
    """The diagnostics parameters, read at each report; ``budget_source`` says where the latency budget comes from."""

    latency_budget_ms: float
    budget_source: str
    min_rate_fraction: float
    error_after_failures: int


class CameraStats:
    """Rates and percentiles of one camera next to its pipeline's counters (callback and worker threads)."""

    def __init__(self, name: str, counters: CameraCounters) -> None:
        self.name = name
        self.counters = counters
        self.lock = threading.Lock()
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.inference_ms = Percentiles()
        self.latency_ms = Percentiles()

    def received(self) -> None:
        """One message arrived (before decoding)."""
        with self.lock:
            self.input_rate.tick()
        with self.counters.lock:
            self.counters.received += 1

    def published(self, inference_ms: float | None, latency_ms: float) -> None:
        """One output frame went out; NaN latency (implausible stamp) stays out of the percentiles."""
        with self.lock:
            self.output_rate.tick()
            if latency_ms == latency_ms:
                self.latency_ms.add(latency_ms)
            if inference_ms is not None:
                self.inference_ms.add(inference_ms)

    def status(
        self, thresholds: Thresholds, gated: bool, now: float | None = None
    ) -> tuple[int, str, list[tuple[str, str]]]:
        """(level, message, key/values) for this camera."""
        with self.lock:
            in_rate = self.input_rate.rate(now)
            out_rate = self.output_rate.rate(now)
            p50, p95 = self.inference_ms.p(50), self.inference_ms.p(95)
            e2e50, e2e95 = self.latency_ms.p(50), self.latency_ms.p(95)
        with self.counters.lock:
            c = dataclasses.replace(self.counters)
        values = [
            ("input_rate_hz", f"{in_rate:.2f}"),
            ("output_rate_hz", f"{out_rate:.2f}"),
            ("inference_ms_p50", f"{p50:.1f}"),
            ("inference_ms_p95", f"{p95:.1f}"),
            ("latency_ms_p50", f"{e2e50:.1f}"),
            ("latency_ms_p95", f"{e2e95:.1f}"),
            ("latency_budget_ms", f"{thresholds.latency_budget_ms:.0f} ({thresholds.budget_source})"),
            ("frames_received", str(c.received)),
            ("frames_processed", str(c.processed)),
            ("frames_restored", str(c.restored)),
            ("frames_skipped", str(c.skipped)),
            ("frames_bad_input", str(c.bad_input)),
            ("frames_dropped", str(c.dropped)),
            ("frames_stamp_suspect", str(c.stamp_suspect)),
            ("inference_failures", str(c.failures)),
            ("stream_resets", str(c.resets)),
            ("gated", str(gated).lower()),
        ]
        problems: list[str] = []
        level = OK
        if c.consecutive_failures >= thresholds.error_after_failures:
            level = ERROR
            problems.append(f"{c.consecutive_failures} consecutive inference failures: {c.last_error}")
        if in_rate > 0 and out_rate < thresholds.min_rate_fraction * in_rate:
            level = max(level, WARN)
            problems.append(f"output {out_rate:.1f} Hz < {thresholds.min_rate_fraction:.0%} of input {in_rate:.1f} Hz")
        if e2e95 == e2e95 and e2e95 > thresholds.latency_budget_ms:
            level = max(level, WARN)
            budget = f"{thresholds.latency_budget_ms:.0f} ms ({thresholds.budget_source})"
            problems.append(f"p95 latency {e2e95:.0f} ms > budget {budget}")
        if problems:
            message = "; ".join(problems)
        elif c.received == 0:
            message = "waiting for images"
        else:
            message = "gated (no rain)" if gated else "ok"
        return level, message, values


def make_status(
    name: str, hardware_id: str, level: int, message: str, values: list[tuple[str, str]]
) -> DiagnosticStatus:
    """A DiagnosticStatus from plain values."""
    return DiagnosticStatus(
        level=_LEVEL_BYTES[level],
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in values],
    )


def make_array(statuses: list[DiagnosticStatus], stamp: object) -> DiagnosticArray:
    """A DiagnosticArray with ``stamp`` (a builtin_interfaces/Time)."""
    array = DiagnosticArray(status=statuses)
    array.header.stamp = stamp
    return array
