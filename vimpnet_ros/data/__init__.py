"""Data: VRDS-layout datasets, the synthetic rain renderer, procedural road scenes and clean clips.

Public API (numpy arrays are RGB uint8 (t, h, w, 3) unless noted)::

    from vimpnet_ros.data import make_road_clip, render_video, write_vrds, VRDSDataset

    clean = make_road_clip(num_frames=20, size=(256, 256), rng=7)   # a car driving along a procedural road
    video = render_video(clean, load_rain_config(), rng=7)   # RenderedVideo(lq, gt, drop, drop_mask, streak_map)
    write_vrds("data/synthetic", "0000_road", video)
    dataset = VRDSDataset.from_folder("data/synthetic", clip_length=5, patch_size=256)

``make_clean_clip("motorcycle_left", ...)`` moves a virtual camera over a photograph
bundled with scikit-image instead. The torch datasets (``VRDSDataset``,
``VRDSTestDataset``, and ``vimpnet_ros.data.online.OnlineRainDataset``, which renders
training clips on the fly) are imported on first use, so rendering data needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vimpnet_ros.data.clean_clips import (
    BUNDLED_IMAGES,
    CameraMotion,
    available_bundled_images,
    bundled_image,
    make_clean_clip,
    make_clean_clips,
)
from vimpnet_ros.data.layout import (
    GREY_STREAMS,
    STREAMS,
    TEST_STREAMS,
    VideoEntry,
    VRDSIndex,
    frame_name,
    read_frame,
    scan_vrds,
    write_vrds,
)
from vimpnet_ros.data.rain import (
    RainConfig,
    RenderedVideo,
    contact_sheet,
    default_rain_config_path,
    load_rain_config,
    render_video,
    write_contact_sheet,
)
from vimpnet_ros.data.road_scene import ROAD_PRESETS, RoadSceneConfig, make_road_clip, make_road_clips

if TYPE_CHECKING:
    from vimpnet_ros.data.vrds import Augmentation, VRDSDataset, VRDSTestDataset

_LAZY = {"VRDSDataset", "VRDSTestDataset", "Augmentation"}

__all__ = [
    "BUNDLED_IMAGES",
    "GREY_STREAMS",
    "ROAD_PRESETS",
    "STREAMS",
    "TEST_STREAMS",
    "Augmentation",
    "CameraMotion",
    "RainConfig",
    "RenderedVideo",
    "RoadSceneConfig",
    "VRDSDataset",
    "VRDSIndex",
    "VRDSTestDataset",
    "VideoEntry",
    "available_bundled_images",
    "bundled_image",
    "contact_sheet",
    "default_rain_config_path",
    "frame_name",
    "load_rain_config",
    "make_clean_clip",
    "make_clean_clips",
    "make_road_clip",
    "make_road_clips",
    "read_frame",
    "render_video",
    "scan_vrds",
    "write_contact_sheet",
    "write_vrds",
]


def __getattr__(name: str) -> Any:
    """Import the torch datasets only when asked for."""
    if name in _LAZY:
        from vimpnet_ros.data import vrds

        return getattr(vrds, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
