"""The ViMP-Net training objective (reference "Training objective"), with configurable weights.

    loss = w_stage1 * Charbonnier(stage1, drop)
         + w_mask   * BCE(drop_mask, 01drop)
         + w_output * Charbonnier(output, gt)
         + w_masked * L1(output * mask, gt * mask) / (mean(mask) + 1e-8)
         + w_streak * MSE(streak_map, mstreak)

Reference weights 1, 0.8, 1.2, 0.5, 0.5. Drops cover a few percent of the pixels, so
with the reference's plain BCE a small model is best off predicting "no drop"
everywhere (the previous shipped weights, ``vimpnet_lite_v1``, did exactly that). Three options keep
the mask term from settling there, each off by default (the reference objective):

- ``mask_pos_weight``: a fixed weight on the BCE of drop pixels;
- ``mask_balance`` in [0, 1]: class-balanced BCE, computed per batch; 1 gives drop and
  background pixels half of the term each whatever their share, 0 is plain BCE;
- ``mask_focal_gamma``: focal modulation (1 - p_t)^gamma of the (weighted) BCE, which
  spends the gradient on the pixels still misclassified;
- ``mask_dice``: weight of a soft Dice loss per clip (1 - 2|P.Y| / (|P| + |Y|)),
  which depends on overlap, not on the pixel count, so the empty answer scores 1.

``image_l1`` (off by default) adds ``L1(stage1, drop) + L1(output, gt)``. With a large
``charbonnier_eps`` the Charbonnier terms act as a small L2 below ~sqrt(eps), so an
error of a grey level or two has almost no gradient and a clean background is not
returned exactly; the plain L1 keeps a constant slope there.

``identity`` (off by default) is the no-harm term: ``L1(stage1, lq) + L1(output, lq)``
over the pixels where the clean frame equals the rainy one (no rain and no sensor
noise there, |gt - lq| <= half a grey level), normalised by their count. A model that
changes what has no rain pays for it directly, not only through a small share of a
Charbonnier mean. It needs the rainy input ``lq`` among the targets.

``gate`` (off by default; gated models only) supervises stage 1's residual gate with
where stage 1 must change its input: the pixels where the stage-1 target (``drop``:
streaks removed, drops kept) differs from ``lq`` by more than :data:`GATE_TOLERANCE`
(streaks; not the camera's noise). A class-balanced BCE as the drop mask's
(``mask_balance``). Without it, the identity term alone closes the gate everywhere
before the restoration terms can open it where it rains (measured: heavy-rain gain
+3.1 -> +0.03 dB within 250 steps). Strong noise (a few grey levels' sigma) crosses the
tolerance too, so a gate trained so opens on a streak-free noisy frame; ``gate_streak_level``
> 0 counts a change only where the streak map (``mstreak``) is at least that level, so the
camera's noise alone is a closed gate's target.

``no_worse`` (off by default) charges each frame the restoration makes worse than its input, in dB:
mean over frames of max(0, 10 log10((MSE(output, gt) + e) / (MSE(lq, gt) + e))), e = NO_WORSE_FLOOR. It is
zero on every frame the output improves, so it pulls only where the node must not go (a light-rain frame
left under its input) and leaves the restoration of rainy frames to the other terms. The floor keeps the
ratio finite on a rain-free frame (MSE(lq, gt) = 0), which the identity term covers too.

``filled`` (off by default) is the drop-region term on the image the engine publishes rather than on the
network's output: inside the predicted drops the engine blends in an inpainting of them
(:func:`~vimpnet_ros.engine.fill_drops`, weight :data:`~vimpnet_ros.engine.config.DROP_FILL_BLEND`), so
``L1(published * mask, gt * mask) / (mean(mask) + 1e-8)`` with the inpainting a constant (no gradient through
it or the threshold) asks stage 2 for what complements the fill there, not for a restoration standing alone.

Every term is computed in float32 even under autocast: BCE on bf16/fp16 probabilities
is unstable, and the Charbonnier eps of 1e-12 vanishes in half precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimpnet_ros.engine import DROP_FILL_BLEND, MASK_LEVEL, PLANE_SCALE, fill_drops
from vimpnet_ros.errors import ConfigError


def charbonnier_loss(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """mean(sqrt((pred - target)^2 + eps)): a smooth L1 (reference eps 1e-12)."""
    return torch.sqrt((pred - target) ** 2 + eps).mean()


def mask_bce(probs: Tensor, mask: Tensor, pos_weight: float = 1.0, balance: float = 0.0, gamma: float = 0.0) -> Tensor:
    """Weighted, optionally class-balanced and focal BCE of probabilities ``probs`` against a binary ``mask``.

    Shapes (n, t, 1, h, w), float32. Per-pixel weight: ``pos_weight`` on drop pixels,
    times the class-balance weight 0.5 / (share of the pixel's class) raised to
    ``balance`` (no gradient through it); times (1 - p_t)^``gamma``. The mean over pixels
    is returned, so balance 1 keeps the term on the scale of a plain BCE.
    """
    weight = 1.0 + (pos_weight - 1.0) * mask
    if balance > 0:
        with torch.no_grad():
            positive = mask.mean().clamp(1e-4, 1.0 - 1e-4)
            class_weight = torch.where(mask > 0.5, 0.5 / positive, 0.5 / (1.0 - positive))
        weight = weight * class_weight**balance
    per_pixel = F.binary_cross_entropy(probs, mask, reduction="none")
    if gamma > 0:
        p_true = torch.where(mask > 0.5, probs, 1.0 - probs)
        per_pixel = per_pixel * (1.0 - p_true).clamp(min=0.0) ** gamma
    return (per_pixel * weight).mean()


def soft_dice_loss(probs: Tensor, mask: Tensor, smooth: float = 1.0) -> Tensor:
    """Mean over clips of 1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s); (n, t, 1, h, w) inputs.

    Per clip, so a clip without drops still penalises every false drop pixel; ``smooth``
    keeps it defined (and 0) when both are empty.
    """
    dims = tuple(range(1, probs.ndim))
    overlap = (probs * mask).sum(dims)
    total = probs.sum(dims) + mask.sum(dims)
    return (1.0 - (2.0 * overlap + smooth) / (total + smooth)).mean()


#: Stage 1 must change a pixel (its gate target is 1) where the streak-free target differs from the input by more
#: than this in some channel: streaks, not the few grey levels of a camera's noise.
GATE_TOLERANCE = 6.0 / 255.0


def gate_target(lq: Tensor, drop: Tensor, streak: Tensor | None = None, streak_level: float = 0.0) -> Tensor:
    """(n, t, 3, h, w) x2 -> (n, t, 1, h, w) float: 1 where stage 1 must change the input (see GATE_TOLERANCE).

    With ``streak`` (n, t, 1, h, w) and ``streak_level`` > 0, only where a streak of at least that level crosses.
    """
    change = (drop - lq).abs().amax(dim=2, keepdim=True) > GATE_TOLERANCE
    if streak is not None and streak_level > 0.0:
        change = change & (streak >= streak_level)
    return change.float()


#: A pixel counts as rain-free when its clean and rainy values differ by at most half a grey level.
UNCHANGED_TOLERANCE = 0.5 / 255.0


def identity_loss(stage1: Tensor, output: Tensor, lq: Tensor, gt: Tensor) -> Tensor:
    """Mean |stage1 - lq| + |output - lq| over the pixels where gt == lq (all (n, t, 3, h, w) float32).

    Zero when no pixel is unchanged (every pixel rained on or noisy): the term then says nothing.
    """
    unchanged = ((gt - lq).abs().amax(dim=2, keepdim=True) <= UNCHANGED_TOLERANCE).float()
    count = unchanged.sum() * lq.shape[2]
    if count == 0:
        return lq.new_zeros(())
    change = (stage1 - lq).abs() + (output - lq).abs()
    return (change * unchanged).sum() / count


#: The MSE added to both sides of the no-worse ratio, a quarter grey level squared: a rain-free frame changed by r
#: grey levels (RMS) costs 10 log10(1 + (4 r)^2) dB, finite, where the bare ratio would be infinite.
NO_WORSE_FLOOR = (0.25 / 255.0) ** 2


def no_worse_loss(output: Tensor, lq: Tensor, gt: Tensor) -> Tensor:
    """Mean over frames of the dB the output loses against its input (0 where it gains); (n, t, 3, h, w) float32."""
    dims = tuple(range(2, output.ndim))
    mse_out = ((output - gt) ** 2).mean(dims)
    mse_in = ((lq - gt) ** 2).mean(dims)
    loss_db = 10.0 * torch.log10((mse_out + NO_WORSE_FLOOR) / (mse_in + NO_WORSE_FLOOR))
    return loss_db.clamp(min=0.0).mean()


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """L1 over the mask's pixels: mean |pred - target| x mask / (mean(mask) + eps), shapes (n, t, c, h, w)."""
    return F.l1_loss(pred * mask, target * mask) / (mask.mean() + eps)


