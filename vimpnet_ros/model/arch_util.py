"""Blocks shared by the ViMP-Net modules: flow warping, residual blocks, per-frame pixel shuffle.

Kept in one module (BasicSR's arch_util) so each architecture file only says how
the blocks are wired. Everything here is export-friendly: static shapes, no
data-dependent branches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def make_layer(block: Callable[[], nn.Module], num_blocks: int) -> nn.Sequential:
    """``num_blocks`` fresh instances of ``block`` in a Sequential (names ``0``, ``1``, ...)."""
    return nn.Sequential(*(block() for _ in range(num_blocks)))


def base_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Pixel coordinates ``(h, w, 2)`` with channel 0 = x (column) and 1 = y (row)."""
    ys = torch.arange(h, dtype=dtype, device=device)
    xs = torch.arange(w, dtype=dtype, device=device)
    return torch.stack((xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)), dim=-1)


def flow_warp(x: Tensor, flow: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Warp ``x`` (n, c, h, w) by ``flow`` (n, 2, h, w), channel 0 = dx, 1 = dy, in pixels.

    Samples ``x`` at pixel + flow with bilinear interpolation (align_corners=True,
    i.e. normalised by w-1 and h-1), as the reference's ``flow_warp``.
    """
    _, _, h, w = x.shape
    grid = base_grid(h, w, flow.dtype, flow.device).unsqueeze(0) + flow.permute(0, 2, 3, 1)
    grid_x = grid[..., 0] * (2.0 / max(w - 1, 1)) - 1.0
    grid_y = grid[..., 1] * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)
    if grid.dtype != x.dtype:  # flows may stay float32 while features run in half precision
        grid = grid.to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def fill_from_surroundings(frames: Tensor, holes: Tensor) -> Tensor:
    """Each hole pixel replaced by the mean of the known pixels around it, nearest first (pull-push).

    frames (b, c, h, w), holes (b, 1, h, w) in {0, 1} (1 = unknown) -> (b, c, h, w); known pixels are kept.
    Pull: halve the frame until it is one pixel high or wide, each coarse pixel the mean of the known fine
    pixels under it (a coarse pixel is known when one of them is); push: from the coarsest level down, each
    unknown pixel takes the bilinearly enlarged value of the level below. Written here rather than taken from
    OpenCV (``cv2.inpaint``, which the engine's drop fill uses) because it runs inside the network: pooling and
    interpolation only, the same on every backend, exported and compiled with the rest, no data-dependent branch.
    The engine's fill from earlier frames fills its optical flow inside the drops with it too.
    """
    known = 1.0 - holes
    value = frames
    levels: list[tuple[Tensor, Tensor]] = []
    while min(value.shape[-2:]) > 1:
        levels.append((value, known))
        weight = F.avg_pool2d(known, 2, ceil_mode=True)  # 0 or at least 1/4: the known share of each 2x2 block
        value = F.avg_pool2d(value * known, 2, ceil_mode=True) / weight.clamp_min(0.25)
        known = (weight > 0).to(value.dtype)
    for finer, finer_known in reversed(levels):
        coarse = F.interpolate(value, size=finer.shape[-2:], mode="bilinear", align_corners=False)
        value = finer * finer_known + coarse * (1.0 - finer_known)
    return value


class ResidualBlockNoBN(nn.Module):
    """conv3x3 - ReLU - conv3x3 plus identity (EDSR block without batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(n, c, h, w) -> (n, c, h, w)."""
        return x + self.conv2(F.relu(self.conv1(x)))


class ResidualBlocksWithInputConv(nn.Module):
    """conv3x3 to ``out_channels``, LeakyReLU(0.1), then ``num_blocks`` residual blocks.

    Parameters live under ``main.0`` (input conv) and ``main.2.K`` (blocks) as in the reference.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            make_layer(lambda: ResidualBlockNoBN(out_channels), num_blocks),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(n, c_in, h, w) -> (n, c_out, h, w)."""
        return self.main(x)


def conv3d_as_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int, int],
                     padding: tuple[int, int, int], channels_last: bool = False) -> Tensor:  # fmt: skip
    """Conv3d with temporal stride 1 computed with 2-D convolutions: (n, c, t, h, w) -> (n, o, t', h', w').

    PyTorch's CPU Conv3d is ~3.5x slower here and TensorRT prefers plain convolutions.
    Two equal formulations, picked by which moves less memory (frames zero-padded in time):

    - *stack inputs*: the kt temporal taps become kt*c input channels of one Conv2d;
    - *sum outputs*: one Conv2d gives every frame's response to each tap (kt*o channels),
      and output frame j adds tap k of frame j+k. Cheaper when the output is smaller than the
      input (stride 2, or fewer output than input channels).

    ``channels_last``: give the Conv2d channels-last (NHWC) weights (:func:`use_channels_last`); the same function.
    """
    n, c, t, h, w = x.shape
    out_channels, _, kt, kh, kw = weight.shape
    pt = padding[0]
    t_out = t + 2 * pt - kt + 1
    ho = (h + 2 * padding[1] - kh) // stride[1] + 1
    wo = (w + 2 * padding[2] - kw) // stride[2] + 1
    if kt > 1 and out_channels * ho * wo < c * h * w:
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        per_tap = weight.permute(2, 0, 1, 3, 4).reshape(kt * out_channels, c, kh, kw)
        if channels_last:
            per_tap = per_tap.contiguous(memory_format=torch.channels_last)
        responses = F.conv2d(frames, per_tap, None, stride[1:], padding[1:])
        responses = responses.reshape(n, t, kt, out_channels, ho, wo)
        outputs = []
        for j in range(t_out):  # frame j + k - pt answers tap k; frames outside 0..t-1 are the zero padding
            taps = [responses[:, j + k - pt, k] for k in range(kt) if 0 <= j + k - pt < t]
            frame = taps[0]
            for tap in taps[1:]:
                frame = frame + tap
            outputs.append(frame if bias is None else frame + bias.view(1, out_channels, 1, 1))
        return torch.stack(outputs, dim=1).transpose(1, 2)
    if pt:
        x = F.pad(x, (0, 0, 0, 0, pt, pt))
    frames = x.transpose(1, 2)  # (n, t+2pt, c, h, w)
    stacked = torch.cat([frames[:, k : k + t_out] for k in range(kt)], dim=2) if kt > 1 else frames
    weight_2d = weight.transpose(1, 2).reshape(out_channels, kt * c, kh, kw)
    if channels_last:
        weight_2d = weight_2d.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(stacked.reshape(n * t_out, kt * c, h, w), weight_2d, bias, stride[1:], padding[1:])
    return out.reshape(n, t_out, out_channels, ho, wo).transpose(1, 2)


class FrameConv3d(nn.Conv3d):
    """nn.Conv3d (same parameters and names) whose forward runs :func:`conv3d_as_conv2d`."""

    #: Run the 2-D convolutions with channels-last weights (set by :func:`use_channels_last`).
    channels_last: bool = False

    def forward(self, x: Tensor) -> Tensor:
        """(n, c, t, h, w) -> (n, o, t, h', w'); temporal stride must be 1."""
        return conv3d_as_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.channels_last)


def use_channels_last(model: nn.Module) -> None:
    """Run every convolution of ``model`` with channels-last (NHWC) weights from now on: the same function, in
    another memory layout (outputs equal within float rounding).

    On a CPU, oneDNN computes this model's narrow convolutions (8-64 channels at full resolution) several times
    faster in NHWC than in NCHW: a 16 -> 24 channel 3x3 convolution over five 256x256 frames takes 49 ms in
    NCHW and 22 ms in NHWC in float32, 23 and 5 ms in bfloat16 (one thread, Intel Xeon with AVX-512, AVX512-BF16
    and AMX). A convolution follows its weight's layout, so converting the weights moves the work to NHWC.
    """
    for module in model.modules():
        if isinstance(module, FrameConv3d):
            module.channels_last = True
        elif isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)


class ResidualBlock3D(nn.Module):
    """Conv3d 3x3x3 - ReLU - Conv3d 3x3x3 plus identity, on (n, c, t, h, w) volumes."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = FrameConv3d(channels, channels, 3, 1, 1)
        self.conv2 = FrameConv3d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(n, c, t, h, w) -> (n, c, t, h, w)."""
        return x + self.conv2(F.relu(self.conv1(x)))


def conv3d_frames(in_channels: int, out_channels: int) -> nn.Conv3d:
    """A per-frame 3x3 conv written as Conv3d (1x3x3, pad (0,1,1)), the reference's layout."""
    return FrameConv3d(in_channels, out_channels, (1, 3, 3), 1, (0, 1, 1))


def pixel_shuffle_frames(x: Tensor, scale: int) -> Tensor:
    """Pixel shuffle each frame of a volume: (n, c*s*s, t, h, w) -> (n, c, t, h*s, w*s)."""
    n, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(n * t, c, h, w)
    frames = F.pixel_shuffle(frames, scale)
    return frames.reshape(n, t, c // (scale * scale), h * scale, w * scale).transpose(1, 2)


def to_volume(frames: Tensor) -> Tensor:
    """(n, t, c, h, w) -> (n, c, t, h, w) for Conv3d."""
    return frames.transpose(1, 2)


def from_volume(volume: Tensor) -> Tensor:
    """(n, c, t, h, w) -> (n, t, c, h, w)."""
    return volume.transpose(1, 2)
