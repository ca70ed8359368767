"""Checkpoint formats (MMEditing, bare, ours) and the clear failures on bad files."""

from __future__ import annotations

import pathlib
import re
from pathlib import Path

import pytest
import torch

from vimpnet_ros.errors import CheckpointError
from vimpnet_ros.model import VimpNet, get_config
from vimpnet_ros.model.checkpoint import (
    FORMAT_VERSION,
    checkpoint_filter_fn,
    convert_state_dict,
    load_checkpoint,
    load_model,
    reference_name_to_ours,
    save_checkpoint,
    state_dict_sha256,
)


@pytest.fixture(scope="module")
def lite_model() -> VimpNet:
    torch.manual_seed(0)
    return VimpNet(get_config("vimpnet_lite")).eval()


def test_official_names_load_strictly_from_mmedit_file(
    tmp_path: Path, official_shapes: list[tuple[str, tuple[int, ...]]]
) -> None:
    """A file with exactly the published names/shapes under generator.* loads with no renaming."""
    state = {f"generator.{name}": torch.full(shape, 0.01) for name, shape in official_shapes}
    state["generator.spynet.mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    state["discriminator.conv.weight"] = torch.zeros(3)  # other networks in the file are ignored
    raw = {
        "meta": {"mmedit_version": "0.16.0", "iter": 300000},
        "state_dict": state,
        "optimizer": {"generator": {"state": {}, "param_groups": [{"lr": 1e-4}]}},
        "step_counter": torch.tensor(300000),
    }
    path = tmp_path / "vimpnet_official.pth"
    torch.save(raw, path)
    config, loaded = load_checkpoint(path)
    assert config is not None and config.name == "vimpnet"
    assert list(loaded) == [reference_name_to_ours(name) for name, _ in official_shapes]
    model = load_model(path, "vimpnet")
    params = dict(model.state_dict())
    assert torch.equal(params["spynet.mean"], state["generator.spynet.mean"])
    assert torch.all(params["drop_remover.soft_split.embedding.weight"] == 0.01)
    assert len(params) == len(official_shapes)


def test_bare_state_dict_and_own_format_round_trip(tmp_path: Path, lite_model: VimpNet) -> None:
    bare = tmp_path / "bare.pth"
    torch.save(lite_model.state_dict(), bare)
    ours = tmp_path / "ours.pth"
    digest = save_checkpoint(ours, lite_model, lite_model.config)
    raw = torch.load(ours, weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["sha256"] == digest == state_dict_sha256(lite_model.state_dict())
    assert raw["config"]["name"] == "vimpnet_lite"
    for path in (bare, ours):
        model = load_model(path, "vimpnet_lite")
        for name, tensor in lite_model.state_dict().items():
            assert torch.equal(model.state_dict()[name], tensor), name
    assert load_model(ours).config == lite_model.config  # config from the file


def test_own_format_detects_corruption(tmp_path: Path, lite_model: VimpNet) -> None:
    path = tmp_path / "ours.pth"
    save_checkpoint(path, lite_model, lite_model.config)
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["conv_last.bias"] = raw["state_dict"]["conv_last.bias"] + 1
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="hash"):
        load_model(path)


def test_wrong_config_is_named(tmp_path: Path, lite_model: VimpNet) -> None:
    path = tmp_path / "ours.pth"
    save_checkpoint(path, lite_model, lite_model.config)
    with pytest.raises(CheckpointError, match="holds a 'vimpnet_lite' model whose sizes differ from 'vimpnet'"):
        load_model(path, "vimpnet")


def test_missing_empty_and_directory_paths_name_the_real_cause(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pth", "vimpnet_lite")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model(tmp_path, "vimpnet_lite")
    (tmp_path / "empty.pth").touch()
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        load_model(tmp_path / "empty.pth", "vimpnet_lite")


def test_no_shipped_weights_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="pass a checkpoint"):
        load_model(None, "vimpnet")


def test_truncated_file(tmp_path: Path, lite_model: VimpNet) -> None:
    path = tmp_path / "truncated.pth"
    torch.save(lite_model.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(path, "vimpnet_lite")


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        # A '{' is a valid pickle opcode: without the format check this was called unsafe Python objects.
        '{"step": 1300, "checkpoint": "iter_00001300.pth"}',
    ],
)
def test_not_a_checkpoint(tmp_path: Path, text: str) -> None:
    path = tmp_path / "latest.json"
    path.write_text(text)
    with pytest.raises(CheckpointError, match=r"is not a PyTorch checkpoint .* starts with b'" + re.escape(text[:4])):
        load_checkpoint(path)


def test_wrong_shapes_missing_and_unexpected_are_named(tmp_path: Path, lite_model: VimpNet) -> None:
    state = dict(lite_model.state_dict())
    state["conv_last.weight"] = torch.zeros(3, 16, 1, 5, 5)
    del state["spynet.mean"]
    del state["conv_last.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": {f"generator.{k}": v for k, v in state.items()}, "meta": {}}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, "vimpnet_lite")
    message = str(info.value)
    assert "2 missing (spynet.mean, conv_last.bias)" in message
    assert "1 unexpected (extra.weight)" in message
    assert "1 wrongly shaped (conv_last.weight: checkpoint (3, 16, 1, 5, 5) vs model (3, 16, 1, 3, 3))" in message


