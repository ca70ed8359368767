"""What one frame may cost: its declared size priced before decoding, against the device and the camera's rate.

The input limits bound bytes and pixels; they cannot say that a 629-byte JPEG declaring
3500x3500 buys seconds of work on a CPU while the camera sends a frame every 33 ms.
:class:`FrameBudget` keeps, per camera, its running size and period (medians of its recent
frames) and the device's measured seconds per unit of work, and says, before a byte is
decoded, how many pixels a frame may have so that it costs at most ``frame_cost_periods``
camera periods more than the camera's usual frames. A frame's work has two parts: the
network's, in pixels as inferred (the engine's working size: a frame larger than the
weights' scale or ``max_inference_pixels`` is inferred at that size, so this part stops
growing there), and what is done at the frame's own size (decoding, mapping the network's
change back, the drop fill, the output planes), ``FULL_SIZE_SHARE`` of an inferred pixel per
declared pixel. A camera that really changed its size passes again once its running size
(a median over ``HISTORY`` frames) has followed. A camera's first frame has no usual frames to
be compared with: the input limits alone bound it (``max_input_pixels``), so that a camera of any
size within them starts at its own size (priced against a guessed start size, a 1920x1080
camera's first frame on a CPU was decoded at 1847x1039 and published at a size its
``camera_info`` does not have).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable

#: (width, height) declared -> pixels the engine infers for it (``InferenceEngine.working_size``, multiplied).
Inferred = Callable[[int, int], int]

#: The work of one declared pixel done at the frame's own size, in inferred pixels' work. Steady, at one size:
#: ``vimpnet-ros benchmark engine --models vimpnet_lite_gated --backends torch --precisions bf16 --threads 1
#: --no-baselines --working-scale weights --sizes 640x360,1280x720,1920x1080,3840x2160`` (every size inferred at
#: 269x151) on an Intel Xeon, 2 cores, AVX-512 with AVX512-BF16 and AMX: p50 308, 340, 392 and 672 ms, that is
#: ~4.5e-8 s per declared pixel beside ~7e-6 s per inferred pixel (0.0065; 0.005 with both threads). A frame of
#: a size the camera does not send, what the budget prices, costs more: its buffers are new memory, touched for
#: the first time. ``pytest -m slow tests/node/test_hostile.py -k "3500 and weights"`` on the same CPU: a
#: 2272x2272 frame among 1280x720 ones took 0.57 s against 0.24 s, ~7.8e-8 s per extra declared pixel against
#: ~5.1e-6 s per unit of work: 0.015. With the change enlarged by the guided filter (``change_upsampling: guided``,
#: six full-size coefficient planes; 283 / 353 / 714 ms steady at 1280x720 / 1920x1080 / 3840x2160 by the command
#: above, against 275 / 324 / 605 ms bilinear), the same test's 1794x1794 frame took 0.45 s against 0.21 s, ~1.0e-7
#: s per extra declared pixel against ~5.2e-6 s: 0.020. Not yet measured on a GPU (taken alike there).
FULL_SIZE_SHARE = 0.02
#: Seconds per unit of work (an inferred pixel) assumed before the device has restored a frame (then measured): a
#: 2-core AVX-512 CPU needs ~5e-6 with vimpnet_lite at 640x480; GPUs are about a thousand times faster.
PRIOR_SECONDS_PER_PIXEL: dict[str, float] = {"cpu": 5e-6, "cuda": 5e-9}
#: Camera period assumed until two stamps are known [s] (the fastest common rate: the smallest budget).
DEFAULT_PERIOD_S = 1 / 30
#: Recent frames whose declared sizes and stamp steps make the running size and period (medians).
HISTORY = 16
#: A declared size this many times the running size is reported as a jump.
JUMP_FACTOR = 4.0
#: Frames this small are never bounded, and the speed is measured as if their work were at least this large:
#: below it a restore costs its fixed overheads more than its pixels. The command above at the frames' own size
#: (``--sizes 16x16,64x48,128x96,320x240``, no ``--working-scale``): p50 39, 57, 105 and 612 ms, that is ~0.035 s
#: + ~7e-6 s per pixel; at 128x96 the fixed part is about a third.
FLOOR_PIXELS = 128 * 96
#: Halvings of the scale searched for the largest size within the budget (2^-24 of the declared side: exact).
SEARCH_STEPS = 24
#: Weight of the newest measurement in the running seconds per pixel.
RATE_WEIGHT = 0.3


class FrameBudget:
    """One camera's running size, period and the device's measured cost (see the module docstring).

    ``inferred`` says what the engine infers for a declared (width, height). Called from the
    thread that decodes (``allowed_pixels``, ``observe``) and the one that restores
    (``measured``); each updates plain numbers, so no lock is needed.
    """

    def __init__(self, device: str, inferred: Inferred) -> None:
        kind = "cuda" if device.startswith("cuda") else "cpu"
        self.inferred = inferred
        self.seconds_per_pixel = PRIOR_SECONDS_PER_PIXEL[kind]
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

    def work(self, width: int, height: int) -> float:
        """A frame's work in inferred pixels: the network's at its working size, the rest at its own size."""
        return self.inferred(width, height) + FULL_SIZE_SHARE * width * height

    def cost_s(self, width: int, height: int) -> float:
        """Seconds a frame of this declared size is expected to take, at the measured rate."""
        return self.seconds_per_pixel * self.work(width, height)

    def allowed_pixels(self, width: int, height: int, periods: float) -> int:
        """Pixels a frame declaring ``width`` x ``height`` may keep; 0 when it is within the budget (or none is set).

        ``periods`` is ``frame_cost_periods`` (0 = no budget); the running size is taken at this frame's aspect,
        and the answer is the largest size at this aspect whose work fits (never below ``FLOOR_PIXELS``). The
        camera's first frame is not bounded here (the module docstring).
        """
        running = self.running_pixels
        if periods <= 0 or width * height <= FLOOR_PIXELS or running is None:
            return 0
        usual_scale = math.sqrt(running / (width * height))
        usual = self.work(*self._at(width, height, usual_scale))
        allowed = max(FLOOR_PIXELS, usual + periods * self.period_s / self.seconds_per_pixel)
        if self.work(width, height) <= allowed:
            return 0
        low, high = 0.0, 1.0  # the work grows with the scale: bisect for the largest scale within ``allowed``
        for _ in range(SEARCH_STEPS):
            middle = (low + high) / 2
            low, high = (middle, high) if self.work(*self._at(width, height, middle)) <= allowed else (low, middle)
        fitted_w, fitted_h = self._at(width, height, low)
        return max(FLOOR_PIXELS, fitted_w * fitted_h)

    @staticmethod
    def _at(width: int, height: int, scale: float) -> tuple[int, int]:
        """The size at ``scale`` of (width, height), at least 1x1."""
        return max(1, round(width * scale)), max(1, round(height * scale))

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

    def measured(self, seconds: float, width: int, height: int) -> None:
        """Fold one restore's time for a frame of (width, height) into the running seconds per unit of work."""
        if seconds > 0 and width * height > 0:
            work = max(self.work(width, height), FLOOR_PIXELS)
            self.seconds_per_pixel += RATE_WEIGHT * (seconds / work - self.seconds_per_pixel)
