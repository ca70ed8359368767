"""The training objective against a hand-written formula of the reference's five terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.training.losses import LossWeights, VimpNetLoss, charbonnier_loss, resize_to


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
