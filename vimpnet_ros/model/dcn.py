"""Modulated deformable convolution (DCNv2) in plain PyTorch, built on ``grid_sample``.

Same semantics as mmcv's ``modulated_deform_conv2d`` (and torchvision's
``deform_conv2d`` with a mask): for output pixel (y, x), deformable group g and
kernel tap k = (ki, kj) (row-major), the input of group g is sampled bilinearly at
``(y*stride - pad + ki*dil + dy, x*stride - pad + kj*dil + dx)`` with zeros outside
the image, where ``offset[:, 2*(g*K + k)] = dy`` and ``offset[:, 2*(g*K + k) + 1] = dx``;
the sample is scaled by ``mask[:, g*K + k]`` and by the weight of that tap. Written
with grid_sample + a matmul (a 1x1 convolution) so that ONNX and Torch-TensorRT convert it
without a custom plugin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def modulated_deform_conv2d(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    deform_groups: int = 1,
) -> Tensor:
    """DCNv2: x (n, c, h, w), offset (n, 2*G*K, ho, wo), mask (n, G*K, ho, wo), weight (o, c, kh, kw).

    Returns (n, o, ho, wo). Convolution groups are 1 (the only case ViMP-Net uses).
    """
    n, c, h, w = x.shape
    out_channels, in_channels, kh, kw = weight.shape
    if in_channels != c:
        raise ValueError(f"weight expects {in_channels} input channels, input has {c}")
    if c % deform_groups:
        raise ValueError(f"deform_groups {deform_groups} must divide the {c} input channels")
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    taps = kh * kw
    g = deform_groups
    dtype = x.dtype

    # Sampling positions in input pixels, (n, G, K, ho, wo) each.
    offset = offset.reshape(n, g, taps, 2, ho, wo)
    if offset.dtype != dtype:
        offset = offset.to(dtype)
    if mask.dtype != dtype:
        mask = mask.to(dtype)
    base_y = (torch.arange(ho, dtype=dtype, device=x.device) * sh - ph).view(1, 1, 1, ho, 1)
    base_x = (torch.arange(wo, dtype=dtype, device=x.device) * sw - pw).view(1, 1, 1, 1, wo)
    tap_y = (torch.arange(kh, dtype=dtype, device=x.device) * dh).repeat_interleave(kw).view(1, 1, taps, 1, 1)
    tap_x = (torch.arange(kw, dtype=dtype, device=x.device) * dw).repeat(kh).view(1, 1, taps, 1, 1)
    pos_y = base_y + tap_y + offset[:, :, :, 0]
    pos_x = base_x + tap_x + offset[:, :, :, 1]

    # grid_sample with align_corners=False maps pixel p to (2p + 1) / size - 1; valid for any size >= 1.
    grid = torch.stack(((2.0 * pos_x + 1.0) / w - 1.0, (2.0 * pos_y + 1.0) / h - 1.0), dim=-1)
    grid = grid.reshape(n * g, taps * ho, wo, 2)
    groups_in = x.reshape(n * g, c // g, h, w)
    sampled = F.grid_sample(groups_in, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # (n*G, c/G, K*ho, wo) -> modulate -> (n, c*K, ho, wo) in weight order (channel, tap).
    sampled = sampled.reshape(n, g, c // g, taps, ho, wo) * mask.reshape(n, g, 1, taps, ho, wo)
    # The remaining 1x1 convolution as one matmul: CPU Conv2d takes a slow path for 1x1 kernels this wide.
    columns = sampled.reshape(n, c * taps, ho * wo)
    out = torch.matmul(weight.reshape(out_channels, c * taps), columns)
    if bias is not None:
        out = out + bias.view(1, out_channels, 1)
    return out.reshape(n, out_channels, ho, wo)
