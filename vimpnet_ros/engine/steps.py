"""The three step modules the engine runs per frame, per neighbour pair and per window.

The whole-clip ``VimpNet.forward`` recomputes every frame's features and every
pair's flows in each overlapping window. In a stream those do not depend on the
window, so the engine splits the network into:

- :class:`FrameStep` (once per frame): features and the 0.25x frame SPyNet reads;
- :class:`FlowStep` (once per neighbour pair): SPyNet flow in both directions;
- :class:`WindowStep` (once per window): streaks, propagation, reconstruction and
  stage 2, decoding only the described frame where the network allows it.

Each is a plain ``nn.Module`` over tensors with static shapes so the same module
runs eagerly (torch backend), is exported to ONNX, or is compiled by Torch-TensorRT.
Composed only from the model's own submodules, so streamed == whole-window forward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vimpnet_ros.model import VimpNet
from vimpnet_ros.model.transformer import MaskGuidedDualTransformer

#: Channels of a WindowStep output: RGB image, drop mask, streak map.
OUTPUT_CHANNELS = 5


class FrameStep(nn.Module):
    """Per-frame work: (n, 3, h, w) in [0, 1] -> (features (n, c, h/4, w/4), small (n, 3, h/4, w/4))."""

    def __init__(self, model: VimpNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Features as ``extract_features`` computes them and the bicubic 0.25x frame for SPyNet."""
        return self.model.feat_extract(frames), self.model.downsample(frames)


class FlowStep(nn.Module):
    """Per-pair work: 0.25x frames a, b (n, 3, h/4, w/4) -> (flow a->b, flow b->a), each (n, 2, h/4, w/4)."""

    def __init__(self, model: VimpNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, small_a: Tensor, small_b: Tensor) -> tuple[Tensor, Tensor]:
        """Both directions in one SPyNet batch, like ``compute_flows`` does for a clip."""
        n = small_a.shape[0]
        flows = self.model.spynet(torch.cat([small_a, small_b]), torch.cat([small_b, small_a]))
        return flows[:n], flows[n:]


def decode_frame(stage2: MaskGuidedDualTransformer, stage1: Tensor, drop_mask: Tensor, index: int) -> Tensor:
    """Stage 2 for one frame of the window: stage1 (n, t, 3, h, w), drop_mask (n, t, 1, h, w) -> (n, 3, h, w).

    Equals ``remove_drops(stage1, drop_mask)[:, index]``: the encoders and all but the
    last transformer block mix every frame, but the last block's guided-stream update,
    the fusion cross-attention (queries per token), the soft composition and the decoder
    are per frame, so only the output frame's tokens go through them.
    """
    n, t = stage1.shape[:2]
    rainy, guided, background = stage2.encode(stage1.transpose(1, 2), drop_mask.transpose(1, 2))
    size = (rainy.shape[-2], rainy.shape[-1])
    stream_b = stage2.TokenLearner(stage2.tokenize(rainy), stage2.tokenize(background))
    stream_a = stage2.tokenize(guided)
    tokens_per_frame = stream_a.shape[1] // t
    own = slice(index * tokens_per_frame, (index + 1) * tokens_per_frame)
    blocks = [getattr(stage2, name) for name in stage2.set_names for _ in range(stage2.repeats)]
    for block in blocks[:-1]:
        stream_a, stream_b = block(stream_a, stream_b)
    if blocks:
        last = blocks[-1]
        norm_a, norm_b = last.norm1(stream_a), last.norm1(stream_b)
        query_a = stream_a[:, own] + last.attention(norm_a[:, own], norm_a)
        stream_b = stream_b + last.attention(norm_b, norm_b)
        query_a = query_a + last.ffn1(last.norm2(query_a))
        stream_b = stream_b + last.ffn2(last.norm2(stream_b))
    else:
        query_a = stream_a[:, own]
    fused = stage2.Fusion_Transformer(query_a, stream_b)
    residual = stage2.decode(fused, n, 1, size)  # (n, 3, 1, h, w)
    return stage1[:, index] + residual[:, :, 0]


class WindowStep(nn.Module):
    """Per-window work for the frame at ``output_index``.

    Inputs: lqs (n, t, 3, h, w), feats (n, t, c, h/4, w/4), flows_backward and
    flows_forward (n, t-1, 2, h/4, w/4). Output: (n, 5, h, w) = [RGB, drop mask, streak map].
    """

    def __init__(self, model: VimpNet, output_index: int) -> None:
        super().__init__()
        self.model = model
        self.output_index = output_index

    def forward(self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor) -> Tensor:
        """Stage 1 over the window, stage 2 decoded for the output frame only."""
        model, index = self.model, self.output_index
        streaks = model.estimate_streaks(feats)
        backward, forward = model.propagate(feats, flows_backward, flows_forward, streaks)
        stage1, drop_mask = model.reconstruct(lqs, feats, backward, forward)
        image = decode_frame(model.Dual_Raindrop_gnostic_Transformer, stage1, drop_mask, index)
        streak_map = model.upsample_streaks(streaks[:, index : index + 1])[:, 0]
        return torch.cat([image, drop_mask[:, index], streak_map.to(image.dtype)], dim=1)


class StepModules(nn.Module):
    """The three steps over one shared model (so ``.to()``/``.eval()`` move them together)."""

    def __init__(self, model: VimpNet, output_index: int) -> None:
        super().__init__()
        self.model = model
        self.frame = FrameStep(model)
        self.flow = FlowStep(model)
        self.window = WindowStep(model, output_index)
        self.eval()
