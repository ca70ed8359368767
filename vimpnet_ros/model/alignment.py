"""Second-order deformable alignment (BasicVSR++), extended by ViMP-Net with the streak map.

The offsets are predicted from the warped neighbours, the current feature, both
flows and the streak intensity, then added to the flows as residuals; the
aligned feature comes from one modulated deformable convolution.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vimpnet_ros.model.dcn import modulated_deform_conv2d

KERNEL_SIZE = 3


class SecondOrderDeformableAlignment(nn.Module):
    """DCN over [prop, feat2] (2c channels) -> c channels, guided by flows and the streak map.

    Parameters: ``weight`` (c, 2c, 3, 3), ``bias`` (c,), ``conv_offset`` (197 -> 432 channels for c=64, 16 groups).
    """

    def __init__(self, channels: int, deform_groups: int, max_residue_magnitude: float) -> None:
        super().__init__()
        self.deform_groups = deform_groups
        self.max_residue_magnitude = max_residue_magnitude
        taps = KERNEL_SIZE * KERNEL_SIZE
        self.weight = nn.Parameter(torch.empty(channels, 2 * channels, KERNEL_SIZE, KERNEL_SIZE))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.conv_offset = nn.Sequential(
            nn.Conv2d(3 * channels + 2 + 2 + 1, channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2d(channels, 3 * taps * deform_groups, 3, 1, 1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmcv's DCN init for the conv weight; zero offsets/masks at start so training begins from the flows."""
        fan_in = self.weight.shape[1] * KERNEL_SIZE * KERNEL_SIZE
        nn.init.uniform_(self.weight, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)

    def forward(self, x: Tensor, cond: Tensor, flow_1: Tensor, flow_2: Tensor, streak: Tensor) -> Tensor:
        """Align ``x`` (n, 2c, h, w) = [prop, feat2].

        ``cond`` (n, 3c, h, w) = [warped prop, current feature, warped feat2];
        ``flow_1``/``flow_2`` (n, 2, h, w) first/second-order flows (dx, dy);
        ``streak`` (n, 1, h, w). Returns (n, c, h, w).
        """
        out = self.conv_offset(torch.cat([cond, flow_1, flow_2, streak], dim=1))
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = self.max_residue_magnitude * torch.tanh(torch.cat([o1, o2], dim=1))
        offset_1, offset_2 = torch.chunk(offset, 2, dim=1)
        # DCN offsets are (dy, dx) pairs; flows are (dx, dy).
        pairs = offset_1.shape[1] // 2
        offset_1 = offset_1 + flow_1.flip(1).repeat(1, pairs, 1, 1)
        offset_2 = offset_2 + flow_2.flip(1).repeat(1, pairs, 1, 1)
        offset = torch.cat([offset_1, offset_2], dim=1)
        return modulated_deform_conv2d(
            x, offset, torch.sigmoid(mask), self.weight, self.bias, 1, 1, 1, self.deform_groups
        )
