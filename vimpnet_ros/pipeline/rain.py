"""Rain estimate per frame and rain gating (beyond the reference).

The estimate comes from the engine's quantised drop mask (probability x 255) and its
streak intensity; mask thresholds are applied on that scale, so the node, bag evaluation
and the published binary mask agree pixel for pixel.

Most driving is dry. With gating enabled, once the estimated rain stays below the
thresholds for ``gating_frames`` restored frames, frames pass through unchanged
(``PROCESSING_GATED``) and only every ``gating_probe_interval``-th frame is restored to
re-check; the first probe that sees rain ends gating. Gated frames still enter the
temporal buffer, so a probe has a full window of context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vimpnet_ros.engine import PLANE_SCALE

#: Probability at or above which a mask pixel counts as raindrop when no mask threshold is set
#: (the published threshold: mask IoU and coverage use it too).
DEFAULT_DROP_THRESHOLD = 0.5


def mask_level(threshold: float) -> int:
    """The quantised mask value (0..255) a probability ``threshold`` maps to; p >= threshold <=> plane >= level.

    A threshold of 0 means the published default (0.5 -> 128); never below 1, so 0 is never "raindrop".
    """
    probability = threshold if threshold > 0.0 else DEFAULT_DROP_THRESHOLD
    return max(1, int(np.floor(probability * PLANE_SCALE + 0.5)))


@dataclass(frozen=True)
class RainEstimate:
    """What the model's outputs say about rain in one frame."""

    raindrop_coverage: float  # fraction of pixels marked as raindrop, [0, 1]
    streak_intensity: float  # mean positive streak intensity (0 = no streaks)

    def detected(self, streak_threshold: float, coverage_threshold: float) -> bool:
        """True when either estimate exceeds its threshold."""
        return self.streak_intensity > streak_threshold or self.raindrop_coverage > coverage_threshold


NO_RAIN = RainEstimate(0.0, 0.0)


def estimate_rain(drop_mask: np.ndarray, streak_intensity: float, mask_threshold: float) -> RainEstimate:
    """Coverage from an (h, w) uint8 mask plane at ``mask_threshold`` (0 = 0.5) and the frame's streak intensity."""
    coverage = (
        float(np.count_nonzero(drop_mask >= mask_level(mask_threshold)) / drop_mask.size) if drop_mask.size else 0
    )
    return RainEstimate(coverage, max(0.0, float(streak_intensity)))


class RainGate:
    """Per-camera gating state: decides which frames the model restores."""

    def __init__(self) -> None:
        self.dry_frames = 0
        self.gated = False
        self._since_probe = 0

    def should_restore(self, enabled: bool, probe_interval: int) -> bool:
        """Call once per frame to output; False = pass this frame through."""
        if not enabled:
            self.gated = False
            return True
        if not self.gated:
            return True
        self._since_probe += 1
        if self._since_probe >= probe_interval:
            self._since_probe = 0
            return True
        return False

    def update(self, rain_detected: bool, enabled: bool, frames_needed: int) -> None:
        """Feed the estimate of a restored frame."""
        if rain_detected:
            self.dry_frames = 0
            self.gated = False
            return
        self.dry_frames += 1
        if enabled and not self.gated and self.dry_frames >= frames_needed:
            self.gated = True
            self._since_probe = 0

    def reset(self) -> None:
        """Start over (stream reset): restore until enough dry frames are seen again."""
        self.dry_frames = 0
        self.gated = False
        self._since_probe = 0
