"""SPyNet optical flow (Ranjan and Black 2017) as the reference uses it, with its parameter names.

Six pyramid levels, each a five-conv basic module of 7x7 convolutions. The
reference's ViMP-Net and BasicVSR++ both run it on 0.25x frames with hidden widths
(32, 64, 32, 16); narrower widths (a model config's ``spynet_channels``) keep the
structure and parameter names for models trained from scratch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimpnet_ros.model.arch_util import flow_warp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PYRAMID_LEVELS = 6
#: Hidden widths of the published basic module (its pretrained weights need exactly these).
SPYNET_CHANNELS = (32, 64, 32, 16)


class ConvReLU(nn.Module):
    """7x7 conv with an optional ReLU; stored as ``conv`` to match the reference names."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 7, 1, 3)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        """(n, c_in, h, w) -> (n, c_out, h, w)."""
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class SPyNetBasicModule(nn.Module):
    """Flow residual from [reference, warped support, upsampled flow] (8 channels) to 2 channels."""

    def __init__(self, hidden: tuple[int, ...] = SPYNET_CHANNELS) -> None:
        super().__init__()
        widths = (8, *hidden, 2)
        self.basic_module = nn.Sequential(
            *(ConvReLU(widths[i], widths[i + 1], relu=i < len(widths) - 2) for i in range(len(widths) - 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        """(n, 8, h, w) -> (n, 2, h, w)."""
        return self.basic_module(x)


class SPyNet(nn.Module):
    """Coarse-to-fine flow; ``forward(ref, supp)`` gives the flow that samples ``supp`` onto ``ref``."""

    def __init__(self, hidden: tuple[int, ...] = SPYNET_CHANNELS) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList(SPyNetBasicModule(hidden) for _ in range(PYRAMID_LEVELS))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def compute_flow(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow on frames whose sides are multiples of 32: (n, 3, h, w) x2 -> (n, 2, h, w)."""
        n, _, h, w = ref.shape
        refs = [(ref - self.mean) / self.std]
        supps = [(supp - self.mean) / self.std]
        for _ in range(PYRAMID_LEVELS - 1):
            refs.append(F.avg_pool2d(refs[-1], kernel_size=2, stride=2, count_include_pad=False))
            supps.append(F.avg_pool2d(supps[-1], kernel_size=2, stride=2, count_include_pad=False))
        refs.reverse()
        supps.reverse()
        flow = ref.new_zeros(n, 2, h // 2 ** (PYRAMID_LEVELS - 1), w // 2 ** (PYRAMID_LEVELS - 1))
        for level, module in enumerate(self.basic_module):
            if level == 0:
                flow_up = flow
            else:
                flow_up = F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supps[level], flow_up, padding_mode="border")
            flow = flow_up + module(torch.cat([refs[level], warped, flow_up], dim=1))
        return flow

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow ref -> supp for any size: (n, 3, h, w) x2 in [0, 1] -> (n, 2, h, w), channel 0 = dx."""
        h, w = ref.shape[-2:]
        h_up = -(-h // 32) * 32
        w_up = -(-w // 32) * 32
        if (h_up, w_up) != (h, w):
            ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
            supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = self.compute_flow(ref, supp)
        if (h_up, w_up) == (h, w):
            return flow
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([flow[:, :1] * (w / w_up), flow[:, 1:] * (h / h_up)], dim=1)