def test_many_mismatches_are_summarised(official_shapes: list[tuple[str, tuple[int, ...]]]) -> None:
    """The full-size names against the lite model: counts plus the first few names, not thousands of lines."""
    state = {name: torch.zeros(1) for name, _ in official_shapes}
    with pytest.raises(CheckpointError, match=r"\d+ unexpected \([^)]*\.\.\. \(\d+ more\)"):
        from vimpnet_ros.model.checkpoint import check_compatible, expected_shapes

        check_compatible(expected_shapes(get_config("vimpnet_lite")), state, "test")


class _Exploit:
    """Unpickling this would create a marker file: the safe loader must refuse before that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.marker,))


def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"generator.conv_last.bias": torch.zeros(3)}, "meta": _Exploit(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        load_model(path, "vimpnet_lite")
    assert not marker.exists()


def test_convert_rejects_non_tensor_payload() -> None:
    with pytest.raises(CheckpointError, match="not a ViMP-Net state dict"):
        convert_state_dict({"meta": {"a": 1}})
    with pytest.raises(CheckpointError, match="expected a dict"):
        convert_state_dict([1, 2])


def test_reference_names_map_to_self_explaining_ones() -> None:
    """The filter maps the published names (all weight sets) and leaves ours unchanged, so it is idempotent."""
    assert reference_name_to_ours("S_mask_streak.0.weight") == "streak_head.0.weight"
    assert reference_name_to_ours("S_mask_drop.4.bias") == "drop_head.4.bias"
    prefix = "Dual_Raindrop_gnostic_Transformer."
    assert reference_name_to_ours(prefix + "transformer.norm1.weight") == "drop_remover.blocks.0.norm1.weight"
    assert reference_name_to_ours(prefix + "transformer1.ffn2.conv.3.bias") == "drop_remover.blocks.1.ffn2.conv.3.bias"
    assert reference_name_to_ours(prefix + "downdropbg.conv1.weight") == "drop_remover.guided_encoder.conv1.weight"
    assert reference_name_to_ours(prefix + "sc.bias_conv.weight") == "drop_remover.soft_comp.bias_conv.weight"
    ours = dict(VimpNet(get_config("vimpnet_lite")).state_dict())
    assert list(checkpoint_filter_fn(ours)) == list(ours)


def test_format_1_checkpoints_with_reference_names_still_load(tmp_path: Path, lite_model: VimpNet) -> None:
    """Files written before the rename (format 1, reference names, hash over those) load into the new names."""
    to_reference = {
        "streak_head.": "S_mask_streak.",
        "drop_head.": "S_mask_drop.",
        "drop_remover.rainy_encoder.": "Dual_Raindrop_gnostic_Transformer.downdrop1.",
        "drop_remover.blocks.0.": "Dual_Raindrop_gnostic_Transformer.transformer.",
        "drop_remover.blocks.1.": "Dual_Raindrop_gnostic_Transformer.transformer1.",
    }
    old_state = {}
    for name, tensor in lite_model.state_dict().items():
        for new, old in to_reference.items():
            if name.startswith(new):
                name = old + name[len(new) :]
                break
        old_state[name] = tensor
    config = get_config("vimpnet_lite")
    payload = {"format_version": 1, "config": config.to_dict(), "sha256": state_dict_sha256(old_state),
               "state_dict": old_state}  # fmt: skip
    torch.save(payload, tmp_path / "v1.pth")
    model = load_model(tmp_path / "v1.pth", "vimpnet_lite")
    for name, tensor in lite_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_stored_configs_load_by_their_sizes_not_their_names(tmp_path: Path) -> None:
    """A checkpoint of today's lite sizes stored under another name loads as vimpnet_lite; one of the previous lite
    model (``vimpnet_lite_v1``, stored as 'vimpnet_lite') is refused with the name that fits it."""
    import dataclasses

    lite, old = get_config("vimpnet_lite"), get_config("vimpnet_lite_v1")
    save_checkpoint(tmp_path / "renamed.pth", VimpNet(lite), dataclasses.replace(lite, name="vimpnet_lite_m"))
    assert load_model(tmp_path / "renamed.pth", "vimpnet_lite").config == lite
    save_checkpoint(tmp_path / "old.pth", VimpNet(old), dataclasses.replace(old, name="vimpnet_lite"))
    with pytest.raises(CheckpointError, match="sizes are those of 'vimpnet_lite_v1': use model 'vimpnet_lite_v1'"):
        load_model(tmp_path / "old.pth", "vimpnet_lite")
    assert load_model(tmp_path / "old.pth", "vimpnet_lite_v1").config == old


def test_weights_saved_without_the_presence_rule_load_with_the_registered_one(tmp_path: Path) -> None:
    """``stage1_presence`` is a rule on the trained gate, not a size: a gated checkpoint stored before the rule
    (or with another one) loads under its model name and runs with the registered rule; loaded by its stored
    config alone, it keeps what it stored."""
    import dataclasses

    gated = get_config("vimpnet_lite_gated")
    assert gated.stage1_presence is not None
    before = dataclasses.replace(gated, stage1_presence=None)
    save_checkpoint(tmp_path / "before.pth", VimpNet(before), before)
    assert load_model(tmp_path / "before.pth", "vimpnet_lite_gated").stage1_presence == gated.stage1_presence
    assert load_model(tmp_path / "before.pth").stage1_presence is None
