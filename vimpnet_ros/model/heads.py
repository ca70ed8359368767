"""Stage-1 heads: streak intensity, 3-D reconstruction to full resolution, raindrop mask.

All operate on volumes (n, c, t, h, w) so the 3x3x3 convolutions see neighbouring frames.
"""

from __future__ import annotations

from torch import Tensor, nn

from vimpnet_ros.model.arch_util import FrameConv3d, ResidualBlock3D, conv3d_frames, make_layer, pixel_shuffle_frames


def make_mask_head(in_channels: int, hidden: int) -> nn.Sequential:
    """Conv3d 3x3x3 - LReLU(0.2) - Conv3d 1x1x1 - LReLU(0.2) - Conv3d 3x3x3 to one channel, no activation.

    ``streak_head`` (64 -> 16 -> 16 -> 1) and ``drop_head`` (16 -> 8 -> 8 -> 1), the reference's ``S_mask_streak``
    and ``S_mask_drop``; a plain Sequential so the parameter names are ``0.*``, ``2.*``, ``4.*`` as in its checkpoint.
    Maps (n, c, t, h, w) -> (n, 1, t, h, w).
    """
    return nn.Sequential(
        FrameConv3d(in_channels, hidden, 3, 1, 1),
        nn.LeakyReLU(negative_slope=0.2),
        FrameConv3d(hidden, hidden, 1, 1, 0),
        nn.LeakyReLU(negative_slope=0.2),
        FrameConv3d(hidden, 1, 3, 1, 1),
    )


def make_gate_head(in_channels: int, hidden: int, open_bias: float = 3.0) -> nn.Sequential:
    """A mask head (:func:`make_mask_head`) whose logit starts at ``open_bias``: sigmoid(3) = 0.95, a gate that
    starts open, so a gated model initialised from ungated weights starts as their function. (n, c, t, h, w) ->
    (n, 1, t, h, w) logits."""
    head = make_mask_head(in_channels, hidden)
    last = head[-1]
    assert isinstance(last, nn.Conv3d) and last.bias is not None
    nn.init.constant_(last.bias, open_bias)
    return head


class Reconstruction3D(nn.Module):
    """Quarter-res [feature, backward, forward] volume -> full-res feature volume (no activations between convs).

    Conv3d 1x1x1 to c, ``num_blocks`` 3-D residual blocks, then two (per-frame 3x3 conv, pixel shuffle x2)
    steps to ``upsample_channels[1]`` channels at full resolution.
    """

    def __init__(self, in_channels: int, channels: int, num_blocks: int, upsample_channels: tuple[int, int]) -> None:
        super().__init__()
        up1, up2 = upsample_channels
        self.input_conv = FrameConv3d(in_channels, channels, 1, 1, 0)
        self.res_blocks = make_layer(lambda: ResidualBlock3D(channels), num_blocks)
        self.conv_before_upsample1 = conv3d_frames(channels, 4 * up1)
        self.conv_before_upsample2 = conv3d_frames(up1, 4 * up2)

    def forward(self, volume: Tensor) -> Tensor:
        """(n, 3c, t, h/4, w/4) -> (n, upsample_channels[1], t, h, w)."""
        x = self.res_blocks(self.input_conv(volume))
        x = pixel_shuffle_frames(self.conv_before_upsample1(x), 2)
        return pixel_shuffle_frames(self.conv_before_upsample2(x), 2)
