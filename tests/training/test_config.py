"""Training configs: packaged files load, overrides parse as YAML, mistakes fail early with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.training.config import (
    OptimConfig,
    apply_overrides,
    config_from_dict,
    load_train_config,
    packaged_configs,
)


def test_packaged_configs_load_and_validate() -> None:
    names = packaged_configs()
    assert {"vimpnet_reference", "vimpnet_lite_synthetic"} <= set(names)
    for name in names:
        config = load_train_config(name)
        assert config.name
    reference = load_train_config("vimpnet_reference")
    # The reference schedule (VIMPNET_REFERENCE.md "Training objective").
    assert reference.optim.lr == pytest.approx(1e-4)
    assert reference.optim.betas == (0.9, 0.99)
    assert reference.optim.spynet_lr_mult == pytest.approx(0.25)
    assert reference.optim.spynet_freeze_iters == 5000
    assert reference.schedule.total_iters == 500_000
    assert reference.schedule.eta_min == pytest.approx(1e-9)
    assert reference.data.crop_size == 256 and reference.data.clip_length == 5 and reference.data.batch_size == 1
    assert (reference.loss.stage1, reference.loss.mask, reference.loss.output) == (1.0, 0.8, 1.2)
    assert (reference.loss.masked, reference.loss.streak) == (0.5, 0.5)


def test_overrides_are_parsed_as_yaml_values() -> None:
    config = load_train_config(
        "vimpnet_lite_synthetic",
        ["optim.lr=2e-4", "data.batch_size=3", "optim.grad_clip=null", "data.train.size=[96, 64]", "seed=5"],
    )
    assert config.optim.lr == pytest.approx(2e-4)
    assert config.data.batch_size == 3
    assert config.optim.grad_clip is None
    assert config.data.train.size == (96, 64)
    assert config.seed == 5


def test_yaml_file_path_works(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nmodel: vimpnet_lite\ndata:\n  train: {type: vrds, root: /x}\n")
    config = load_train_config(path)
    assert config.name == "mine" and config.data.train.root == "/x"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], "unknown config key"),
        (["data.crop_size=30"], "multiple of 4"),
        (["precision=fp8"], "precision must be"),
        (["optim.type=sgd"], "optimizer must be"),
        (["data.batch_size=two"], "data.batch_size"),
        (["nonsense"], "key.sub=value"),
        (["data.train.type=folder"], "data type must be"),
        (["stage1_passes=0"], r"stage1_passes must be in 1\.\.3"),
        (["stage1_passes=4"], r"stage1_passes must be in 1\.\.3"),
        (["stage2_prefill=1.5"], r"stage2_prefill must be a number in \[0, 1\]"),
    ],
)
def test_mistakes_raise_config_error(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_train_config("vimpnet_lite_synthetic", overrides)


def test_unknown_config_name_lists_the_packaged_ones() -> None:
    with pytest.raises(ConfigError, match="vimpnet_lite_synthetic"):
        load_train_config("no_such_config")


def test_apply_overrides_does_not_mutate_its_input() -> None:
    data = {"optim": {"lr": 1.0}}
    apply_overrides(data, ["optim.lr=2"])
    assert data == {"optim": {"lr": 1.0}}


def test_config_round_trips_through_to_dict() -> None:
    config = load_train_config("vimpnet_lite_synthetic")
    assert config_from_dict(config.to_dict()) == config


def test_trainable_reads_a_list_of_prefixes() -> None:
    assert OptimConfig().trainable == () and OptimConfig(trainable=("change_gate",)).trainable == ("change_gate",)
    config = load_train_config("vimpnet_lite_gate_only")
    assert config.optim.trainable == ("change_gate",)
    assert config.model == "vimpnet_lite_gated" and config.init_from == "shipped:vimpnet_lite"


def test_the_drop_head_config_trains_the_mask_head_alone_on_the_mask_terms() -> None:
    config = load_train_config("vimpnet_lite_gated_drop_head_small")
    assert config.optim.trainable == ("drop_head",) and config.init_from == "shipped:vimpnet_lite_gated"
    assert config.data.train.rain_config == "wide_heavy_small_drops"
    loss = config.loss
    assert loss.mask > 0 and loss.mask_dice > 0
    # Every image term reads modules that do not train: off, so the step costs the mask alone.
    assert loss.stage1 == loss.streak == loss.gate == loss.output == loss.masked == 0.0
    assert loss.image_l1 == loss.identity == loss.no_worse == loss.filled == 0.0


def test_the_drop_remover_config_trains_stage_2_alone_on_the_long_runs_data() -> None:
    config = load_train_config("vimpnet_lite_gated_drop_remover")
    base = load_train_config("vimpnet_lite_gated_drops_long")
    assert config.optim.trainable == ("drop_remover",) and config.init_from == "shipped:vimpnet_lite_gated"
    # The long run's data and objective, another seed: only stage 2 learns, behind the shipped mask head.
    assert config.data.train.rain_config == base.data.train.rain_config == "wide_heavy_half"
    assert config.data.train.seed != base.data.train.seed and config.loss == base.loss
    assert config.schedule.total_iters == 4000 and config.log.keep_every == 250


def test_the_prefill_configs_train_stage_2_behind_the_rule_on_the_drop_removers_data() -> None:
    base = load_train_config("vimpnet_lite_gated_drop_remover")
    for name, prefill in [
        ("vimpnet_lite_gated_drop_remover_prefill", 0.5),
        ("vimpnet_lite_gated_drop_remover_prefill_full", 1.0),
    ]:
        config = load_train_config(name)
        assert config.stage2_prefill == prefill and base.stage2_prefill is None
        assert config.optim.trainable == ("drop_remover",) and config.init_from == base.init_from
        assert config.data.train.rain_config == base.data.train.rain_config and config.loss == base.loss
        assert config.data.train.seed != base.data.train.seed


def test_footage_is_an_online_source_option() -> None:
    from vimpnet_ros.training.config import DataSource

    source = DataSource(type="online", footage=("/data/clear_drives",), footage_fraction=0.3)
    assert source.footage == ("/data/clear_drives",)
    with pytest.raises(ConfigError, match="footage is read by online sources"):
        DataSource(type="vrds", root="x", footage=("/data/clear_drives",), footage_fraction=0.3)


def test_extends_merges_a_file_over_its_base(tmp_path: Path) -> None:
    # The study recipes list only what differs from vimpnet_lite_gated.yaml; sections merge key by key.
    base = load_train_config("vimpnet_lite_gated")
    drops = load_train_config("vimpnet_lite_gated_drops")
    assert drops.data == base.data and drops.loss.identity == base.loss.identity
    assert (drops.loss.gate, drops.loss.masked, drops.optim.lr) == (0.0, 8.0, base.optim.lr)
    child = tmp_path / "child.yaml"
    child.write_text("extends: vimpnet_lite_gated\nname: child\ndata:\n  train:\n    seed: 5\n")
    config = load_train_config(child)
    assert config.data.train.seed == 5 and config.data.train.clean == base.data.train.clean
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\nname: loop\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_train_config(loop)
