"""EngineConfig validation: every bad value fails at construction with a ConfigError naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from vimpnet_ros.engine import AUTO_STAGE1_PASSES, EngineConfig, resolve_stage1_passes
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.model import get_config


def test_defaults_match_the_contract() -> None:
    config = EngineConfig()
    assert (config.model, config.backend, config.precision, config.device) == (
        "vimpnet_lite_gated",
        "auto",
        "auto",
        "auto",
    )
    assert (config.window_size, config.output_frame, config.tile_size, config.tile_overlap) == (5, "latest", 0, 32)
    assert config.output_index == 4 and config.delay_frames == 0
    center = config.replace(output_frame="center", window_size=7)
    assert center.output_index == 3 and center.delay_frames == 3


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("window_size", 4, "odd"),
        ("window_size", 11, "3..9"),
        ("window_size", 1, "3..9"),
        ("output_frame", "middle", "latest, center"),
        ("backend", "tflite", "auto, torch, onnxruntime, tensorrt"),
        ("precision", "int8", "fp32"),
        ("device", "gpu", "cuda:N"),
        ("device", "cuda:x", "cuda:N"),
        ("inference_size", (640,), "(width, height)"),
        ("working_scale", "camera", "weights, native"),
        ("change_upsampling", "nearest", "guided, bilinear"),
        ("inference_size", (2, 480), "(width, height)"),
        ("tile_size", 30, "multiple of 4"),
        ("tile_size", 130, "multiple of 4"),
        ("tile_overlap", -1, "non-negative"),
        ("tile_overlap", 64, "less than half"),
        ("tile_batch", 0, "at least 1"),
        ("max_gap_s", 0, "positive"),
        ("model", "", "config name"),
        ("background_build", "yes", "true or false"),
        ("reuse_cpu_memory", 1, "true or false"),
        ("stage1_passes", 4, "0..3"),
        ("stage1_passes", -1, "0..3"),
        ("stage1_passes", True, "0..3"),
    ],
)
def test_bad_values_raise_config_error(field: str, value: object, words: str) -> None:
    changes = {field: value}
    if field == "tile_overlap" and value == 64:
        changes["tile_size"] = 128
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        EngineConfig(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"backend": "tensorrt", "device": "cpu"}, "needs a CUDA device"),
        ({"backend": "onnxruntime", "precision": "bf16"}, "fp32 only"),
        ({"precision": "fp16", "device": "cpu"}, "needs a CUDA device"),
    ],
)
def test_impossible_combinations(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        EngineConfig(**changes)  # type: ignore[arg-type]


def test_inference_size_list_becomes_tuple() -> None:
    assert EngineConfig(inference_size=[320, 180]).inference_size == (320, 180)  # type: ignore[arg-type]


def test_cache_dir_default_and_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert EngineConfig().cache_dir == tmp_path / "vimpnet_ros" / "engines"
    assert EngineConfig(engine_cache_dir=tmp_path / "x").cache_dir == tmp_path / "x"


def test_stage1_passes_by_device_and_model() -> None:
    """0 (the default) picks by device for a model whose streak-free frames pass stage 1 whole: two passes on a GPU
    and on a CPU; one for any other model (the published network); a number is kept."""
    assert EngineConfig().stage1_passes == 0
    ruled, published = get_config(EngineConfig().model), get_config("vimpnet")
    assert ruled.stage1_presence is not None and published.stage1_presence is None
    assert resolve_stage1_passes(0, "cpu", ruled) == AUTO_STAGE1_PASSES["cpu"] == 2
    assert resolve_stage1_passes(0, "cuda:1", ruled) == resolve_stage1_passes(0, "cuda", ruled) == 2
    assert AUTO_STAGE1_PASSES["cuda"] == 2
    assert resolve_stage1_passes(0, "cuda", published) == resolve_stage1_passes(0, "cpu", published) == 1
    assert resolve_stage1_passes(3, "cpu", published) == 3
    with pytest.raises(ValueError, match="resolved device"):
        resolve_stage1_passes(0, "auto", ruled)
