"""Per-camera statistics and their ``/diagnostics`` status.

The worker thread and the callbacks update :class:`CameraStats`; a timer turns
them into one ``diagnostic_msgs/DiagnosticStatus`` per camera plus one for the
engine. Levels, like diagnostic_updater's FrequencyStatus and TimeStampStatus:

- input: WARN when an active camera sent nothing for ``stale_input_warn_s`` (auto: a few
  periods of its measured rate), ERROR after ``stale_input_error_s``; OK again with the
  next frame. A camera that never sent anything counts from activation.
- stamps: WARN when a frame since the last report arrived with a header stamp older than
  ``stamp_max_delay_s`` or more than ``stamp_max_future_s`` ahead of the node clock.
- output: WARN when the output rate falls below ``min_rate_fraction`` of the input rate or
  p95 end-to-end latency exceeds the budget; ERROR after ``error_after_failures``
  consecutive inference failures.
- engine: ERROR when a turn began while another still ran (``overlapping_turns``: an inference
  abandoned by a deactivate not fenced off from the next activation's first turn).
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
from vimpnet_ros.pipeline.settings import DiagnosticsSettings

#: Frame intervals kept per camera to measure its period (the median survives the camera stopping).
PERIOD_SAMPLES = 50

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

    settings: DiagnosticsSettings
    latency_budget_ms: float
    budget_source: str


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
        self._intervals: deque[float] = deque(maxlen=PERIOD_SAMPLES)
        self._last_input: float | None = None
        self._watched_since: float | None = None
        self._delays: list[float] = []  # stamp delays [s] since the last report: (min, max) or empty

    def watch(self, now: float | None = None) -> None:
        """Start judging silence (activate): a camera that never sends counts from here."""
        with self.lock:
            self._watched_since = time.monotonic() if now is None else now

    def unwatch(self) -> None:
        """Stop judging silence (deactivate: no subscription, so no input is expected)."""
        with self.lock:
            self._watched_since = None

    def received(self, delay_s: float | None = None, now: float | None = None) -> None:
        """One message arrived (before decoding); ``delay_s`` = node clock minus its header stamp."""
        now = time.monotonic() if now is None else now
        with self.lock:
            self.input_rate.tick(now)
            if self._last_input is not None:
                self._intervals.append(now - self._last_input)
            self._last_input = now
            if delay_s is not None:
                low, high = self._delays or (delay_s, delay_s)
                self._delays = [min(low, delay_s), max(high, delay_s)]
        with self.counters.lock:
            self.counters.received += 1

    def _stale(self, settings: DiagnosticsSettings, now: float) -> tuple[int, str, float | None]:
        """(level, problem, seconds since the last input) of the input's silence (lock held)."""
        since = self._last_input if self._last_input is not None else self._watched_since
        silent = None if since is None else now - since
        if silent is None or self._watched_since is None:
            return OK, "", silent
        period = float(np.median(self._intervals)) if self._intervals else None
        warn_after, error_after = settings.stale_after(period)
        what = "no input yet" if self._last_input is None else "no input"
        if silent > error_after:
            return ERROR, f"{what} for {silent:.1f} s (ERROR after {error_after:.1f} s)", silent
        if silent > warn_after:
            rate = f"; input period {period:.3f} s" if period else ""
            return WARN, f"{what} for {silent:.1f} s (WARN after {warn_after:.1f} s{rate})", silent
        return OK, "", silent

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
        """(level, message, key/values) for this camera; the stamp delays seen since the previous report are reset."""
        now = time.monotonic() if now is None else now
        settings = thresholds.settings
        with self.lock:
            in_rate = self.input_rate.rate(now)
            out_rate = self.output_rate.rate(now)
            p50, p95 = self.inference_ms.p(50), self.inference_ms.p(95)
            e2e50, e2e95 = self.latency_ms.p(50), self.latency_ms.p(95)
            stale_level, stale_problem, silent = self._stale(settings, now)
            delays, self._delays = self._delays, []
            heard = self._last_input is not None
        with self.counters.lock:
            c = dataclasses.replace(self.counters)
        values = [
            ("seconds_since_input", f"{silent:.2f}" if heard and silent is not None else "none yet"),
            ("stamp_delay_s_min", f"{delays[0]:.3f}" if delays else "nan"),
            ("stamp_delay_s_max", f"{delays[1]:.3f}" if delays else "nan"),
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
            ("frames_over_budget", str(c.over_budget)),
            ("inference_failures", str(c.failures)),
            ("stream_resets", str(c.resets)),
            ("gated", str(gated).lower()),
        ]
        problems: list[str] = [stale_problem] if stale_problem else []
        level = stale_level
        if delays and delays[1] > settings.stamp_max_delay_s:
            level = max(level, WARN)
            problems.append(f"stamps up to {delays[1]:.1f} s old (stamp_max_delay_s {settings.stamp_max_delay_s:g})")
        if delays and -delays[0] > settings.stamp_max_future_s:
            level = max(level, WARN)
            problems.append(
                f"stamps up to {-delays[0]:.1f} s in the future (stamp_max_future_s {settings.stamp_max_future_s:g})"
            )
        if c.consecutive_failures >= settings.error_after_failures:
            level = ERROR
            problems.append(f"{c.consecutive_failures} consecutive inference failures: {c.last_error}")
        if in_rate > 0 and out_rate < settings.min_rate_fraction * in_rate:
            level = max(level, WARN)
            problems.append(f"output {out_rate:.1f} Hz < {settings.min_rate_fraction:.0%} of input {in_rate:.1f} Hz")
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
