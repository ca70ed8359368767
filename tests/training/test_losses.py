"""The training objective against a hand-written formula of the reference's five terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vimpnet_ros.engine import fill_drops
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.training.losses import (
    LossWeights,
    VimpNetLoss,
    charbonnier_loss,
    gate_target,
    identity_loss,
    mask_bce,
    no_worse_loss,
    published_output,
    resize_to,
    soft_dice_loss,
)


def _batch(h: int = 16, w: int = 12) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    n, t = 2, 3
    out = {
        "stage1": torch.rand(n, t, 3, h, w, generator=g),
        "drop_mask": torch.rand(n, t, 1, h, w, generator=g) * 0.98 + 0.01,
        "streak_map": torch.rand(n, t, 1, h, w, generator=g),
        "output": torch.rand(n, t, 3, h, w, generator=g),
    }
    targets = {
        "gt": torch.rand(n, t, 3, h, w, generator=g),
        "drop": torch.rand(n, t, 3, h, w, generator=g),
        "mask": (torch.rand(n, t, 1, h, w, generator=g) > 0.7).float(),
        "streak": torch.rand(n, t, 1, h, w, generator=g),
    }
    return out, targets


def test_total_is_the_reference_weighted_sum() -> None:
    out, tg = _batch()
    total, terms = VimpNetLoss()(out["stage1"], out["drop_mask"], out["streak_map"], out["output"], tg)
    mask = tg["mask"]
    expected = (
        torch.sqrt((out["stage1"] - tg["drop"]) ** 2 + 1e-12).mean()
        + 0.8 * F.binary_cross_entropy(out["drop_mask"], mask)
        + 1.2 * torch.sqrt((out["output"] - tg["gt"]) ** 2 + 1e-12).mean()
        + 0.5 * (out["output"] * mask - tg["gt"] * mask).abs().mean() / (mask.mean() + 1e-8)
        + 0.5 * ((out["streak_map"] - tg["streak"]) ** 2).mean()
    )
    torch.testing.assert_close(total, expected)
    assert set(terms) == {"stage1", "mask", "output", "masked", "streak"}


def test_weights_are_configurable_and_zero_removes_a_term() -> None:
    out, tg = _batch()
    only_streak = LossWeights.from_dict({"stage1": 0, "mask": 0, "output": 0, "masked": 0, "streak": 2.0})
    total, terms = VimpNetLoss(only_streak)(out["stage1"], out["drop_mask"], out["streak_map"], out["output"], tg)
    torch.testing.assert_close(total, 2.0 * terms["streak"])
    # A zero-weighted term stays out of the graph: a frozen stage behind it costs no backward.
    output = out["output"].clone().requires_grad_()
    total, _ = VimpNetLoss(only_streak)(out["stage1"], out["drop_mask"], out["streak_map"].requires_grad_(), output, tg)
    total.backward()
    assert output.grad is None


def test_mask_pos_weight_scales_the_bce_of_drop_pixels() -> None:
    out, tg = _batch()
    weights = LossWeights.from_dict({"mask_pos_weight": 20.0})
    _, terms = VimpNetLoss(weights)(out["stage1"], out["drop_mask"], out["streak_map"], out["output"], tg)
    mask, probs = tg["mask"], out["drop_mask"]
    per_pixel = F.binary_cross_entropy(probs, mask, reduction="none")
    expected = (per_pixel * (1.0 + 19.0 * mask)).mean()
    torch.testing.assert_close(terms["mask"], expected)
    # An all-zero prediction costs 20x more on drop pixels than with the reference's equal weights.
    _, plain = VimpNetLoss()(out["stage1"], out["drop_mask"], out["streak_map"], out["output"], tg)
    assert terms["mask"] > plain["mask"]


def test_streak_target_is_area_resized_to_a_quarter_res_map() -> None:
    target = torch.arange(16.0).view(1, 1, 1, 4, 4)
    small = torch.zeros(1, 1, 1, 2, 2)
    resized = resize_to(target, small)
    assert resized.shape == (1, 1, 1, 2, 2)
    assert resized[0, 0, 0, 0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)
    out, tg = _batch(8, 8)
    quarter = torch.rand(2, 3, 1, 2, 2)
    _, terms = VimpNetLoss()(out["stage1"], out["drop_mask"], quarter, out["output"], tg)
    torch.testing.assert_close(terms["streak"], F.mse_loss(quarter, resize_to(tg["streak"], quarter)))


def test_charbonnier_of_equal_tensors_is_sqrt_eps() -> None:
    x = torch.rand(5)
    assert charbonnier_loss(x, x).item() == pytest.approx(1e-6)


def test_loss_is_float32_under_bf16_inputs() -> None:
    out, tg = _batch()
    half = {k: v.bfloat16() for k, v in out.items()}
    total, _ = VimpNetLoss()(half["stage1"], half["drop_mask"], half["streak_map"], half["output"], tg)
    assert total.dtype == torch.float32 and torch.isfinite(total)


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown loss weight"):
        LossWeights.from_dict({"stage_1": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        LossWeights(mask=-1.0)


def test_class_balanced_bce_gives_each_class_half_the_term() -> None:
    out, tg = _batch()
    mask, probs = tg["mask"], out["drop_mask"]
    balanced = LossWeights.from_dict({"mask_balance": 1.0})
    _, terms = VimpNetLoss(balanced)(out["stage1"], probs, out["streak_map"], out["output"], tg)
    per_pixel = F.binary_cross_entropy(probs, mask, reduction="none")
    share = mask.mean()
    expected = 0.5 * per_pixel[mask > 0.5].mean() + 0.5 * per_pixel[mask < 0.5].mean()
    torch.testing.assert_close(terms["mask"], expected)
    assert 0.2 < float(share) < 0.4  # the batch is unbalanced, so balancing changes the term
    torch.testing.assert_close(mask_bce(probs, mask, balance=0.0), F.binary_cross_entropy(probs, mask))


def test_no_drop_anywhere_is_not_a_good_answer_with_balance_and_dice() -> None:
    mask = torch.zeros(1, 2, 1, 16, 16)
    mask[..., 4:6, 4:6] = 1.0  # drops cover 1.6 % of the pixels
    empty = torch.full_like(mask, 0.02)
    found = torch.where(mask > 0.5, 0.9, 0.002)
    plain_empty, plain_found = F.binary_cross_entropy(empty, mask), F.binary_cross_entropy(found, mask)
    assert plain_empty < 0.1  # with plain BCE predicting nothing is already cheap ...
    balanced_empty, balanced_found = mask_bce(empty, mask, balance=1.0), mask_bce(found, mask, balance=1.0)
    assert balanced_empty > 10 * balanced_found  # ... balanced, it costs what missing half the classes costs
    assert soft_dice_loss(empty, mask) > 0.9 and soft_dice_loss(found, mask) < 0.2
    assert plain_found < plain_empty


def test_focal_term_down_weights_easy_pixels_and_dice_adds_a_term() -> None:
    out, tg = _batch()
    mask, probs = tg["mask"], out["drop_mask"]
    focal = mask_bce(probs, mask, gamma=2.0)
    per_pixel = F.binary_cross_entropy(probs, mask, reduction="none")
    p_true = torch.where(mask > 0.5, probs, 1 - probs)
    torch.testing.assert_close(focal, (per_pixel * (1 - p_true) ** 2).mean())
    weights = LossWeights.from_dict({"mask_dice": 0.5})
    total, terms = VimpNetLoss(weights)(out["stage1"], probs, out["streak_map"], out["output"], tg)
    plain_total, _ = VimpNetLoss()(out["stage1"], probs, out["streak_map"], out["output"], tg)
    torch.testing.assert_close(terms["dice"], soft_dice_loss(probs, mask))
    torch.testing.assert_close(total, plain_total + 0.5 * terms["dice"])
    with pytest.raises(ConfigError, match="mask_balance"):
        LossWeights.from_dict({"mask_balance": 1.5})


def test_image_l1_keeps_a_slope_where_a_wide_charbonnier_has_none() -> None:
    out, tg = _batch()
    weights = LossWeights.from_dict({"charbonnier_eps": 1e-2, "image_l1": 2.0})
    args = (out["stage1"], out["drop_mask"], out["streak_map"], out["output"], tg)
    total, terms = VimpNetLoss(weights)(*args)
    base, _ = VimpNetLoss(LossWeights.from_dict({"charbonnier_eps": 1e-2}))(*args)
    expected = F.l1_loss(out["stage1"], tg["drop"]) + F.l1_loss(out["output"], tg["gt"])
    torch.testing.assert_close(terms["image_l1"], expected)
    torch.testing.assert_close(total, base + 2.0 * expected)
    # One grey level of error: the eps-1e-2 Charbonnier has almost no slope there, the L1 has slope 1.
    pred = torch.full((1, 1, 3, 4, 4), 0.5 + 1 / 255, requires_grad=True)
    target = torch.full((1, 1, 3, 4, 4), 0.5)
    charbonnier_loss(pred, target, 1e-2).backward()
    wide = pred.grad.abs().sum().item()
    pred.grad = None
    F.l1_loss(pred, target).backward()
    assert wide < 0.05 * pred.grad.abs().sum().item()


def test_identity_term_charges_change_only_where_the_clean_frame_equals_the_input() -> None:
    lq = torch.rand(1, 2, 3, 8, 8)
    gt = lq.clone()
    gt[..., :4] = 1.0 - lq[..., :4]  # left half rained on: the model may change it freely
    changed = lq.clone()
    changed[..., :4] = gt[..., :4]  # restores the left half, leaves the right half alone
    assert identity_loss(changed, changed, lq, gt).item() == 0.0
    damaged = changed.clone()
    damaged[..., 4:] += 0.1  # changes the rain-free right half
    assert identity_loss(damaged, changed, lq, gt).item() == pytest.approx(0.1, abs=1e-5)
    weights = LossWeights(identity=3.0)
    targets = {"gt": gt, "drop": gt, "mask": torch.zeros(1, 2, 1, 8, 8), "streak": torch.zeros(1, 2, 1, 8, 8), "lq": lq}
    probs = torch.full((1, 2, 1, 8, 8), 0.5)
    _, terms = VimpNetLoss(weights)(damaged, probs, torch.zeros(1, 2, 1, 2, 2), changed, targets)
    assert terms["identity"].item() == pytest.approx(0.1, abs=1e-5)
    assert identity_loss(lq, lq, lq, 1.0 - lq).item() == 0.0  # no rain-free pixel: the term says nothing


def test_no_worse_term_charges_the_db_lost_by_frames_made_worse_and_nothing_for_frames_improved() -> None:
    gt = torch.full((1, 2, 3, 8, 8), 0.5)
    lq = gt.clone()
    lq[..., :4] += 0.1  # both frames rained on: input MSE 0.005
    output = lq.clone()
    output[:, 0, ..., :4] = gt[:, 0, ..., :4]  # frame 0 restored: gains, charged nothing
    output[:, 1] += 0.1  # frame 1 made worse: MSE (0.2^2 + 0.1^2) / 2 = 0.025 against 0.005 (7 dB lost)
    floor = (0.25 / 255.0) ** 2
    lost = 10.0 * math.log10((0.025 + floor) / (0.005 + floor))
    assert no_worse_loss(output, lq, gt).item() == pytest.approx(lost / 2, rel=1e-4)
    assert no_worse_loss(gt.expand_as(lq), lq, gt).item() == 0.0
    # A rain-free frame changed by a tenth of a grey level: a finite cost set by the floor (a quarter grey level).
    assert no_worse_loss(gt + 0.1 / 255.0, gt, gt).item() == pytest.approx(10.0 * math.log10(1.0 + 0.4**2), rel=1e-3)
    targets = {"gt": gt, "drop": gt, "mask": torch.zeros(1, 2, 1, 8, 8), "streak": torch.zeros(1, 2, 1, 8, 8), "lq": lq}
    probs = torch.full((1, 2, 1, 8, 8), 0.5)
    output.requires_grad_(True)
    total, terms = VimpNetLoss(LossWeights(no_worse=2.0, stage1=0, mask=0, output=0, masked=0, streak=0))(
        gt, probs, torch.zeros(1, 2, 1, 2, 2), output, targets
    )
    assert total.item() == pytest.approx(lost, rel=1e-4)
    assert terms["no_worse"].item() == pytest.approx(lost / 2, rel=1e-4)
    total.backward()
    assert output.grad[:, 0].abs().sum() == 0 and output.grad[:, 1].abs().sum() > 0  # only the worse frame is pulled


def test_gate_term_supervises_the_gate_with_where_stage1_must_change() -> None:
    lq = torch.full((1, 1, 3, 4, 4), 0.5)
    drop = lq.clone()
    drop[..., 0, 0] = 0.2  # a streak pixel: stage 1 must change it
    drop[..., 1, 1] = 0.5 + 2.0 / 255.0  # the camera's noise: below the tolerance, leave it
    target = gate_target(lq, drop)
    assert target.shape == (1, 1, 1, 4, 4) and target.sum() == 1 and target[..., 0, 0] == 1
    targets = {"gt": drop, "drop": drop, "mask": torch.zeros(1, 1, 1, 4, 4), "streak": torch.zeros(1, 1, 1, 4, 4)}
    targets["lq"] = lq
    probs = torch.full((1, 1, 1, 4, 4), 0.5)
    loss = VimpNetLoss(LossWeights(gate=2.0))
    right, wrong = target.clamp(0.01, 0.99), (1 - target).clamp(0.01, 0.99)
    _, good = loss(drop, probs, probs, drop, targets, right)
    _, bad = loss(drop, probs, probs, drop, targets, wrong)
    assert good["gate"] < 0.05 < bad["gate"]
    with pytest.raises(ConfigError):
        loss(drop, probs, probs, drop, targets, None)  # an ungated model cannot be trained with loss.gate


def test_gate_streak_level_leaves_the_cameras_strong_noise_to_a_closed_gate() -> None:
    lq = torch.full((1, 1, 3, 4, 4), 0.5)
    drop = lq.clone()
    drop[..., 0, 0] = 0.2  # a streak pixel
    drop[..., 1, 1] = 0.5 - 12.0 / 255.0  # strong noise: over the tolerance, no streak crosses it
    streak = torch.zeros(1, 1, 1, 4, 4)
    streak[..., 0, 0] = 0.3
    assert gate_target(lq, drop).sum() == 2  # the default counts every change, the noise's too
    target = gate_target(lq, drop, streak, 1.0 / 255.0)
    assert target.sum() == 1 and target[..., 0, 0] == 1
    assert gate_target(lq, drop, streak, 0.5).sum() == 0  # the streak is fainter than the level asked
    targets = {"gt": drop, "drop": drop, "mask": torch.zeros_like(streak), "streak": streak, "lq": lq}
    probs = torch.full((1, 1, 1, 4, 4), 0.5)
    closed_on_noise = target.clamp(0.01, 0.99)
    _, plain = VimpNetLoss(LossWeights(gate=1.0))(drop, probs, probs, drop, targets, closed_on_noise)
    _, level = VimpNetLoss(LossWeights(gate=1.0, gate_streak_level=1.0 / 255.0))(
        drop, probs, probs, drop, targets, closed_on_noise
    )
    assert level["gate"] < 0.05 < plain["gate"]


def test_filled_term_scores_the_published_image_and_sends_the_network_half_the_gradient_inside_the_drops() -> None:
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(1, 2, 3, 48, 64, generator=g)
    output = (gt + 0.2 * torch.rand(1, 2, 3, 48, 64, generator=g)).clamp(0, 1)
    output = (output * 255).round() / 255  # on the engine's 8-bit planes
    probs = torch.zeros(1, 2, 1, 48, 64)
    probs[0, 0, 0, 10:20, 20:34] = 0.9  # a predicted drop in the first frame only
    probs[0, 0, 0, 30, 5] = 0.49  # under the threshold: not filled
    published = published_output(output, probs)
    # The engine's fill on the same planes, to the rounding of its result.
    image = (output[0, 0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    engine = fill_drops(image, (probs[0, 0, 0].numpy() * 255).round().astype("uint8"))
    torch.testing.assert_close(
        published[0, 0].permute(1, 2, 0) * 255, torch.from_numpy(engine).float(), atol=0.51, rtol=0
    )
    assert torch.equal(published[0, 1], output[0, 1]) and published[0, 0, :, 30, 5].equal(output[0, 0, :, 30, 5])
    mask = torch.zeros(1, 2, 1, 48, 64)
    mask[0, 0, 0, 8:22, 18:36] = 1.0
    targets = {"gt": gt, "drop": gt, "mask": mask, "streak": torch.zeros(1, 2, 1, 48, 64)}
    output.requires_grad_(True)
    weights = LossWeights(filled=4.0, stage1=0, mask=0, output=0, masked=0, streak=0)
    total, terms = VimpNetLoss(weights)(gt, probs, torch.zeros(1, 2, 1, 12, 16), output, targets)
    expected = (published.detach() * mask - gt * mask).abs().mean() / (mask.mean() + 1e-8)
    torch.testing.assert_close(terms["filled"], expected)
    total.backward()
    grad = output.grad[0, 0].abs()
    inside, edge = grad[:, 12, 25], grad[:, 9, 19]  # a filled pixel; a drop pixel the network restores alone
    torch.testing.assert_close(inside, edge / 2)
    assert output.grad[0, 1].abs().sum() == 0  # no drop in the second frame's target: nothing to pull
