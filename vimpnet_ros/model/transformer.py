"""Stage 2: the mask-guided dual transformer that removes raindrops from the stage-1 frames.

Three 3-D encoders (rainy, mask-guided, masked background), a patch soft split
into tokens, a token learner, dual transformer blocks that update two token
streams with shared attention, a cross-attention fusion, soft composition back
to a feature map and a pixel-shuffle decoder to an RGB residual.

The soft split (unfold + linear) and soft composition (linear + fold) are computed
as a strided convolution and a transposed convolution with the same weights: the
same function, but made of aten ops Torch-TensorRT converts (``im2col``/``col2im``
are not) and much cheaper than materialising the patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimpnet_ros.model.arch_util import FrameConv3d, conv3d_frames, pixel_shuffle_frames
from vimpnet_ros.model.config import VimpNetConfig


class DropEncoder(nn.Module):
    """Conv3d 1x3x3 to c0, then two Conv3d 3x3x3 stride (1,2,2): (n, c_in, t, h, w) -> (n, c2, t, h/4, w/4).

    ``last_slope`` is the LeakyReLU slope after the last conv: 0.01 in the reference's
    ``downdrop`` encoders (PyTorch's default), 0.2 in ``downdropbg``.
    """

    def __init__(self, in_channels: int, channels: tuple[int, int, int], last_slope: float) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.conv_first = conv3d_frames(in_channels, c0)
        self.conv1 = FrameConv3d(c0, c1, 3, (1, 2, 2), 1)
        self.conv2 = FrameConv3d(c1, c2, 3, (1, 2, 2), 1)
        self.last_slope = last_slope

    def forward(self, volume: Tensor) -> Tensor:
        """(n, c_in, t, h, w) -> (n, c2, t, h/4, w/4)."""
        x = F.leaky_relu(self.conv_first(volume), 0.2)
        x = F.leaky_relu(self.conv1(x), 0.2)
        return F.leaky_relu(self.conv2(x), self.last_slope)


class SoftSplit(nn.Module):
    """Overlapping k x k patches (stride s, padding p) of each frame, each projected to a token.

    ``embedding`` is stored as the reference's Linear (dim, c*k*k) over F.unfold's (c, ki, kj) order.
    """

    def __init__(self, channels: int, dim: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.channels, self.kernel, self.stride, self.padding = channels, kernel, stride, padding
        self.embedding = nn.Linear(channels * kernel * kernel, dim)

    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        """Number of patch rows and columns for an (h, w) feature map."""
        k, s, p = self.kernel, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def forward(self, frames: Tensor, t: int) -> Tensor:
        """(n*t, c, h, w) -> tokens (n, t*L, dim), L = patch rows * columns, frame-major."""
        weight = self.embedding.weight.reshape(-1, self.channels, self.kernel, self.kernel)
        tokens = F.conv2d(frames, weight, self.embedding.bias, stride=self.stride, padding=self.padding)
        nt, dim, gh, gw = tokens.shape
        return tokens.reshape(nt // t, t, dim, gh * gw).transpose(2, 3).reshape(nt // t, t * gh * gw, dim)


class SoftComp(nn.Module):
    """Inverse of :class:`SoftSplit`: tokens -> patches -> overlap-added map, then a 3x3 ``bias_conv``."""

    def __init__(self, channels: int, dim: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.channels, self.kernel, self.stride, self.padding = channels, kernel, stride, padding
        self.embedding = nn.Linear(dim, channels * kernel * kernel)
        self.bias_conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, tokens: Tensor, t: int, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
        """Tokens (n, t*L, dim) on a ``grid`` of patches -> (n*t, c, h, w) with (h, w) = ``size``."""
        n, _, dim = tokens.shape
        gh, gw = grid
        h, w = size
        k, c = self.kernel, self.channels
        maps = tokens.reshape(n * t, gh, gw, dim).permute(0, 3, 1, 2)
        # Linear + fold == transposed conv of the token map with the Linear's weight; the bias, folded,
        # is a transposed conv of a ones map, so it rides along as one extra input channel.
        maps = torch.cat([maps, maps.new_ones(n * t, 1, gh, gw)], dim=1)
        weight = torch.cat([self.embedding.weight.t(), self.embedding.bias.unsqueeze(0)], dim=0)
        folded = F.conv_transpose2d(maps, weight.reshape(dim + 1, c, k, k), stride=self.stride)
        p = self.padding
        return self.bias_conv(folded[:, :, p : p + h, p : p + w])


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/output linears, through ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query_embedding = nn.Linear(dim, dim)
        self.value_embedding = nn.Linear(dim, dim)
        self.key_embedding = nn.Linear(dim, dim)
        self.output_linear = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        return x.reshape(n, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """Queries from ``query`` (n, l, d), keys/values from ``context`` (n, m, d) -> (n, l, d)."""
        q = self._split(self.query_embedding(query))
        k = self._split(self.key_embedding(context))
        v = self._split(self.value_embedding(context))
        out = F.scaled_dot_product_attention(q, k, v)
        n, _, length, _ = out.shape
        return self.output_linear(out.transpose(1, 2).reshape(n, length, -1))


class FeedForward(nn.Module):
    """Linear - ReLU - Linear; index 2 is a placeholder for the reference's dropout so names stay ``conv.0/conv.3``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        """(n, l, d) -> (n, l, d)."""
        return self.conv(x)


class DualTransformerBlock(nn.Module):
    """Updates two token streams with the same attention and norms but separate feed-forward nets."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads)
        self.ffn1 = FeedForward(dim, hidden)
        self.ffn2 = FeedForward(dim, hidden)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """(n, l, d) x2 -> (n, l, d) x2."""
        na, nb = self.norm1(a), self.norm1(b)
        a = a + self.attention(na, na)
        b = b + self.attention(nb, nb)
        a = a + self.ffn1(self.norm2(a))
        b = b + self.ffn2(self.norm2(b))
        return a, b

    def forward_queries(self, a: Tensor, b: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
        """As :meth:`forward`, but stream A is updated only for the tokens ``rows`` (they still attend to all).

        Returns (a[:, rows] updated (n, len(rows), d), b updated (n, l, d)).
        """
        na, nb = self.norm1(a), self.norm1(b)
        query = a[:, rows] + self.attention(na[:, rows], na)
        b = b + self.attention(nb, nb)
        query = query + self.ffn1(self.norm2(query))
        b = b + self.ffn2(self.norm2(b))
        return query, b


class FusionBlock(nn.Module):
    """Cross-attention from the guided stream to the background stream; the residual starts at norm1(a)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads)
        self.ffn = FeedForward(dim, hidden)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """(n, l, d) x2 -> (n, l, d)."""
        m, d = self.norm1(a), self.norm1(b)
        x = m + self.attention(m, d)
        return x + self.ffn(self.norm2(x))


