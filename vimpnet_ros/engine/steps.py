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
        """Stage 1 over the window, stage 2 for the output frame only (:meth:`VimpNet.restore_frame`)."""
        image, drop_mask, streak_map = self.model.restore_frame(
            lqs, feats, flows_backward, flows_forward, self.output_index
        )
        return torch.cat([image, drop_mask.to(image.dtype), streak_map.to(image.dtype)], dim=1)


class StepModules(nn.Module):
    """The three steps over one shared model (so ``.to()``/``.eval()`` move them together)."""

    def __init__(self, model: VimpNet, output_index: int) -> None:
        super().__init__()
        self.model = model
        self.frame = FrameStep(model)
        self.flow = FlowStep(model)
        self.window = WindowStep(model, output_index)
        self.eval()
