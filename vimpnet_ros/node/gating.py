"""Rain estimate per frame and rain gating (beyond the reference).

Most driving is dry. With gating enabled, once the estimated rain stays below the
thresholds for ``gating_frames`` restored frames, the node passes frames through
unchanged (``RainStatus.PROCESSING_GATED``) and restores only every
``gating_probe_interval``-th frame to re-check; the first probe that sees rain
ends gating. Gated frames still enter the temporal buffer, so a probe has a full
window of context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Probability above which a mask pixel counts as raindrop when no mask threshold is set.
DEFAULT_DROP_THRESHOLD = 0.5


@dataclass(frozen=True)
class RainEstimate:
    """What the model's outputs say about rain in one frame."""

    raindrop_coverage: float  # fraction of pixels marked as raindrop, [0, 1]
    streak_intensity: float  # mean positive streak intensity (0 = no streaks)

    def detected(self, streak_threshold: float, coverage_threshold: float) -> bool:
        """True when either estimate exceeds its threshold."""
        return self.streak_intensity > streak_threshold or self.raindrop_coverage > coverage_threshold


def estimate_rain(drop_mask: np.ndarray, streak_map: np.ndarray, mask_threshold: float) -> RainEstimate:
    """Coverage and streak intensity from (h, w) float maps; NaN counts as no rain."""
    threshold = mask_threshold if mask_threshold > 0.0 else DEFAULT_DROP_THRESHOLD
    coverage = float(np.mean(np.nan_to_num(drop_mask, nan=0.0) >= threshold)) if drop_mask.size else 0.0
    streak = float(np.mean(np.clip(np.nan_to_num(streak_map, nan=0.0), 0.0, None))) if streak_map.size else 0.0
    return RainEstimate(coverage, streak)


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