class TokenLearner(nn.Module):
    """Mixes [rainy, background] tokens (2d channels) to d with a 1x1 Conv1d (stored as the reference's)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv1d(2 * dim, dim, 1)

    def forward(self, rainy: Tensor, background: Tensor) -> Tensor:
        """(n, l, d) x2 -> (n, l, d); a 1x1 Conv1d over tokens is a Linear, applied without transposes."""
        return F.linear(torch.cat([rainy, background], dim=-1), self.conv_layer.weight[:, :, 0], self.conv_layer.bias)


class MaskGuidedDualTransformer(nn.Module):
    """Stage 2, the mask-guided dual transformer: stage-1 frames + drop mask -> restored frames.

    The reference (stage 2 of its description) wires it as:

    1. three 3-D encoders: ``rainy_encoder`` on stage 1, ``guided_encoder`` on [stage 1, mask] and
       ``background_encoder`` on stage 1 x (1 - mask), each (n, c, t, h, w) -> (n, c2, t, h/4, w/4);
    2. ``soft_split`` of every frame into overlapping patch tokens, (n, t*L, d);
    3. ``token_learner``: rainy + background tokens -> stream B; the guided tokens are stream A;
    4. ``blocks``: dual transformer blocks, each weight set applied ``repeats`` times in a row;
    5. ``fusion``: cross-attention from stream A to stream B;
    6. ``soft_comp`` back to a (h/4, w/4) map, a pixel-shuffle decoder to an RGB residual R;
    7. output = stage 1 + R.

    Checkpoint names of the reference (``Dual_Raindrop_gnostic_Transformer.downdrop1`` ...) are
    mapped to these at load time (:func:`vimpnet_ros.model.checkpoint.checkpoint_filter_fn`).
    """

    def __init__(self, config: VimpNetConfig) -> None:
        super().__init__()
        dim, heads, hidden = config.transformer_dim, config.transformer_heads, config.transformer_ffn
        enc = config.encoder_channels
        k, s, p = config.patch_size, config.patch_stride, config.patch_padding
        self.repeats = config.transformer_repeats
        self.rainy_encoder = DropEncoder(3, enc, last_slope=0.01)
        self.guided_encoder = DropEncoder(4, enc, last_slope=0.2)
        self.background_encoder = DropEncoder(3, enc, last_slope=0.01)
        self.soft_split = SoftSplit(enc[2], dim, k, s, p)
        self.token_learner = TokenLearner(dim)
        self.blocks = nn.ModuleList(
            DualTransformerBlock(dim, heads, hidden) for _ in range(config.transformer_weight_sets)
        )
        self.fusion = FusionBlock(dim, heads, hidden)
        self.soft_comp = SoftComp(enc[2], dim, k, s, p)
        d1, d2 = config.decoder_channels
        self.conv_before_upsample1 = conv3d_frames(enc[2], 4 * d1)
        self.conv_before_upsample2 = conv3d_frames(d1, 4 * d2)
        self.conv_last = conv3d_frames(d2, 3)
        self.mask_gated = config.gated_residuals

    def block_sequence(self) -> list[DualTransformerBlock]:
        """The dual blocks in the order they run: each weight set ``repeats`` times in a row."""
        return [block for block in self.blocks for _ in range(self.repeats)]

    # -- steps 1-3: encoders and tokens --------------------------------------------------------------

    def encode(self, stage1: Tensor, drop_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Volumes (n, 3, t, h, w), (n, 1, t, h, w) -> rainy, guided, background (n, c2, t, h/4, w/4)."""
        rainy = self.rainy_encoder(stage1)
        guided = self.guided_encoder(torch.cat([stage1, drop_mask], dim=1))
        background = self.background_encoder(stage1 * (1.0 - drop_mask))
        return rainy, guided, background

    def tokenize(self, volume: Tensor) -> Tensor:
        """(n, c, t, h, w) -> tokens (n, t*L, dim), frame-major."""
        n, c, t, h, w = volume.shape
        return self.soft_split(volume.transpose(1, 2).reshape(n * t, c, h, w), t)

    def streams(self, stage1: Tensor, drop_mask: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Steps 1-3: (n, t, 3, h, w), (n, t, 1, h, w) -> stream A, stream B (n, t*L, d), encoder size (h/4, w/4)."""
        rainy, guided, background = self.encode(stage1.transpose(1, 2), drop_mask.transpose(1, 2))
        stream_b = self.token_learner(self.tokenize(rainy), self.tokenize(background))
        return self.tokenize(guided), stream_b, (rainy.shape[-2], rainy.shape[-1])

    # -- steps 6-7: back to pixels --------------------------------------------------------------------

    def decode(self, tokens: Tensor, n: int, t: int, size: tuple[int, int]) -> Tensor:
        """Tokens (n, t*L, d) for (h/4, w/4) = ``size`` -> RGB residual volume (n, 3, t, h, w)."""
        feat = self.soft_comp(tokens, t, self.soft_split.grid_size(*size), size)
        feat = feat.reshape(n, t, feat.shape[1], size[0], size[1]).transpose(1, 2)
        x = pixel_shuffle_frames(self.conv_before_upsample1(feat), 2)
        x = pixel_shuffle_frames(self.conv_before_upsample2(x), 2)
        return self.conv_last(x)

    # -- whole window and one frame -------------------------------------------------------------------

    def forward(self, stage1: Tensor, drop_mask: Tensor) -> Tensor:
        """stage1 (n, t, 3, h, w) and drop_mask (n, t, 1, h, w) -> output (n, t, 3, h, w)."""
        n, t = stage1.shape[:2]
        stream_a, stream_b, size = self.streams(stage1, drop_mask)
        for block in self.block_sequence():
            stream_a, stream_b = block(stream_a, stream_b)
        fused = self.fusion(stream_a, stream_b)
        return self.add_residual(stage1, self.decode(fused, n, t, size).transpose(1, 2), drop_mask)

    def forward_frame(self, stage1: Tensor, drop_mask: Tensor, index: int) -> Tensor:
        """Stage 2 for frame ``index`` of the window only: -> (n, 3, h, w) == ``forward(...)[:, index]``.

        The encoders and all but the last dual block mix every frame, but the last block's
        update of stream A, the fusion (queries per token), the soft composition and the
        decoder are per frame, so only the frame's own tokens go through them. The streaming
        engine restores one frame per window this way.
        """
        n, t = stage1.shape[:2]
        stream_a, stream_b, size = self.streams(stage1, drop_mask)
        tokens_per_frame = stream_a.shape[1] // t
        own = slice(index * tokens_per_frame, (index + 1) * tokens_per_frame)
        blocks = self.block_sequence()
        for block in blocks[:-1]:
            stream_a, stream_b = block(stream_a, stream_b)
        if blocks:
            query_a, stream_b = blocks[-1].forward_queries(stream_a, stream_b, own)
        else:
            query_a = stream_a[:, own]
        fused = self.fusion(query_a, stream_b)
        return self.add_residual(stage1[:, index], self.decode(fused, n, 1, size)[:, :, 0], drop_mask[:, index])

    def add_residual(self, stage1: Tensor, residual: Tensor, drop_mask: Tensor) -> Tensor:
        """stage1 + residual, the residual weighted by the drop mask when ``gated_residuals`` (any leading shape,
        channels at dim -3): outside the drops stage 2 leaves stage 1 as it is."""
        return stage1 + (residual * drop_mask if self.mask_gated else residual)
