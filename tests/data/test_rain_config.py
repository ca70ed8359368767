"""Rain config: the shipped YAML, partial user configs and validation errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from vimpnet_ros.data.rain.config import (
    DropConfig,
    RainConfig,
    SensorConfig,
    StreakConfig,
    default_rain_config_path,
    load_rain_config,
)
from vimpnet_ros.errors import ConfigError


def test_shipped_yaml_is_package_data_and_equals_the_defaults() -> None:
    path = default_rain_config_path()
    assert path.is_file()
    assert path.parent.name == "configs"
    assert load_rain_config() == RainConfig()
    # Every field is documented in the shipped file, so users see all knobs.
    data = yaml.safe_load(path.read_text())
    assert set(data["streaks"]) == set(StreakConfig.__dataclass_fields__)
    assert set(data["drops"]) == set(DropConfig.__dataclass_fields__)
    assert set(data["sensor"]) == set(SensorConfig.__dataclass_fields__)


def test_held_out_yaml_only_names_known_fields_and_loads_by_name() -> None:
    from vimpnet_ros.data.rain.config import preset_path

    data = yaml.safe_load(preset_path("heldout").read_text())
    assert set(data) == {"streaks", "drops", "sensor"}
    assert load_rain_config("heldout") == load_rain_config(preset_path("heldout"))
    with pytest.raises(ConfigError, match="unknown rain config preset"):
        preset_path("nope")


def test_partial_config_keeps_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rain.yaml"
    path.write_text("streaks:\n  angle_deg: [-5, 5]\n  layers: 2\ndrops:\n  zoom: 0.5\n")
    config = load_rain_config(path)
    assert config.streaks.angle_deg == (-5.0, 5.0)
    assert config.streaks.layers == 2
    assert config.drops.zoom == (0.5, 0.5)
    assert config.drops.radius == DropConfig().radius
    assert RainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("streak:\n  density: 1\n", "unknown rain config section"),
        ("sensor:\n  jpeg_probability: 2\n", r"\[0, 1\]"),
        ("drops:\n  radius: [0.1]\n", "range"),
        ("drops:\n  radius: [0.2, 0.1]\n", "larger than hi"),
        ("drops:\n  probability: 1.5\n", r"\[0, 1\]"),
        ("streaks:\n  density: -1\n", ">= 0"),
        ("streaks:\n  layers: 0\n", "positive integer"),
        ("streaks:\n  speed: fast\n", "must be a range"),
        ("drops:\n  merge_overlap: wide\n", "must be a number"),
        ("streaks: [1, 2]\n", "must be a mapping"),
        ("- a\n- b\n", "must hold a mapping"),
        ("streaks: {density: [1, 2\n", "not valid YAML"),
    ],
)
def test_invalid_configs_raise_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rain.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_rain_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read rain config"):
        load_rain_config(tmp_path / "missing.yaml")


def test_presets_extend_their_base() -> None:
    # rain_wide_heavy_half.yaml says only `extends: wide_heavy` and the streak probability; wide_heavy extends wide.
    wide, heavy, half = (load_rain_config(name) for name in ("wide", "wide_heavy", "wide_heavy_half"))
    assert heavy.drops == wide.drops != RainConfig().drops
    assert (heavy.streaks.density, heavy.streaks.intensity) == ((8.0, 30.0), (0.35, 0.85))
    assert half == dataclasses.replace(heavy, streaks=dataclasses.replace(heavy.streaks, probability=0.5))
    # rain_wide_heavy_small_drops.yaml: small drops in every video, inside the wide ranges, under the same downpours.
    small = load_rain_config("wide_heavy_small_drops")
    assert small.streaks == heavy.streaks and small.sensor == heavy.sensor
    assert small.drops.probability == 1.0 and small.drops.radius == (0.01, 0.035)
    assert wide.drops.radius[0] <= small.drops.radius[0] and small.drops.radius[1] < wide.drops.radius[1]
    assert wide.drops.density[0] <= small.drops.density[0] and small.drops.density[1] <= wide.drops.density[1]


def test_a_user_config_extends_a_preset_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("extends: wide_heavy\ndrops:\n  radius: [0.02, 0.05]\n")
    config = load_rain_config(child)
    heavy = load_rain_config("wide_heavy")
    assert config.drops.radius == (0.02, 0.05)
    assert config.drops.zoom == heavy.drops.zoom and config.streaks == heavy.streaks
    grandchild = tmp_path / "grandchild.yaml"
    grandchild.write_text(f"extends: {child}\nstreaks:\n  probability: 0.0\n")
    assert load_rain_config(grandchild) == config.without(streaks=True)
    # A relative base is the file beside the one naming it, wherever the command runs.
    beside = tmp_path / "beside.yaml"
    beside.write_text("extends: child.yaml\nstreaks:\n  probability: 0.0\n")
    monkeypatch.chdir(tmp_path.parent)
    assert load_rain_config(beside) == config.without(streaks=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("extends: {path}\n", "extends itself"),
        ("extends: [wide]\n", "must name a config"),
        ("extends: no_such_preset\n", "unknown rain config preset 'no_such_preset'"),
        ("extends: missing.yaml\n", "cannot read rain config"),
    ],
)
def test_bad_extends_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rain.yaml"
    path.write_text(text.format(path=path))
    with pytest.raises(ConfigError, match=message):
        load_rain_config(path)
