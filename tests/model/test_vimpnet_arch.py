"""Generator shapes, stage contract, configs, conv3d rewrite and precisions."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.model import CONFIGS, MASK_THRESHOLD, VimpNet, VimpNetConfig, VimpNetOutput, get_config
from vimpnet_ros.model.arch_util import conv3d_as_conv2d, fill_from_surroundings, use_channels_last


@pytest.fixture(scope="module")
def lite() -> VimpNet:
    torch.manual_seed(0)
    model = VimpNet(get_config("vimpnet_lite")).eval()
    # Non-zero offsets so the deformable convolution is exercised, not only the flows.
    for align in model.deform_align.values():
        torch.nn.init.normal_(align.conv_offset[-1].weight, std=0.01)
    return model


@pytest.mark.parametrize(("t", "h", "w"), [(2, 4, 4), (3, 12, 20), (5, 36, 28), (4, 64, 48)])
def test_any_multiple_of_four(lite: VimpNet, t: int, h: int, w: int) -> None:
    lqs = torch.rand(1, t, 3, h, w)
    with torch.no_grad():
        out = lite(lqs)
    assert isinstance(out, VimpNetOutput)
    assert out.stage1.shape == out.output.shape == (1, t, 3, h, w)
    assert out.drop_mask.shape == out.streak_map.shape == (1, t, 1, h, w)
    assert all(torch.isfinite(x).all() for x in out)
    assert out.drop_mask.min() >= 0 and out.drop_mask.max() <= 1


def test_rejects_bad_sizes(lite: VimpNet) -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        lite(torch.rand(1, 3, 3, 30, 32))


def test_stage_contract_and_forward_agree(lite: VimpNet) -> None:
    """The stage methods of DEVELOPERS.md, with their shapes, compose to forward()."""
    n, t, h, w = 2, 4, 16, 12
    lqs = torch.rand(n, t, 3, h, w)
    c = lite.config.mid_channels
    with torch.no_grad():
        flow = lite.compute_flow(lqs[:, 0], lqs[:, 1])
        assert flow.shape == (n, 2, h // 4, w // 4)
        flows_backward, flows_forward = lite.compute_flows(lqs)
        assert flows_backward.shape == flows_forward.shape == (n, t - 1, 2, h // 4, w // 4)
        torch.testing.assert_close(flows_backward[:, 0], flow, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(flows_forward[:, 2], lite.compute_flow(lqs[:, 3], lqs[:, 2]), atol=1e-5, rtol=1e-5)
        feats = lite.extract_features(lqs)
        assert feats.shape == (n, t, c, h // 4, w // 4)
        streaks = lite.estimate_streaks(feats)
        assert streaks.shape == (n, t, 1, h // 4, w // 4)
        backward, forward = lite.propagate(feats, flows_backward, flows_forward, streaks)
        assert backward.shape == forward.shape == (n, t, c, h // 4, w // 4)
        stage1, drop_mask = lite.reconstruct(lqs, feats, backward, forward)
        assert stage1.shape == (n, t, 3, h, w) and drop_mask.shape == (n, t, 1, h, w)
        streak_map = lite.upsample_streaks(streaks)
        output = lite.remove_drops(stage1, drop_mask)
        whole = lite(lqs)
    for got, expected in zip(whole, (stage1, drop_mask, streak_map, output), strict=True):
        torch.testing.assert_close(got, expected)
    # Batch items are independent.
    with torch.no_grad():
        single = lite(lqs[1:])
    torch.testing.assert_close(single.output, whole.output[1:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [((3, 3, 3), (1, 1, 1), (1, 1, 1)),
                                                          ((3, 3, 3), (1, 2, 2), (1, 1, 1)),
                                                          ((1, 3, 3), (1, 1, 1), (0, 1, 1)),
                                                          ((3, 3, 3), (1, 1, 1), (0, 1, 1)),
                                                          ((1, 1, 1), (1, 1, 1), (0, 0, 0))])  # fmt: skip
@pytest.mark.parametrize("out_channels", [4, 8])  # fewer / more than the 6 inputs: both formulations
def test_conv3d_as_conv2d_equals_conv3d(kernel: tuple, stride: tuple, padding: tuple, out_channels: int) -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 6, 5, 9, 11)
    weight = torch.randn(out_channels, 6, *kernel)
    bias = torch.randn(out_channels)
    expected = F.conv3d(x, weight, bias, stride, padding)
    torch.testing.assert_close(conv3d_as_conv2d(x, weight, bias, stride, padding), expected, atol=1e-4, rtol=1e-4)


def test_configs() -> None:
    full, lite = get_config("vimpnet"), get_config("vimpnet_lite")
    assert (full.mid_channels, full.num_blocks, full.transformer_dim, full.transformer_heads) == (64, 9, 512, 4)
    assert lite.mid_channels < full.mid_channels and lite.transformer_dim < full.transformer_dim
    assert VimpNetConfig.from_dict(lite.to_dict()) == lite
    with pytest.raises(ConfigError, match="unknown model config"):
        get_config("vimpnet_huge")
    with pytest.raises(ConfigError, match="deform_groups"):
        VimpNetConfig(name="bad", mid_channels=10, deform_groups=16)
    with pytest.raises(ConfigError, match="unknown model config fields"):
        VimpNetConfig.from_dict({"name": "x", "mid_chanels": 3})


def test_spynet_widths_follow_the_config() -> None:
    """Narrow SPyNet basic modules keep the names; configs saved before the field load as published."""
    narrow = VimpNetConfig(name="narrow", spynet_channels=(8, 16, 8, 4))
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in VimpNet(narrow).spynet.state_dict().items()}
    assert shapes["basic_module.0.basic_module.0.conv.weight"] == (8, 8, 7, 7)
    assert shapes["basic_module.5.basic_module.3.conv.weight"] == (4, 8, 7, 7)
    assert shapes["basic_module.5.basic_module.4.conv.weight"] == (2, 4, 7, 7)
    legacy = {k: v for k, v in get_config("vimpnet").to_dict().items() if k != "spynet_channels"}
    assert VimpNetConfig.from_dict(legacy).spynet_channels == (32, 64, 32, 16)


def test_lite_keeps_the_reference_structure() -> None:
    """Same module names (so the same code and conventions serve both); only counts/widths differ."""

    def prefixes(config_name: str) -> set[str]:
        with torch.device("meta"):
            model = VimpNet(CONFIGS[config_name])
        return {".".join(k.split(".")[:2]) for k in model.state_dict()}

    assert prefixes("vimpnet_lite") == prefixes("vimpnet")


def test_bf16_autocast_runs_and_stays_close(lite: VimpNet) -> None:
    lqs = torch.rand(1, 2, 3, 8, 8)
    with torch.no_grad():
        reference = lite(lqs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = lite(lqs)
    for name, a, b in zip(VimpNetOutput._fields, reference, low, strict=True):
        assert torch.isfinite(b).all(), name
        assert (a - b.float()).abs().max() < 0.25, name


def test_half_weights_run_on_cpu(lite: VimpNet) -> None:
    """fp16 is the CUDA path; on CPU every op we use must at least accept half tensors."""
    import copy

    half = copy.deepcopy(lite).half()
    lqs = torch.rand(1, 2, 3, 8, 8)
    with torch.no_grad():
        out = half(lqs.half())
        reference = lite(lqs)
    assert out.output.dtype == torch.float16
    assert torch.isfinite(out.output).all()
    assert (out.output.float() - reference.output).abs().max() < 0.25


def test_gated_residuals_start_open_and_a_closed_gate_returns_the_input() -> None:
    """The gated lite model: gates start open (sigmoid(3)); closed gates and an empty drop mask pass the input."""
    torch.manual_seed(0)
    model = VimpNet(get_config("vimpnet_lite_gated")).eval()
    assert model.change_gate is not None and VimpNet(get_config("vimpnet_lite")).change_gate is None
    lqs = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        hidden = model.reconstruction(
            torch.cat([model.extract_features(lqs)] * 3, dim=2).transpose(1, 2)
        )  # any hidden volume: the gate head's bias dominates at initialisation
        gate = torch.sigmoid(model.change_gate(hidden))
        assert gate.mean().item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), abs=0.05)
        model.change_gate[-1].bias.fill_(-60.0)  # closed
        model.change_gate[-1].weight.zero_()
        model.drop_head[-1].bias.fill_(-60.0)  # no drop anywhere: stage 2 adds nothing
        model.drop_head[-1].weight.zero_()
        out = model(lqs)
        assert torch.equal(out.stage1, lqs)
        assert torch.equal(out.output, lqs)
        flows_b, flows_f = model.compute_flows(lqs)
        image, _, _ = model.restore_frame(lqs, model.extract_features(lqs), flows_b, flows_f, 1)
        assert torch.equal(image, lqs[:, 1])


def _uniform_gate_models(rule: str, bounds: tuple[float, float], gate: float) -> tuple[VimpNet, VimpNet]:
    """The gated lite model with ``rule`` set to ``bounds`` and the same weights without it, stage 1's gate ``gate``
    at every pixel (seeded)."""
    torch.manual_seed(0)
    config = dataclasses.replace(get_config("vimpnet_lite_gated"), **{rule: bounds})
    ruled, plain = VimpNet(config).eval(), VimpNet(dataclasses.replace(config, **{rule: None})).eval()
    assert ruled.change_gate is not None
    with torch.no_grad():
        ruled.change_gate[-1].weight.zero_()
        ruled.change_gate[-1].bias.fill_(math.log(gate / (1.0 - gate)))
    plain.load_state_dict(ruled.state_dict())
    return ruled, plain


@pytest.mark.parametrize(("gate", "presence"), [(0.05, 0.0), (0.15, 0.5), (0.5, 1.0)])
def test_stage1_presence_scales_a_frames_change_by_its_mean_gate(gate: float, presence: float) -> None:
    """With ``stage1_presence = (0.1, 0.2)`` and a uniform gate g, stage 1 changes each frame by
    clamp((g - 0.1) / 0.1, 0, 1) times what it changes without the rule (at 0: the input itself); the gate returned
    for training is the per-pixel one; the streaming window step agrees with the whole clip."""
    ruled, plain = _uniform_gate_models("stage1_presence", (0.1, 0.2), gate)
    lqs = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        out, returned = ruled(lqs, with_gate=True)
        reference = plain(lqs)
        flows_b, flows_f = ruled.compute_flows(lqs)
        image, _, _ = ruled.restore_frame(lqs, ruled.extract_features(lqs), flows_b, flows_f, 2)
    assert returned is not None and returned.mean().item() == pytest.approx(gate, abs=1e-5)
    if presence == 0.0:
        assert torch.equal(out.stage1, lqs)
    torch.testing.assert_close(out.stage1 - lqs, presence * (reference.stage1 - lqs), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(image, out.output[:, 2], atol=1e-5, rtol=1e-4)


def test_stage1_presence_is_per_frame() -> None:
    """Each frame's presence comes from its own mean gate: (n, 1, t, h, w) -> (n, 1, t, 1, 1)."""
    model = VimpNet(dataclasses.replace(get_config("vimpnet_lite_gated"), stage1_presence=(0.1, 0.2)))
    gate = torch.tensor([0.05, 0.12, 0.3]).reshape(1, 1, 3, 1, 1).expand(2, 1, 3, 8, 8)
    presence = model.streak_presence(gate)
    assert presence.shape == (2, 1, 3, 1, 1)
    torch.testing.assert_close(presence.flatten()[:3], torch.tensor([0.0, 0.2, 1.0]))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"name": "ungated", "stage1_presence": (0.1, 0.2)}, "needs gated_residuals"),
        ({"gated_residuals": True, "stage1_presence": (0.2, 0.1)}, "0 <= low < high <= 1"),
        ({"gated_residuals": True, "stage1_presence": (0.5, 1.5)}, "0 <= low < high <= 1"),
        ({"name": "ungated", "stage1_repass_presence": (0.4, 0.5)}, "stage1_repass_presence needs gated_residuals"),
        ({"gated_residuals": True, "stage1_repass_presence": (0.5, 0.4)}, "0 <= low < high <= 1"),
    ],
)
def test_bad_stage1_presence_fails_at_config_time(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        dataclasses.replace(get_config("vimpnet_lite"), **changes)


def test_channels_last_weights_compute_the_same_function() -> None:
    """use_channels_last moves every convolution to NHWC weights (the engine's choice on a CPU): the model's output
    is the same within float rounding, and its weights hash the same (the compiled-program cache keys on them)."""
    torch.manual_seed(0)
    model = VimpNet("vimpnet_lite_gated").eval()
    model.set_stage1_passes(2)
    lqs = torch.rand(1, 3, 3, 64, 48)
    with torch.no_grad():
        before = model(lqs)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    use_channels_last(model)
    assert model.feat_extract[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.reconstruction.input_conv.channels_last
    with torch.no_grad():
        after = model(lqs)
    for old, new in zip(before, after, strict=True):
        torch.testing.assert_close(new, old, atol=1e-5, rtol=1e-4)
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in state.items())


def test_stage1_presence_round_trips_and_is_not_a_size() -> None:
    gated = get_config("vimpnet_lite_gated")
    assert VimpNetConfig.from_dict(gated.to_dict()) == gated
    assert gated.same_network(dataclasses.replace(gated, name="other", stage1_presence=None))
    assert not gated.same_network(get_config("vimpnet_lite"))


def test_a_second_stage1_pass_reconstructs_the_first_passs_frames_and_keeps_its_mask(lite: VimpNet) -> None:
    """stage1_passes 2: pass 1's frames get their own features and the reconstruction reads them with pass 1's
    propagated features; the drop mask and streak map are pass 1's, stage 2 reads pass 2's frames; the streaming
    window step agrees with the whole clip."""
    twice = VimpNet(get_config("vimpnet_lite")).eval()
    twice.load_state_dict(lite.state_dict())
    twice.set_stage1_passes(2)
    assert (twice.stage1_passes, lite.stage1_passes) == (2, 1)
    lqs = torch.rand(1, 4, 3, 32, 24)
    with torch.no_grad():
        once = lite(lqs)
        out = twice(lqs)
        flows_b, flows_f = lite.compute_flows(lqs)
        feats = lite.extract_features(lqs)
        backward, forward = lite.propagate(feats, flows_b, flows_f, lite.estimate_streaks(feats))
        again = lite.remove_streaks_again(once.stage1, backward, forward, None)
        image, mask, streak = twice.restore_frame(lqs, twice.extract_features(lqs), flows_b, flows_f, 3)
    torch.testing.assert_close(out.stage1, again)
    assert not torch.allclose(out.stage1, once.stage1)  # the second pass changed the frames
    torch.testing.assert_close(out.drop_mask, once.drop_mask)
    torch.testing.assert_close(out.streak_map, once.streak_map)
    with torch.no_grad():
        torch.testing.assert_close(out.output, lite.remove_drops(again, once.drop_mask))
    torch.testing.assert_close(image, out.output[:, 3], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mask, out.drop_mask[:, 3])
    torch.testing.assert_close(streak, out.streak_map[:, 3])


def test_a_second_stage1_pass_runs_no_propagation_and_no_heads() -> None:
    """What makes a later pass cheap: the alignment, the backbones, the drop and gate heads and the streak head run
    once however many passes; the feature extractor and the reconstruction once per pass."""
    torch.manual_seed(0)
    model = VimpNet("vimpnet_lite_gated").eval()
    parts = {"deform_align": model.deform_align, "backbone": model.backbone, "drop_head": model.drop_head,
             "change_gate": model.change_gate, "streak_head": model.streak_head,
             "feat_extract": model.feat_extract, "reconstruction": model.reconstruction}  # fmt: skip
    lqs = torch.rand(1, 3, 3, 32, 32)

    def calls(passes: int) -> dict[str, int]:
        counts = dict.fromkeys(parts, 0)
        leaves = [(name, module) for name, part in parts.items() for module in part.modules()
                  if not list(module.children())]  # fmt: skip
        hooks = [module.register_forward_hook(lambda *_, name=name: counts.__setitem__(name, counts[name] + 1))
                 for name, module in leaves]  # fmt: skip
        model.set_stage1_passes(passes)
        with torch.no_grad():
            model(lqs)
        for hook in hooks:
            hook.remove()
        return counts

    one, two = calls(1), calls(2)
    for name in ("deform_align", "backbone", "drop_head", "change_gate", "streak_head"):
        assert two[name] == one[name] > 0, name
    for name in ("feat_extract", "reconstruction"):
        assert two[name] == 2 * one[name] > 0, name


def test_a_frame_without_streaks_passes_every_stage1_pass_whole() -> None:
    """With stage1_presence, a frame whose gate stays below ``low`` comes out of two passes as it went in."""
    torch.manual_seed(0)
    model = VimpNet(dataclasses.replace(get_config("vimpnet_lite_gated"), stage1_presence=(0.1, 0.2))).eval()
    model.set_stage1_passes(2)
    assert model.change_gate is not None
    with torch.no_grad():
        model.change_gate[-1].weight.zero_()
        model.change_gate[-1].bias.fill_(math.log(0.05 / 0.95))  # gate 0.05 everywhere: presence 0
        lqs = torch.rand(1, 3, 3, 32, 32)
        assert torch.equal(model(lqs).stage1, lqs)


@pytest.mark.parametrize(("gate", "repass"), [(0.3, 0.0), (0.45, 0.5), (0.6, 1.0)])
def test_later_stage1_passes_scale_by_the_first_passs_repass_presence(gate: float, repass: float) -> None:
    """With ``stage1_repass_presence = (0.4, 0.5)`` and a uniform first-pass gate g, the second pass adds
    clamp((g - 0.4) / 0.1, 0, 1) times the change it adds without the rule: a frame below 0.4 (light rain, or a
    texture taken for streaks) gets one pass, bit for bit; one pass is the same with or without the rule."""
    ruled, plain = _uniform_gate_models("stage1_repass_presence", (0.4, 0.5), gate)
    lqs = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        once = ruled(lqs).stage1
        assert torch.equal(once, plain(lqs).stage1)
        ruled.set_stage1_passes(2)
        plain.set_stage1_passes(2)
        twice, reference = ruled(lqs).stage1, plain(lqs).stage1
    if repass == 0.0:
        assert torch.equal(twice, once)
    assert not torch.allclose(reference, once)
    torch.testing.assert_close(twice - once, repass * (reference - once), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("passes", [0, 4, -1])
def test_stage1_passes_outside_1_to_max_fail_at_config_time(passes: int) -> None:
    with pytest.raises(ConfigError, match=r"stage1_passes must be in 1\.\.3"):
        dataclasses.replace(get_config("vimpnet_lite_gated"), stage1_passes=passes)
    with pytest.raises(ConfigError, match="stage1_passes"):
        VimpNet(get_config("vimpnet_lite")).set_stage1_passes(passes)


def test_stage1_passes_round_trip_and_are_not_a_size() -> None:
    gated = get_config("vimpnet_lite_gated")
    twice = dataclasses.replace(gated, stage1_passes=2)
    assert VimpNetConfig.from_dict(twice.to_dict()) == twice
    assert gated.same_network(twice) and twice.same_network(gated)


def test_the_propagation_bound_scales_long_feature_vectors_back_and_keeps_the_rest_bit_for_bit() -> None:
    """Per pixel over channels: a vector within the bound keeps its values exactly, a longer one keeps its
    direction at the bound's length; without a bound the features pass as they are."""
    model = VimpNet(dataclasses.replace(get_config("vimpnet_lite"), propagation_bound=4.0))
    prop = torch.randn(2, 32, 6, 5) * torch.linspace(0.01, 3.0, 30).reshape(1, 1, 6, 5)
    norms = torch.linalg.vector_norm(prop, dim=1, keepdim=True)
    within, beyond = (norms <= 4.0).expand_as(prop), (norms > 4.0).expand_as(prop)
    assert within.any() and beyond.any()
    bounded = model.bound_features(prop)
    assert torch.equal(bounded[within], prop[within])
    torch.testing.assert_close(torch.linalg.vector_norm(bounded, dim=1, keepdim=True)[norms > 4.0],
                               torch.full_like(norms[norms > 4.0], 4.0))  # fmt: skip
    torch.testing.assert_close((bounded / torch.linalg.vector_norm(bounded, dim=1, keepdim=True))[beyond],
                               (prop / norms)[beyond])  # fmt: skip
    model.set_propagation_bound(None)
    assert model.bound_features(prop) is prop


def test_a_bound_no_feature_reaches_changes_no_output(lite: VimpNet) -> None:
    """A bound above every propagated norm of a clip leaves the whole forward bit for bit; a tight one changes it."""
    bounded = VimpNet(get_config("vimpnet_lite")).eval()
    bounded.load_state_dict(lite.state_dict())
    lqs = torch.rand(1, 4, 3, 32, 24)
    with torch.no_grad():
        plain = lite(lqs)
        bounded.set_propagation_bound(1e6)
        loose = bounded(lqs)
        bounded.set_propagation_bound(1e-3)
        tight = bounded(lqs)
    for name in VimpNetOutput._fields:
        assert torch.equal(getattr(loose, name), getattr(plain, name))
    assert not torch.equal(tight.stage1, plain.stage1)


@pytest.mark.parametrize("bound", [0.0, -1.0, math.inf, math.nan, True, "8"])
def test_a_bad_propagation_bound_fails_at_config_time(bound: object) -> None:
    with pytest.raises(ConfigError, match="propagation_bound must be a finite number > 0"):
        dataclasses.replace(get_config("vimpnet_lite_gated"), propagation_bound=bound)


def test_the_propagation_bound_round_trips_and_is_not_a_size() -> None:
    gated = get_config("vimpnet_lite_gated")
    assert gated.propagation_bound is not None and get_config("vimpnet").propagation_bound is None
    assert VimpNetConfig.from_dict(gated.to_dict()) == gated
    assert gated.same_network(dataclasses.replace(gated, name="other", propagation_bound=None))


@pytest.mark.parametrize("pixels", [0, 64 * 63, -1, 4096.0, True, "40960"])
def test_a_bad_working_scale_fails_at_config_time(pixels: object) -> None:
    with pytest.raises(ConfigError, match="working_pixels must be an integer >= 4096"):
        dataclasses.replace(get_config("vimpnet_lite_gated"), working_pixels=pixels)


def test_the_working_scale_round_trips_and_is_not_a_size() -> None:
    gated = get_config("vimpnet_lite_gated")
    assert gated.working_pixels == 256 * 160 and get_config("vimpnet").working_pixels is None
    assert VimpNetConfig.from_dict(gated.to_dict()) == gated
    assert gated.same_network(dataclasses.replace(gated, name="other", working_pixels=None))


def test_the_fill_keeps_known_pixels_and_fills_holes_from_around_them() -> None:
    """Known pixels bit for bit; a hole inside one colour takes that colour, a hole on a border lies between."""
    frames = torch.zeros(2, 3, 151, 269)
    frames[:, :, :, 135:] = 1.0  # left half black, right half white
    holes = torch.zeros(2, 1, 151, 269)
    holes[:, :, 60:90, 20:50] = 1.0  # inside the black half
    holes[:, :, 60:90, 250:260] = 1.0  # inside the white half
    holes[:, :, 60:90, 120:150] = 1.0  # across the border
    filled = fill_from_surroundings(frames, holes)
    known = holes.expand_as(frames) == 0
    assert torch.equal(filled[known], frames[known])
    assert filled[:, :, 60:90, 20:50].abs().max() < 1e-6
    assert (filled[:, :, 60:90, 250:260] - 1.0).abs().max() < 1e-6
    border = filled[:, :, 60:90, 120:150]
    assert 0.0 < border.mean() < 1.0 and border[..., 0].mean() < border[..., -1].mean()
    assert torch.equal(fill_from_surroundings(frames, torch.zeros_like(holes)), frames)
    assert torch.isfinite(fill_from_surroundings(frames, torch.ones_like(holes))).all()


def test_stage2_prefill_changes_stage_2s_input_only_where_a_drop_is_predicted() -> None:
    """With the rule, stage 2 sees the drops filled (from the mask's ``stage2_prefill_threshold``, below the
    published threshold); without a predicted drop its input and output are unchanged, and the window step agrees
    with the whole clip."""
    torch.manual_seed(0)
    ruled = VimpNet(get_config("vimpnet_lite_gated")).eval()
    plain = VimpNet(dataclasses.replace(get_config("vimpnet_lite_gated"), stage2_prefill=0.0)).eval()
    published = VimpNet(dataclasses.replace(get_config("vimpnet_lite_gated"), stage2_prefill_threshold=MASK_THRESHOLD))
    plain.load_state_dict(ruled.state_dict())
    assert ruled.config.stage2_prefill == 0.5 and get_config("vimpnet").stage2_prefill == 0.0
    assert ruled.config.stage2_prefill_threshold == 0.2 and get_config("vimpnet").stage2_prefill_threshold == 0.5
    stage1 = torch.rand(1, 3, 3, 32, 48)
    no_drops = torch.full((1, 3, 1, 32, 48), 0.1)
    drops = no_drops.clone()
    drops[:, 1, :, 8:20, 10:30] = 0.9
    drops[:, 2, :, 4:8, 30:40] = 0.3  # a faint drop: under the published threshold, over the prefill's
    with torch.no_grad():
        assert torch.equal(ruled.prefill_drops(stage1, no_drops), stage1)
        torch.testing.assert_close(ruled.remove_drops(stage1, no_drops), plain.remove_drops(stage1, no_drops))
        prefilled = ruled.prefill_drops(stage1, drops)
        changed = (prefilled != stage1).any(dim=2)
        assert changed[:, 1, 8:20, 10:30].all() and changed[:, 2, 4:8, 30:40].all()
        assert changed.sum() == 12 * 20 + 4 * 10
        assert (published.prefill_drops(stage1, drops) != stage1).any(dim=2).sum() == 12 * 20
        assert not torch.allclose(ruled.remove_drops(stage1, drops), plain.remove_drops(stage1, drops))
        lqs = torch.rand(1, 5, 3, 32, 48)
        flows_b, flows_f = ruled.compute_flows(lqs)
        image, _, _ = ruled.restore_frame(lqs, ruled.extract_features(lqs), flows_b, flows_f, 2)
        torch.testing.assert_close(image, ruled(lqs).output[:, 2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value", [-0.1, 1.5, True, "0.5", None])
def test_a_bad_stage2_prefill_fails_at_config_time(value: object) -> None:
    with pytest.raises(ConfigError, match=r"stage2_prefill must be a number in \[0, 1\]"):
        dataclasses.replace(get_config("vimpnet_lite_gated"), stage2_prefill=value)


@pytest.mark.parametrize("value", [0.0, 1.5, True, "0.2", None])
def test_a_bad_stage2_prefill_threshold_fails_at_config_time(value: object) -> None:
    with pytest.raises(ConfigError, match=r"stage2_prefill_threshold must be a number in \(0, 1\]"):
        dataclasses.replace(get_config("vimpnet_lite_gated"), stage2_prefill_threshold=value)


def test_stage2_prefill_round_trips_and_is_not_a_size() -> None:
    gated = get_config("vimpnet_lite_gated")
    assert VimpNetConfig.from_dict(gated.to_dict()) == gated
    other = dataclasses.replace(gated, name="other", stage2_prefill=0.0, stage2_prefill_threshold=0.5)
    assert gated.same_network(other)
