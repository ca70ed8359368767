"""Synthetic rain renderer: streaks (``streaks``), raindrops (``drops``), camera effects
(``sensor``), their composition (``compose``), parameter ranges (``config``) and a
contact-sheet preview (``preview``)."""

from vimpnet_ros.data.rain.compose import RenderedVideo, render_video
from vimpnet_ros.data.rain.config import (
    PRESETS,
    DropConfig,
    RainConfig,
    SensorConfig,
    StreakConfig,
    default_rain_config_path,
    load_rain_config,
)
from vimpnet_ros.data.rain.drops import DropField, DropParams
from vimpnet_ros.data.rain.preview import contact_sheet, write_contact_sheet
from vimpnet_ros.data.rain.sensor import SensorParams
from vimpnet_ros.data.rain.streaks import StreakField, StreakParams

__all__ = [
    "PRESETS",
    "DropConfig",
    "DropField",
    "DropParams",
    "RainConfig",
    "RenderedVideo",
    "SensorConfig",
    "SensorParams",
    "StreakConfig",
    "StreakField",
    "StreakParams",
    "contact_sheet",
    "default_rain_config_path",
    "load_rain_config",
    "render_video",
    "write_contact_sheet",
]
