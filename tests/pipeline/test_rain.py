"""Rain estimate and the gating state machine."""

from __future__ import annotations

import numpy as np

from vimpnet_ros.pipeline.rain import RainGate, estimate_rain, mask_level


def test_estimate_counts_marked_pixels_on_the_quantised_mask() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[:2] = 230  # p = 0.9 on 20 % of the pixels
    estimate = estimate_rain(mask, 0.1, mask_threshold=0.0)
    assert estimate.raindrop_coverage == 0.2 and estimate.streak_intensity == 0.1
    assert estimate.detected(streak_threshold=0.05, coverage_threshold=0.5)
    assert not estimate.detected(streak_threshold=0.5, coverage_threshold=0.5)
    assert estimate_rain(mask, 0.1, mask_threshold=0.95).raindrop_coverage == 0.0
    assert estimate_rain(mask, -3.0, 0.0).streak_intensity == 0.0


def test_mask_level_is_the_threshold_on_the_published_scale() -> None:
    """p >= threshold <=> round(p * 255) >= level, for every probability the plane can hold."""
    assert mask_level(0.0) == mask_level(0.5) == 128 and mask_level(1e-6) == 1 and mask_level(1.0) == 255
    for threshold in (0.1, 0.25, 0.5, 0.73):
        probabilities = np.arange(256) / 255.0
        plane = np.floor(probabilities * 255 + 0.5)
        np.testing.assert_array_equal(plane >= mask_level(threshold), probabilities >= round(threshold * 255) / 255)


def test_gate_passes_through_after_dry_frames_and_probes_every_k() -> None:
    gate = RainGate()
    decisions = []
    for _ in range(3):  # three dry restored frames -> gated
        assert gate.should_restore(True, 4)
        gate.update(False, True, frames_needed=3)
    assert gate.gated
    for _ in range(8):
        decisions.append(gate.should_restore(True, 4))
    assert decisions == [False, False, False, True, False, False, False, True]
    gate.update(True, True, frames_needed=3)  # a probe sees rain
    assert not gate.gated and gate.should_restore(True, 4)


def test_gate_disabled_always_restores() -> None:
    gate = RainGate()
    for _ in range(10):
        gate.update(False, False, frames_needed=2)
        assert gate.should_restore(False, 5)
    assert not gate.gated
