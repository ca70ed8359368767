"""What one frame may cost: its declared size through the inference budget, against the device and the camera's rate.

The input limits bound bytes and pixels; they cannot say that a 629-byte JPEG declaring
3500x3500 buys tens of seconds of inference on a CPU while the camera sends a frame every
33 ms. :class:`FrameBudget` keeps, per camera, its running size and period (medians of its
recent frames) and the device's measured inference seconds per pixel, and says, before a
byte is decoded, how many pixels a frame may have so that it costs at most
``frame_cost_periods`` camera periods more than the camera's usual frames. Everything is in
pixels as inferred (the engine's working size: a frame larger than the weights' scale or
``max_inference_pixels`` is inferred at that size anyway, so its cost stops growing there).
A camera that really changed its size passes again once its running size (a median over
``HISTORY`` frames) has followed.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable

#: (width, height) declared -> pixels the engine infers for it (``InferenceEngine.working_size``, multiplied).
Inferred = Callable[[int, int], int]

#: Inference seconds per pixel assumed before the device has restored a frame (then measured): a 2-core
#: AVX-512 CPU needs ~5e-6 with vimpnet_lite at 640x480; GPUs are about a thousand times faster.
PRIOR_SECONDS_PER_PIXEL: dict[str, float] = {"cpu": 5e-6, "cuda": 5e-9}
#: The size a camera may start with, per device kind, before its running size is known.
START_PIXELS: dict[str, int] = {"cpu": 1280 * 720, "cuda": 3840 * 2160}
#: Camera period assumed until two stamps are known [s] (the fastest common rate: the smallest budget).
DEFAULT_PERIOD_S = 1 / 30
#: Recent frames whose declared sizes and stamp steps make the running size and period (medians).
HISTORY = 16
#: A declared size this many times the running size is reported as a jump.
JUMP_FACTOR = 4.0
#: Frames this small are never bounded, and the speed is measured as if frames were at least this large: below
#: it an inference costs its fixed overheads, not its pixels (a 1x1 frame would price a pixel at 0.3 s).
FLOOR_PIXELS = 320 * 240
#: Weight of the newest measurement in the running seconds per pixel.
RATE_WEIGHT = 0.3


class FrameBudget:
    """One camera's running size, period and the device's measured cost (see the module docstring).

    Called from the thread that decodes (``allowed_pixels``, ``observe``) and the one that
    restores (``measured``); each updates plain numbers, so no lock is needed.
    """

    def __init__(self, device: str) -> None:
        kind = "cuda" if device.startswith("cuda") else "cpu"
        self.seconds_per_pixel = PRIOR_SECONDS_PER_PIXEL[kind]
        self.start_pixels = START_PIXELS[kind]
        self._sizes: deque[int] = deque(maxlen=HISTORY)
        self._steps: deque[int] = deque(maxlen=HISTORY)
        self._last_stamp_ns: int | None = None

    @property
    def running_pixels(self) -> int | None:
        """Median declared pixels of the camera's recent frames (None before its first frame)."""
        return int(statistics.median(self._sizes)) if self._sizes else None

    @property
    def period_s(self) -> float:
        """Median step between the camera's recent stamps (DEFAULT_PERIOD_S until two are known)."""
        return statistics.median(self._steps) / 1e9 if self._steps else DEFAULT_PERIOD_S

    def allowed_pixels(self, width: int, height: int, periods: float, inferred: Inferred) -> int:
        """Pixels a frame declaring ``width`` x ``height`` may keep; 0 when it is within the budget (or none is set).

        ``periods`` is ``frame_cost_periods`` (0 = no budget), ``inferred`` what the engine infers for a size
        (the running size is taken at this frame's aspect).
        """
        if periods <= 0:
            return 0
        usual_pixels = self.running_pixels or self.start_pixels
        scale = math.sqrt(usual_pixels / (width * height))
        usual = inferred(max(1, round(width * scale)), max(1, round(height * scale)))
        allowed = max(FLOOR_PIXELS, usual + int(periods * self.period_s / self.seconds_per_pixel))
        return 0 if inferred(width, height) <= allowed else allowed

    def is_jump(self, width: int, height: int) -> bool:
        """Whether a declared size is far above the camera's running size."""
        running = self.running_pixels
        return running is not None and width * height > JUMP_FACTOR * running

    def observe(self, width: int, height: int, stamp_ns: int) -> None:
        """Count a frame's declared size and stamp into the running size and period."""
        self._sizes.append(width * height)
        if self._last_stamp_ns is not None and stamp_ns > self._last_stamp_ns:
            self._steps.append(stamp_ns - self._last_stamp_ns)
        self._last_stamp_ns = stamp_ns

    def measured(self, seconds: float, pixels: int) -> None:
        """Fold one restore's inference time for a frame of ``pixels`` (as inferred) into the running rate."""
        if seconds > 0 and pixels > 0:
            self.seconds_per_pixel += RATE_WEIGHT * (seconds / max(pixels, FLOOR_PIXELS) - self.seconds_per_pixel)
