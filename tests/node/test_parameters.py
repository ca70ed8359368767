"""The parameter table: validation rules and their messages (no ROS needed)."""

from __future__ import annotations

import pytest

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.node.parameters import PARAMETERS, default_values, engine_config_kwargs, validate_settings


def test_defaults_are_valid_and_map_to_engine_config() -> None:
    settings = validate_settings({})
    assert settings.window_size == 5 and settings.camera_namespaces == [""]
    kwargs = engine_config_kwargs(settings)
    assert kwargs["checkpoint"] is None and kwargs["inference_size"] is None and kwargs["engine_cache_dir"] is None
    from vimpnet_ros.engine.config import EngineConfig

    EngineConfig(**kwargs)  # the engine accepts what the node passes


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
    assert settings.camera_namespaces == ["front", "/rear"]
    changed = settings.replace(mask_threshold=0.25, jpeg_quality=50)
    assert (changed.mask_threshold, changed.jpeg_quality) == (0.25, 50)
    with pytest.raises(ConfigError):
        settings.replace(gating_frames=0)


def test_default_values_returns_fresh_lists() -> None:
    first = default_values()
    first["cameras"].append("x")  # type: ignore[union-attr]
    assert default_values()["cameras"] == []
