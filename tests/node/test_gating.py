"""Rain estimate and the gating state machine."""

from __future__ import annotations

import numpy as np

from vimpnet_ros.node.gating import RainGate, estimate_rain


def test_estimate_counts_marked_pixels_and_positive_streaks() -> None:
    mask = np.zeros((10, 10), np.float32)
    mask[:2] = 0.9  # 20 % of the pixels
    streak = np.full((10, 10), -1.0, np.float32)
    streak[0, :5] = 2.0
    estimate = estimate_rain(mask, streak, mask_threshold=0.0)
    assert estimate.raindrop_coverage == 0.2
    assert abs(estimate.streak_intensity - 0.1) < 1e-6  # negatives clip to 0
    assert estimate.detected(streak_threshold=0.05, coverage_threshold=0.5)
    assert not estimate.detected(streak_threshold=0.5, coverage_threshold=0.5)
    assert estimate_rain(mask, streak, mask_threshold=0.95).raindrop_coverage == 0.0


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
