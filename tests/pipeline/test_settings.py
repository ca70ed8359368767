"""The parameter table: validation rules and their messages, the generated documents (no ROS needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.settings import (
    PARAMETERS,
    SECTIONS,
    NodeSettings,
    default_values,
    load_node_settings,
    markdown_table,
    params_yaml,
    parse_param_overrides,
    read_params_file,
    validate_settings,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_map_to_engine_config() -> None:
    settings = validate_settings({})
    assert settings.engine.window_size == 5 and settings.topics.camera_namespaces == [""]
    config = settings.engine
    assert config.checkpoint is None and config.inference_size is None and config.engine_cache_dir is None
    assert config.max_inference_pixels == 1920 * 1080 and config.oversize_policy == "resize"
    assert config.working_scale == "weights" and config.change_upsampling == "guided"


def test_settings_fields_are_the_table() -> None:
    """NodeSettings has one record per section, and its values are the table's entries, in table order."""
    assert [f.name for f in dataclasses.fields(NodeSettings)] == [section.key for section in SECTIONS]
    assert list(validate_settings({}).values()) == [spec.name for spec in PARAMETERS]
    assert validate_settings({}).values() == default_values()


def test_generated_files_are_up_to_date() -> None:
    """config/vimpnet.yaml and the README table are generated from the table; regenerate them when this fails."""
    assert (REPO / "config" / "vimpnet.yaml").read_text() == params_yaml(), "python tools/regenerate_docs.py"
    assert markdown_table() in (REPO / "README.md").read_text(), "python tools/regenerate_docs.py"
    assert read_params_file(REPO / "config" / "vimpnet.yaml") == default_values()


def test_params_files_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("vimpnet:\n  ros__parameters:\n    window_size: 3\n    cameras: [front]\n")
    settings = load_node_settings(path, parse_param_overrides(["mask_threshold:=0.5", "backend:=torch"]))
    assert (settings.engine.window_size, settings.topics.cameras, settings.outputs.mask_threshold) == (
        3,
        ["front"],
        0.5,
    )
    with pytest.raises(ConfigError, match="name:=value"):
        parse_param_overrides(["window_size=3"])
    path.write_text("other:\n  ros__parameters: {}\nmore:\n  ros__parameters: {}\n")
    with pytest.raises(ConfigError, match="no 'vimpnet'"):
        read_params_file(path)


def test_latency_budget_follows_the_device_unless_set() -> None:
    assert validate_settings({}).diagnostics.latency_budget_for("cuda:0") == (100.0, "auto for cuda")
    assert validate_settings({}).diagnostics.latency_budget_for("cpu") == (5000.0, "auto for cpu")
    assert validate_settings({"latency_budget_ms": 80.0}).diagnostics.latency_budget_for("cpu")[0] == 80.0


def test_every_parameter_has_a_description_and_a_default_of_its_type() -> None:
    names = [spec.name for spec in PARAMETERS]
    assert len(names) == len(set(names))
    for spec in PARAMETERS:
        assert spec.description, spec.name
        assert spec.check(spec.default) == spec.default


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window_size": 4}, "window_size"),
        ({"window_size": 11}, "window_size"),
        ({"backend": "cuda"}, "backend"),
        ({"precision": "int8"}, "precision"),
        ({"device": "gpu0"}, "device"),
        ({"backend": "tensorrt", "device": "cpu"}, "tensorrt"),
        ({"max_input_width": 0}, "max_input_width"),
        ({"model": "vimpnet_tiny"}, "unknown model config 'vimpnet_tiny'"),
        ({"oversize_policy": "crop"}, "oversize_policy"),
        ({"working_scale": "full"}, "working_scale"),
        ({"change_upsampling": "bicubic"}, "change_upsampling"),
        ({"mask_threshold": 1.5}, "mask_threshold"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"inference_width": 320}, "inference_height"),
        ({"tile_size": 64, "tile_overlap": 32}, "tile_overlap"),
        ({"cameras": ["front", "front"]}, "twice"),
        ({"cameras": ["front cam"]}, "namespace"),
        ({"input_reliability": "sometimes"}, "input_reliability"),
        ({"publish_mask": "yes"}, "publish_mask"),
        ({"no_such_parameter": 1}, "unknown parameter"),
    ],
)
def test_invalid_values_are_rejected_with_the_parameter_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_settings(changes)


def test_replace_validates_runtime_changes() -> None:
    settings = validate_settings({"cameras": ["front", "/rear"]})
    assert settings.topics.camera_namespaces == ["front", "/rear"]
    changed = settings.replace(mask_threshold=0.25, jpeg_quality=50)
    assert (changed.outputs.mask_threshold, changed.outputs.jpeg_quality) == (0.25, 50)
    with pytest.raises(ConfigError):
        settings.replace(gating_frames=0)


def test_default_values_returns_fresh_lists() -> None:
    first = default_values()
    first["cameras"].append("x")  # type: ignore[union-attr]
    assert default_values()["cameras"] == []


def test_the_table_and_the_engine_rules_load_without_torch() -> None:
    """Tools and the node's parameter checks read the table on machines without torch."""
    import subprocess
    import sys

    code = "import sys, vimpnet_ros.pipeline.settings, vimpnet_ros.engine.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
