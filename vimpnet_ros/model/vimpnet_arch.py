"""The ViMP-Net generator (Wu et al., ACM MM 2023) in plain PyTorch.

The paper's two stages, as :meth:`VimpNet.forward` chains them (step numbers are those
of the reference description the port was checked against):

Stage 1, streaks (the paper's intensity-guided alignment):
    1. ``compute_flows``: SPyNet flow between neighbouring 0.25x frames;
    2. ``extract_features``: quarter-resolution features per frame;
    3. ``estimate_streaks``: rain-streak intensity per frame (``streak_head``);
    5. ``propagate``: second-order deformable alignment guided by flows and streak
       intensity, one backward and one forward pass (``deform_align``, ``backbone``);
    7-9. ``reconstruct``: 3-D reconstruction to full resolution, the raindrop mask
       (``drop_head``) and the stage-1 frames (streaks removed, drops remain).
Stage 2, drops (the paper's mask-guided dual transformer):
    ``remove_drops``: :class:`~vimpnet_ros.model.transformer.MaskGuidedDualTransformer`
    (``drop_remover``) on the stage-1 frames guided by the mask.

Gated residuals (``config.gated_residuals``; our variants only, the published network
has none). Both stages add a residual to their input; a gate decides per pixel how much:

    stage1 = lqs + g * r1,      g = sigmoid(change_gate(hidden))      (n, t, 1, h, w)
    output = stage1 + m * r2,   m = drop_mask                          (n, t, 1, h, w)

A pixel without rain is returned unchanged when its gate is 0, whatever the decoders'
residuals hold (the pixel-shuffle decoders otherwise lay a faint texture on flat,
clean surfaces). The gate head is built like the mask heads and starts open (bias
+3), so a gated model initialised from ungated weights starts as their function.
With ``config.stage1_presence = (low, high)`` the gate of frame t is also scaled by
the frame's streak presence, so a frame where stage 1 finds no streaks passes it whole:

    g_t <- p_t * g_t,   p_t = clamp((mean_hw(g_t) - low) / (high - low), 0, 1)   (n, t, 1, 1, 1)

Stage-1 passes (``config.stage1_passes``, a rule on trained weights that the engine sets per
device; the published network makes one). Stage 1 may run again on its own frames: features are
taken afresh from them (F), and the reconstruction (R, conv_last) reads them with the first pass's
propagated features b, f; the change is added under the first pass's gate w = p * g (1 for ungated
configs), times the frame's repass presence q_t (``config.stage1_repass_presence`` = (low, high), the
presence formula again) where set. The drop mask and streak map stay the first pass's, which reads the
rain in the input:

    stage1^(k+1) = stage1^(k) + q * w * R(F(stage1^(k)), b, f),   stage1^(1) = S1(lqs; flows(lqs)),
    output = stage2(stage1^(K), m^(1))

A frame whose first-pass gate averages below that ``low`` (light rain, or textures stage 1 takes for
streaks, which a second pass would take further) gets one pass.

A heavy streak the lite model only thins is thinned again, for the cost of the feature extractor and
the reconstruction (no propagation, no mask or gate heads: +20 % of a streamed frame's FLOPs, where a whole
second stage 1, which gained as much on heavy rain, adds 71 %: docs/training.md); with ``stage1_presence``
a frame without streaks passes every pass whole (its w is 0).

Bounded propagation (``config.propagation_bound`` B, a rule on trained weights; the published
network has none). After each step of both propagation passes every pixel's feature vector
h (c channels) is scaled back to norm B when longer:

    h <- h * B / max(||h||_2, B)                                        (n, c, h/4, w/4)

On a wide smooth area (a dark sky, a black frame at 1280x720), far from any edge, the forward
pass's recurrence multiplies the features by about 3 per frame, to norms near 60 after a
5-frame window where the training distribution stays below 15.5, and the drop head reads them as drops
on 13-19 % of a rain-free frame. The calibrated B (the training distribution's largest norm,
rounded up) stops that growth and is never reached on frames like those of training.

Each step is a public method so the streaming engine can cache per-frame work
(DEVELOPERS.md, "Contract: model stages"); :meth:`VimpNet.restore_frame` is the
window step for one output frame.

Differences from the reference code, none changing the function: no mirror-extension
shortcut (a data-dependent branch), no input-size assertion beyond multiples of 4,
soft split/composition as (transposed) convolutions, attention via
``scaled_dot_product_attention``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimpnet_ros.model.alignment import SecondOrderDeformableAlignment
from vimpnet_ros.model.arch_util import (
    ResidualBlocksWithInputConv,
    conv3d_frames,
    fill_from_surroundings,
    flow_warp,
)
from vimpnet_ros.model.config import VimpNetConfig, get_config
from vimpnet_ros.model.heads import Reconstruction3D, make_gate_head, make_mask_head
from vimpnet_ros.model.spynet import SPyNet
from vimpnet_ros.model.transformer import MaskGuidedDualTransformer

#: Propagation passes in the order they run; the forward pass also sees the backward pass output.
PASSES = ("backward_1", "forward_1")


class FeatureBound(nn.Module):
    """Each pixel's L2 norm over channels at most B: ``h <- h * B / max(||h||, B)`` (module docstring).

    A module of its own, holding no weights, so that what reaches the bound can be watched with a
    forward hook (``args[0]``: the features before it) without repeating the propagation loop
    (``training/calibrate_bound.py`` does so).
    """

    def forward(self, prop: Tensor, bound: float | None) -> Tensor:
        """Features (n, c, h, w) bounded at ``bound``; a pixel within it keeps its values bit for bit (the factor
        is exactly 1), and ``None`` returns ``prop`` itself."""
        if bound is None:
            return prop
        norm = torch.linalg.vector_norm(prop, dim=1, keepdim=True)
        return prop * (bound / norm.clamp_min(bound))


class VimpNetOutput(NamedTuple):
    """What the generator returns; every tensor is (n, t, c, h, w) at the input size."""

    stage1: Tensor  # (n, t, 3, h, w) streaks removed, raindrops remain
    drop_mask: Tensor  # (n, t, 1, h, w) raindrop probability in [0, 1]
    streak_map: Tensor  # (n, t, 1, h, w) rain-streak intensity
    output: Tensor  # (n, t, 3, h, w) restored frames


class VimpNet(nn.Module):
    """ViMP-Net generator. Module names explain themselves; the published checkpoint's names are mapped at load
    time by :func:`vimpnet_ros.model.checkpoint.checkpoint_filter_fn`."""

    def __init__(self, config: VimpNetConfig | str) -> None:
        super().__init__()
        config = get_config(config) if isinstance(config, str) else config
        self.config = config
        c = config.mid_channels
        self.spynet = SPyNet(config.spynet_channels)
        self.feat_extract = nn.Sequential(
            nn.Conv2d(3, c, 3, 2, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2d(c, c, 3, 2, 1),
            nn.LeakyReLU(negative_slope=0.1),
            ResidualBlocksWithInputConv(c, c, config.extract_blocks),
        )
        self.deform_align = nn.ModuleDict(
            {
                name: SecondOrderDeformableAlignment(c, config.deform_groups, config.max_residue_magnitude)
                for name in PASSES
            }
        )
        self.backbone = nn.ModuleDict(
            {name: ResidualBlocksWithInputConv((2 + i) * c, c, config.num_blocks) for i, name in enumerate(PASSES)}
        )
        self.reconstruction = Reconstruction3D(3 * c, c, config.recon_blocks, config.recon_upsample_channels)
        up = config.recon_upsample_channels[1]
        self.conv_last = conv3d_frames(up, 3)
        self.streak_head = make_mask_head(c, config.streak_channels)
        self.drop_head = make_mask_head(up, config.drop_channels)
        self.change_gate = make_gate_head(up, config.drop_channels) if config.gated_residuals else None
        self.feature_bound = FeatureBound()
        self.stage1_presence = config.stage1_presence
        self.drop_remover = MaskGuidedDualTransformer(config)

    @property
    def stage1_passes(self) -> int:
        """How many times stage 1 runs (module docstring): ``config.stage1_passes``."""
        return self.config.stage1_passes

    def set_stage1_passes(self, passes: int) -> None:
        """Run stage 1 ``passes`` times from now on (a rule, no weights change; validated by the config)."""
        self.config = dataclasses.replace(self.config, stage1_passes=passes)

    def set_stage2_prefill(self, prefill: float) -> None:
        """Fill the drops by ``prefill`` before stage 2 from now on (a rule, no weights change; see
        :meth:`prefill_drops`; validated by the config)."""
        self.config = dataclasses.replace(self.config, stage2_prefill=prefill)

    def set_propagation_bound(self, bound: float | None) -> None:
        """Bound the propagated features at ``bound`` from now on (None: unbounded); see :meth:`bound_features`."""
        self.config = dataclasses.replace(self.config, propagation_bound=bound)

    # -- stage 1, steps 1-2: flows and features ------------------------------------------------------

    @staticmethod
    def downsample(frames: Tensor) -> Tensor:
        """Bicubic 0.25x as the reference feeds SPyNet: (m, 3, h, w) -> (m, 3, h/4, w/4)."""
        h, w = frames.shape[-2:]
        return F.interpolate(frames, size=(h // 4, w // 4), mode="bicubic", align_corners=False)

    def compute_flow(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow ref -> supp on 0.25x frames: (n, 3, h, w) x2 -> (n, 2, h/4, w/4), channel 0 = dx."""
        return self.spynet(self.downsample(ref), self.downsample(supp))

    def compute_flows(self, lqs: Tensor) -> tuple[Tensor, Tensor]:
        """(n, t, 3, h, w) -> (flows_backward, flows_forward), each (n, t-1, 2, h/4, w/4).

        backward[i] = flow(i -> i+1), forward[i] = flow(i+1 -> i).
        """
        n, t, c, h, w = lqs.shape
        small = self.downsample(lqs.reshape(n * t, c, h, w)).reshape(n, t, c, h // 4, w // 4)
        first = small[:, :-1].reshape(n * (t - 1), c, h // 4, w // 4)
        second = small[:, 1:].reshape(n * (t - 1), c, h // 4, w // 4)
        flows = self.spynet(torch.cat([first, second], dim=0), torch.cat([second, first], dim=0))
        flows = flows.reshape(2, n, t - 1, 2, h // 4, w // 4)
        return flows[0], flows[1]

    def extract_features(self, lqs: Tensor) -> Tensor:
        """(n, t, 3, h, w) -> (n, t, c, h/4, w/4)."""
        n, t, _, h, w = lqs.shape
        feats = self.feat_extract(lqs.reshape(n * t, 3, h, w))
        return feats.reshape(n, t, *feats.shape[1:])

    # -- stage 1, step 3: streak intensity ------------------------------------------------------------

    def estimate_streaks(self, feats: Tensor) -> Tensor:
        """Quarter-res streak intensity over a window: (n, t, c, h/4, w/4) -> (n, t, 1, h/4, w/4)."""
        return self.streak_head(feats.transpose(1, 2)).transpose(1, 2)

    # -- stage 1, step 5: intensity-guided second-order propagation -----------------------------------

    def _propagate_pass(
        self,
        name: str,
        feats: Tensor,
        flows: Tensor,
        streaks: Tensor,
        finished: list[Tensor],
    ) -> Tensor:
        """One propagation pass over the window -> (n, t, c, h/4, w/4) in frame order."""
        n, t, c, h, w = feats.shape
        backward = name.startswith("backward")
        frame_order = list(range(t - 1, -1, -1)) if backward else list(range(t))
        align, backbone = self.deform_align[name], self.backbone[name]
        outputs: list[Tensor] = []
        prop = feats.new_zeros(n, c, h, w)
        flow_prev = feats.new_zeros(n, 2, h, w)
        for i, idx in enumerate(frame_order):
            current = feats[:, idx]
            if i > 0:
                # The flow that carries the previous frame of the pass onto this one, and the streak
                # map taken at that flow's index (current frame going backward, previous going forward).
                flow_index = idx if backward else idx - 1
                flow_1 = flows[:, flow_index]
                streak = streaks[:, flow_index]
                cond_1 = flow_warp(prop, flow_1)
                if i > 1:
                    feat_2 = outputs[-2]
                    flow_2 = flow_1 + flow_warp(flow_prev, flow_1)
                    cond_2 = flow_warp(feat_2, flow_2)
                else:
                    feat_2 = torch.zeros_like(prop)
                    flow_2 = torch.zeros_like(flow_1)
                    cond_2 = torch.zeros_like(cond_1)
                cond = torch.cat([cond_1, current, cond_2], dim=1)
                prop = align(torch.cat([prop, feat_2], dim=1), cond, flow_1, flow_2, streak)
                flow_prev = flow_1
            inputs = [current] + [done[:, idx] for done in finished] + [prop]
            prop = self.bound_features(prop + backbone(torch.cat(inputs, dim=1)))
            outputs.append(prop)
        if backward:
            outputs.reverse()
        return torch.stack(outputs, dim=1)

    def bound_features(self, prop: Tensor) -> Tensor:
        """One propagation step's features (n, c, h, w) with each pixel's L2 norm over c at most
        ``config.propagation_bound`` B (module docstring): ``h <- h * B / max(||h||, B)``; a pixel within the
        bound keeps its values bit for bit (the factor is exactly 1), and without a bound nothing changes."""
        return self.feature_bound(prop, self.config.propagation_bound)

    def propagate(
        self, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor, streaks: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Backward then forward pass: feats (n, t, c, h/4, w/4), flows (n, t-1, 2, h/4, w/4), streaks (n, t, 1, ..).

        Returns (backward, forward), each (n, t, c, h/4, w/4).
        """
        backward = self._propagate_pass(PASSES[0], feats, flows_backward, streaks, [])
        forward = self._propagate_pass(PASSES[1], feats, flows_forward, streaks, [backward])
        return backward, forward

    # -- stage 1, steps 7-10: reconstruction, raindrop mask, streak map ------------------------------

    def reconstruct(self, lqs: Tensor, feats: Tensor, backward: Tensor, forward: Tensor) -> tuple[Tensor, Tensor]:
        """Full-res stage-1 frames and drop mask: -> (stage1 (n, t, 3, h, w), drop_mask (n, t, 1, h, w))."""
        stage1, drop_mask, _ = self.reconstruct_gated(lqs, feats, backward, forward)
        return stage1, drop_mask

    def reconstruct_gated(
        self, lqs: Tensor, feats: Tensor, backward: Tensor, forward: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """:meth:`reconstruct` plus the residual gate g (n, t, 1, h, w) of gated configs (None otherwise).

        The gate returned is the per-pixel one the gate loss trains, before the frame's streak presence.
        """
        stage1, drop_mask, gate, _ = self._reconstruct(lqs, feats, backward, forward)
        return stage1, drop_mask, gate

    def _reconstruct(
        self, lqs: Tensor, feats: Tensor, backward: Tensor, forward: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """:meth:`reconstruct_gated` plus the weight w = p * g (n, 1, t, h, w) the change was added under (None
        when ungated), which later stage-1 passes reuse."""
        hidden = self.reconstruction(self.reconstruction_volume(feats, backward, forward))
        drop_mask = torch.sigmoid(self.drop_head(hidden)).transpose(1, 2)
        gate = weight = None
        if self.change_gate is not None:
            gate = torch.sigmoid(self.change_gate(hidden))  # (n, 1, t, h, w)
            weight = gate if self.stage1_presence is None else gate * self.streak_presence(gate)
            gate = gate.transpose(1, 2)
        return self.add_change(lqs, hidden, weight), drop_mask, gate, weight

    @staticmethod
    def reconstruction_volume(feats: Tensor, backward: Tensor, forward: Tensor) -> Tensor:
        """[features, backward, forward], each (n, t, c, h/4, w/4) -> the reconstruction's (n, 3c, t, h/4, w/4)."""
        return torch.cat([feats, backward, forward], dim=2).transpose(1, 2)

    def add_change(self, frames: Tensor, hidden: Tensor, weight: Tensor | None) -> Tensor:
        """frames (n, t, 3, h, w) plus conv_last(hidden) (hidden (n, u, t, h, w)), weighted by ``weight``
        (n, 1, t, h, w) when given."""
        residual = self.conv_last(hidden)
        if weight is not None:
            residual = residual * weight
        return residual.transpose(1, 2) + frames

    def remove_streaks(
        self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Stage 1, ``stage1_passes`` times (module docstring), from the input's features and flows.

        lqs (n, t, 3, h, w), feats (n, t, c, h/4, w/4), flows (n, t-1, 2, h/4, w/4) each ->
        (stage1 (n, t, 3, h, w), drop_mask (n, t, 1, h, w), streaks (n, t, 1, h/4, w/4), gate or None);
        all but ``stage1`` are the first pass's.
        """
        streaks = self.estimate_streaks(feats)
        backward, forward = self.propagate(feats, flows_backward, flows_forward, streaks)
        stage1, drop_mask, gate, weight = self._reconstruct(lqs, feats, backward, forward)
        if self.stage1_passes > 1 and gate is not None and self.config.stage1_repass_presence is not None:
            weight = weight * self.streak_presence(gate.transpose(1, 2), self.config.stage1_repass_presence)
        for _ in range(1, self.stage1_passes):
            stage1 = self.remove_streaks_again(stage1, backward, forward, weight)
        return stage1, drop_mask, streaks, gate

    def remove_streaks_again(self, frames: Tensor, backward: Tensor, forward: Tensor, weight: Tensor | None) -> Tensor:
        """One more stage-1 pass (module docstring) on stage-1 frames (n, t, 3, h, w) -> same: their own features,
        the first pass's propagated features (n, t, c, h/4, w/4) each and its weight w (n, 1, t, h, w) or None."""
        feats = self.extract_features(frames)
        hidden = self.reconstruction(self.reconstruction_volume(feats, backward, forward))
        return self.add_change(frames, hidden, weight)

    def streak_presence(self, gate: Tensor, bounds: tuple[float, float] | None = None) -> Tensor:
        """Each frame's streak presence p_t from its gate (module docstring) between ``bounds`` (``stage1_presence``
        unless given): (n, 1, t, h, w) -> (n, 1, t, 1, 1)."""
        bounds = bounds or self.stage1_presence
        if bounds is None:
            raise ValueError(f"model config {self.config.name!r} has no stage1_presence")
        low, high = bounds
        return ((gate.mean(dim=(3, 4), keepdim=True) - low) / (high - low)).clamp(0.0, 1.0)

    @staticmethod
    def upsample_streaks(streaks: Tensor) -> Tensor:
        """x4 bilinear (align_corners=True) per frame: (n, t, 1, h/4, w/4) -> (n, t, 1, h, w)."""
        n, t, c, h, w = streaks.shape
        up = F.interpolate(streaks.reshape(n * t, c, h, w), size=(4 * h, 4 * w), mode="bilinear", align_corners=True)
        return up.reshape(n, t, c, 4 * h, 4 * w)

    # -- stage 2: mask-guided dual transformer ---------------------------------------------------------

    def prefill_drops(self, stage1: Tensor, drop_mask: Tensor) -> Tensor:
        """Stage 2's input (``stage2_prefill`` = p): stage1 (n, t, 3, h, w) with its predicted drops (drop_mask
        (n, t, 1, h, w) >= ``stage2_prefill_threshold``) moved by p towards the fill from the pixels around them,
        stage1 + p (fill - stage1) there; stage1 itself when p is 0."""
        weight = self.config.stage2_prefill
        if not weight:
            return stage1
        n, t, c, h, w = stage1.shape
        holes = (drop_mask >= self.config.stage2_prefill_threshold).to(stage1.dtype)
        filled = fill_from_surroundings(stage1.reshape(n * t, c, h, w), holes.reshape(n * t, 1, h, w))
        return stage1 + weight * (filled.reshape(n, t, c, h, w) - stage1)

    def remove_drops(self, stage1: Tensor, drop_mask: Tensor) -> Tensor:
        """Stage 2 over a window: stage1 (n, t, 3, h, w), drop_mask (n, t, 1, h, w) -> output (n, t, 3, h, w)."""
        return self.drop_remover(self.prefill_drops(stage1, drop_mask), drop_mask)

    # -- one output frame of a window (the streaming engine's window step) ---------------------------

    def restore_frame(
        self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor, index: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 1 over the window, stage 2 for frame ``index`` only, from cached features and flows.

        lqs (n, t, 3, h, w), feats (n, t, c, h/4, w/4), flows (n, t-1, 2, h/4, w/4) each ->
        (image (n, 3, h, w), drop_mask (n, 1, h, w), streak_map (n, 1, h, w)), equal to
        ``forward(lqs)`` at frame ``index``.
        """
        stage1, drop_mask, streaks, _ = self.remove_streaks(lqs, feats, flows_backward, flows_forward)
        image = self.drop_remover.forward_frame(self.prefill_drops(stage1, drop_mask), drop_mask, index)
        streak_map = self.upsample_streaks(streaks[:, index : index + 1])[:, 0]
        return image, drop_mask[:, index], streak_map

    # -- whole clip --------------------------------------------------------------------------------

    @overload
    def forward(self, lqs: Tensor) -> VimpNetOutput: ...

    @overload
    def forward(self, lqs: Tensor, with_gate: Literal[True]) -> tuple[VimpNetOutput, Tensor | None]: ...

    def forward(self, lqs: Tensor, with_gate: bool = False) -> VimpNetOutput | tuple[VimpNetOutput, Tensor | None]:
        """Restore a clip: (n, t, 3, h, w) RGB in [0, 1], h and w multiples of 4, t >= 2.

        ``with_gate`` (training): also return stage 1's residual gate (n, t, 1, h, w), None for ungated configs.
        """
        _, t, c, h, w = lqs.shape
        if c != 3 or h % 4 or w % 4 or h < 4 or w < 4 or t < 2:
            raise ValueError(
                f"ViMP-Net needs (n, t>=2, 3, h, w) with h and w positive multiples of 4, got {tuple(lqs.shape)}"
            )
        flows_backward, flows_forward = self.compute_flows(lqs)
        feats = self.extract_features(lqs)
        stage1, drop_mask, streaks, gate = self.remove_streaks(lqs, feats, flows_backward, flows_forward)
        output = self.remove_drops(stage1, drop_mask)
        result = VimpNetOutput(stage1, drop_mask, self.upsample_streaks(streaks), output)
        return (result, gate) if with_gate else result
