"""The grid_sample DCN against a direct loop over the DCNv2 definition and against mmcv's golden outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.model.conftest import DATA_DIR
from vimpnet_ros.model.dcn import modulated_deform_conv2d


def _bilinear_zero_outside(img: torch.Tensor, py: float, px: float) -> torch.Tensor:
    """mmcv's dmcn_im2col_bilinear: zero at/after one pixel outside, else in-image corners weighted."""
    c, h, w = img.shape
    value = torch.zeros(c, dtype=torch.float64)
    if py <= -1 or px <= -1 or py >= h or px >= w:
        return value
    y0, x0 = math.floor(py), math.floor(px)
    ly, lx = py - y0, px - x0
    for yy, xx, weight in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        if 0 <= yy < h and 0 <= xx < w:
            value = value + weight * img[:, yy, xx]
    return value


def deform_conv_loop(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    stride: int,
    padding: int,
    dilation: int,
    deform_groups: int,
) -> torch.Tensor:
    """The definition, one sample at a time in float64 (slow; only for tiny inputs)."""
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    cg = c // deform_groups
    xd, od, md = x.double(), offset.double(), mask.double()
    cols = torch.zeros(n, c, taps, ho, wo, dtype=torch.float64)
    for b in range(n):
        for g in range(deform_groups):
            img = xd[b, g * cg : (g + 1) * cg]
            for k in range(taps):
                ki, kj = divmod(k, kw)
                for y in range(ho):
                    for xo in range(wo):
                        dy = float(od[b, 2 * (g * taps + k), y, xo])
                        dx = float(od[b, 2 * (g * taps + k) + 1, y, xo])
                        py = y * stride - padding + ki * dilation + dy
                        px = xo * stride - padding + kj * dilation + dx
                        sample = _bilinear_zero_outside(img, py, px)
                        cols[b, g * cg : (g + 1) * cg, k, y, xo] = sample * md[b, g * taps + k, y, xo]
    out = torch.einsum("ock,nckyx->noyx", weight.double().reshape(out_channels, c, taps), cols)
    return out + bias.double().view(1, -1, 1, 1)


@pytest.mark.parametrize(
    ("n", "c", "h", "w", "groups", "kernel", "stride", "padding", "dilation"),
    [
        (1, 4, 5, 7, 1, 3, 1, 1, 1),
        (2, 8, 7, 5, 4, 3, 1, 1, 1),
        (1, 16, 6, 9, 16, 3, 1, 1, 1),
        (1, 6, 9, 8, 2, 3, 2, 1, 1),
        (1, 4, 9, 11, 2, 3, 1, 2, 2),
        (1, 3, 7, 6, 3, 1, 1, 0, 1),
    ],
)
def test_matches_loop_definition(
    n: int, c: int, h: int, w: int, groups: int, kernel: int, stride: int, padding: int, dilation: int
) -> None:
    gen = torch.Generator().manual_seed(h * 100 + w * 10 + groups)
    ho = (h + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    taps = kernel * kernel
    x = torch.randn(n, c, h, w, generator=gen)
    # Offsets up to +-6 px: many samples land fully or partly outside the image.
    offset = (torch.rand(n, 2 * groups * taps, ho, wo, generator=gen) - 0.5) * 12
    mask = torch.rand(n, groups * taps, ho, wo, generator=gen)
    weight = torch.randn(5, c, kernel, kernel, generator=gen)
    bias = torch.randn(5, generator=gen)
    expected = deform_conv_loop(x, offset, mask, weight, bias, stride, padding, dilation, groups)
    got = modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation, groups)
    assert got.shape == expected.shape
    assert (got.double() - expected).abs().max() < 1e-4
    outside = (offset.abs() > 3).float().mean()
    assert outside > 0.2  # the case really exercises out-of-image samples


def test_zero_offsets_full_mask_is_a_plain_convolution() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 11, 13, generator=gen)
    weight = torch.randn(6, 8, 3, 3, generator=gen)
    bias = torch.randn(6, generator=gen)
    offset = torch.zeros(2, 2 * 4 * 9, 11, 13)
    mask = torch.ones(2, 4 * 9, 11, 13)
    got = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 4)
    torch.testing.assert_close(got, torch.nn.functional.conv2d(x, weight, bias, padding=1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["dcn_groups4.npz", "dcn_groups16.npz"])
def test_matches_mmcv_golden(name: str) -> None:
    """mmcv's own CPU kernel on offsets up to +-8 px (``data/README.md``: verbatim copies of the reference files)."""
    data = np.load(DATA_DIR / name)
    tensors = {k: torch.from_numpy(data[k]) for k in ("input", "offset", "mask", "weight", "bias")}
    groups = tensors["offset"].shape[1] // 18
    got = modulated_deform_conv2d(
        tensors["input"], tensors["offset"], tensors["mask"], tensors["weight"], tensors["bias"], 1, 1, 1, groups
    )
    error = (got - torch.from_numpy(data["output"])).abs().max().item()
    assert error < 1e-4, f"{name}: max abs error {error:.2e} >= 1e-4"
