"""The ViMP-Net training objective (reference "Training objective"), with configurable weights.

    loss = w_stage1 * Charbonnier(stage1, drop)
         + w_mask   * BCE(drop_mask, 01drop)
         + w_output * Charbonnier(output, gt)
         + w_masked * L1(output * mask, gt * mask) / (mean(mask) + 1e-8)
         + w_streak * MSE(streak_map, mstreak)

Reference weights 1, 0.8, 1.2, 0.5, 0.5. ``mask_pos_weight`` scales the BCE of drop
pixels (1 in the reference): drops cover a few percent of the pixels, so with equal
weights a small model is best off predicting "no drop" everywhere. Every term is computed in float32 even
under autocast: BCE on bf16/fp16 probabilities is unstable, and the Charbonnier
eps of 1e-12 vanishes in half precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimpnet_ros.errors import ConfigError


def charbonnier_loss(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """mean(sqrt((pred - target)^2 + eps)): a smooth L1 (reference eps 1e-12)."""
    return torch.sqrt((pred - target) ** 2 + eps).mean()


def resize_to(target: Tensor, like: Tensor) -> Tensor:
    """Bring a target (n, t, c, H, W) to the spatial size of ``like`` (n, t, c, h, w) by area averaging.

    The streak target is stored at frame resolution; a model emitting a quarter-res
    streak map is compared with the box-averaged target, not with a sub-sampled one.
    """
    if target.shape[-2:] == like.shape[-2:]:
        return target
    n, t, c = target.shape[:3]
    flat = target.reshape(n * t, c, *target.shape[-2:])
    resized = F.interpolate(flat, size=like.shape[-2:], mode="area")
    return resized.reshape(n, t, c, *like.shape[-2:])


@dataclass(frozen=True)
class LossWeights:
    """Weights of the five terms; the defaults are the reference's."""

    stage1: float = 1.0
    mask: float = 0.8
    output: float = 1.2
    masked: float = 0.5
    streak: float = 0.5
    mask_pos_weight: float = 1.0
    charbonnier_eps: float = 1e-12
    masked_eps: float = 1e-8

    def __post_init__(self) -> None:
        """Negative weights would maximise an error: refuse them early."""
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"loss weight {f.name} must be >= 0, got {getattr(self, f.name)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LossWeights:
        """Build from a config mapping; unknown keys are an error (typos must not pass silently)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown loss weight(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})


class VimpNetLoss(nn.Module):
    """The reference objective on a model output and a batch of targets.

    Inputs, all (n, t, c, h, w): ``stage1``/``output`` (c=3), ``drop_mask`` (c=1,
    probabilities after the sigmoid), ``streak_map`` (c=1, any resolution); targets
    ``drop``/``gt`` (c=3), ``mask`` (c=1, binary), ``streak`` (c=1, frame resolution).
    """

    def __init__(self, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()

    def forward(
        self,
        stage1: Tensor,
        drop_mask: Tensor,
        streak_map: Tensor,
        output: Tensor,
        targets: Mapping[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return (total loss, detached per-term values for logging)."""
        w = self.weights
        gt = targets["gt"].float()
        drop = targets["drop"].float()
        mask = targets["mask"].float()
        streak = targets["streak"].float()
        stage1, output = stage1.float(), output.float()
        # BCE needs probabilities in [0, 1]; clamp guards against rounding just outside under autocast.
        probs = drop_mask.float().clamp(0.0, 1.0)
        streak_map = streak_map.float()

        terms: dict[str, Tensor] = {
            "stage1": charbonnier_loss(stage1, drop, w.charbonnier_eps),
            "mask": F.binary_cross_entropy(probs, mask, weight=1.0 + (w.mask_pos_weight - 1.0) * mask),
            "output": charbonnier_loss(output, gt, w.charbonnier_eps),
            "masked": F.l1_loss(output * mask, gt * mask) / (mask.mean() + w.masked_eps),
            "streak": F.mse_loss(streak_map, resize_to(streak, streak_map)),
        }
        total = (
            w.stage1 * terms["stage1"]
            + w.mask * terms["mask"]
            + w.output * terms["output"]
            + w.masked * terms["masked"]
            + w.streak * terms["streak"]
        )
        return total, {name: value.detach() for name, value in terms.items()}