def published_output(output: Tensor, probs: Tensor, blend: float = DROP_FILL_BLEND) -> Tensor:
    """``output`` (n, t, 3, h, w) in [0, 1] as the engine publishes it: the drop fill applied with the drop
    probabilities ``probs`` (n, t, 1, h, w), the inpainting computed from the same 8-bit planes as the engine's.
    The inpainting is a constant (computed without gradient, on the CPU), so inside the filled drops the
    gradient reaches ``output`` scaled by 1 - ``blend`` and elsewhere unchanged."""
    with torch.no_grad():
        planes = (output.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)  # 8-bit images
        masks = (probs.detach().clamp(0.0, 1.0) * PLANE_SCALE).round().to(torch.uint8)
        images = planes.permute(0, 1, 3, 4, 2).reshape(-1, *planes.shape[-2:], planes.shape[2]).cpu().numpy()
        drops = masks.reshape(-1, *masks.shape[-2:]).cpu().numpy()
        inpainted = torch.zeros_like(output)
        filled_at = torch.zeros_like(probs)
        flat_inpainted = inpainted.view(-1, *output.shape[2:])
        flat_at = filled_at.view(-1, *probs.shape[2:])
        for i, (image, drop) in enumerate(zip(images, drops, strict=True)):
            filled = fill_drops(image, drop, 1.0)
            if filled is not image:
                flat_inpainted[i] = torch.from_numpy(filled).permute(2, 0, 1).to(flat_inpainted) / 255.0
                flat_at[i, 0] = torch.from_numpy(drop >= MASK_LEVEL).to(flat_at)
    return output + blend * filled_at * (inpainted - output)


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
    mask_balance: float = 0.0
    mask_focal_gamma: float = 0.0
    mask_dice: float = 0.0
    image_l1: float = 0.0
    identity: float = 0.0
    no_worse: float = 0.0
    filled: float = 0.0
    gate: float = 0.0
    gate_streak_level: float = 0.0
    charbonnier_eps: float = 1e-12
    masked_eps: float = 1e-8

    def __post_init__(self) -> None:
        """Negative weights would maximise an error: refuse them early."""
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"loss weight {f.name} must be >= 0, got {getattr(self, f.name)}")
        if self.mask_balance > 1:
            raise ConfigError(f"loss.mask_balance must be in [0, 1], got {self.mask_balance}")

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
        change_gate: Tensor | None = None,
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
            "mask": mask_bce(probs, mask, w.mask_pos_weight, w.mask_balance, w.mask_focal_gamma),
            "output": charbonnier_loss(output, gt, w.charbonnier_eps),
            "masked": masked_l1(output, gt, mask, w.masked_eps),
            "streak": F.mse_loss(streak_map, resize_to(streak, streak_map)),
        }
        # Only weighted terms join the graph: a zero weight costs no backward (a frozen stage stays out of it).
        weighted = [getattr(w, name) * term for name, term in terms.items() if getattr(w, name) > 0]
        total = sum(weighted, stage1.new_zeros(()))
        if w.mask_dice > 0:
            terms["dice"] = soft_dice_loss(probs, mask)
            total = total + w.mask_dice * terms["dice"]
        if w.image_l1 > 0:
            terms["image_l1"] = F.l1_loss(stage1, drop) + F.l1_loss(output, gt)
            total = total + w.image_l1 * terms["image_l1"]
        if w.gate > 0:
            if change_gate is None:
                raise ConfigError("loss.gate needs a gated model (a config with gated_residuals)")
            target = gate_target(targets["lq"].float(), drop, streak, w.gate_streak_level)
            gate = change_gate.float().clamp(0.0, 1.0)
            terms["gate"] = mask_bce(gate, target, balance=w.mask_balance)
            total = total + w.gate * terms["gate"]
        if w.identity > 0:
            terms["identity"] = identity_loss(stage1, output, targets["lq"].float(), gt)
            total = total + w.identity * terms["identity"]
        if w.no_worse > 0:
            terms["no_worse"] = no_worse_loss(output, targets["lq"].float(), gt)
            total = total + w.no_worse * terms["no_worse"]
        if w.filled > 0:
            terms["filled"] = masked_l1(published_output(output, probs), gt, mask, w.masked_eps)
            total = total + w.filled * terms["filled"]
        return total, {name: value.detach() for name, value in terms.items()}
