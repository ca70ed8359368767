"""A short rainy drive as a rosbag2, with ground truth: the demo's and the tests' input.

Clean frames come from a camera driving along a procedural road
(:func:`vimpnet_ros.data.make_road_clip`, the default) or moving over a photograph bundled
with scikit-image (``source="bundled"``, :func:`vimpnet_ros.data.make_clean_clip`); the
synthetic renderer adds raindrops and rain streaks. The bag holds, per frame and at one stamp:

- ``<ns>/image`` (``sensor_msgs/Image`` rgb8) or ``<ns>/image/compressed`` (JPEG): the rainy frame;
- ``<ns>/camera_info``: a pinhole model of the virtual camera;
- ``<ns>/gt/image`` (rgb8): the clean frame; ``<ns>/gt/drop_mask`` (mono8, 0/255);
  ``<ns>/gt/streak_map`` (mono8, intensity x 255: exact, the renderer quantises to 1/255).

Everything is fixed by the seed, so the same command writes the same messages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimpnet_ros.bags.images import array_to_image, camera_info, make_header, rgb_to_compressed
from vimpnet_ros.bags.io import BagWriter
from vimpnet_ros.bags.stop import StopRequest
from vimpnet_ros.bags.typestore import make_typestore
from vimpnet_ros.errors import ConfigError

LOGGER = logging.getLogger(__name__)

#: First stamp of a sample bag (2025-01-01T00:00:00Z): fixed so bags are reproducible.
SAMPLE_START_NS = 1_735_689_600 * 1_000_000_000
#: Where a sample bag's clean frames come from.
SAMPLE_SOURCES: tuple[str, ...] = ("road", "bundled")
#: metadata.yaml custom_data key holding the JSON of the :class:`SampleBagConfig` a bag was made with.
SAMPLE_CUSTOM_KEY = "vimpnet_ros.sample_bag"


@dataclass(frozen=True)
class SampleBagConfig:
    """What :func:`write_sample_bag` renders.

    ``size`` is (width, height); ``source`` is ``road`` (a procedural drive) or ``bundled``
    (the photograph ``image``); ``namespace`` prefixes every topic; ``compressed`` stores the
    rainy frames as JPEG ``image/compressed`` instead of raw ``image``.
    """

    num_frames: int = 40
    size: tuple[int, int] = (320, 192)
    fps: float = 10.0
    seed: int = 0
    source: str = "road"
    image: str = "motorcycle_left"
    namespace: str = "/camera"
    frame_id: str = "camera_optical"
    storage: str = "mcap"
    distro: str = "kilted"
    compressed: bool = False
    jpeg_quality: int = 95
    rain_config: str | None = None

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ConfigError(f"a sample bag needs at least 1 frame, got {self.num_frames}")
        width, height = self.size
        if width < 16 or height < 16:
            raise ConfigError(f"a sample bag needs frames of at least 16x16 pixels, got {width}x{height}")
        if not self.fps > 0:
            raise ConfigError(f"a sample bag needs a positive frame rate, got {self.fps}")
        if self.source not in SAMPLE_SOURCES:
            raise ConfigError(f"sample bag source must be one of {', '.join(SAMPLE_SOURCES)}, got {self.source!r}")
        if not self.namespace.startswith("/"):
            raise ConfigError(f"sample bag namespace must be absolute (start with '/'), got {self.namespace!r}")

    def topic(self, name: str) -> str:
        """Absolute topic ``<namespace>/<name>``."""
        return f"{self.namespace.rstrip('/')}/{name}"

    @property
    def image_topic(self) -> str:
        """The rainy input topic."""
        return self.topic("image/compressed" if self.compressed else "image")


@dataclass(frozen=True)
class SampleTopics:
    """Topic names of a sample bag (what bag-eval and the demo look for)."""

    image: str
    camera_info: str
    gt_image: str
    gt_drop_mask: str
    gt_streak_map: str


def sample_topics(config: SampleBagConfig) -> SampleTopics:
    """The topics :func:`write_sample_bag` writes for ``config``."""
    return SampleTopics(
        image=config.image_topic,
        camera_info=config.topic("camera_info"),
        gt_image=config.topic("gt/image"),
        gt_drop_mask=config.topic("gt/drop_mask"),
        gt_streak_map=config.topic("gt/streak_map"),
    )


def write_sample_bag(
    path: str | Path, config: SampleBagConfig | None = None, overwrite: bool = False, stop: StopRequest | None = None
) -> SampleTopics:
    """Render a rainy clip and write it with ground truth to the bag ``path``; returns the topic names.

    With ``stop``, a signal while writing finishes the bag with the frames written so far (one
    before, with ``stop.deferred`` off while rendering, interrupts at once and leaves no bag).
    """
    from vimpnet_ros.data import load_rain_config, make_clean_clip, make_road_clip, render_video

    config = config or SampleBagConfig()
    rng = np.random.default_rng(config.seed)
    if config.source == "road":
        clean = make_road_clip(config.num_frames, config.size, rng)
    else:
        clean = make_clean_clip(config.image, config.num_frames, config.size, rng)
    video = render_video(clean, load_rain_config(config.rain_config), rng)
    topics = sample_topics(config)
    if stop is not None:
        stop.deferred = True  # from here on a signal finishes the bag with the frames written
    store = make_typestore(config.distro)
    period_ns = round(1e9 / config.fps)
    width, height = config.size
    custom = {SAMPLE_CUSTOM_KEY: json.dumps(dataclasses.asdict(config))}
    with BagWriter(
        path, storage=config.storage, typestore=store, overwrite=overwrite, custom_data=custom, distro=config.distro
    ) as writer:
        for index in range(video.num_frames):
            if stop is not None and stop.requested:
                break
            stamp = SAMPLE_START_NS + index * period_ns
            header = make_header(store, stamp, config.frame_id)
            if config.compressed:
                rainy = rgb_to_compressed(store, video.lq[index], header, config.jpeg_quality)
            else:
                rainy = array_to_image(store, video.lq[index], "rgb8", header)
            writer.write(topics.image, rainy, stamp)
            writer.write(topics.camera_info, camera_info(store, header, width, height), stamp)
            writer.write(topics.gt_image, array_to_image(store, video.gt[index], "rgb8", header), stamp)
            mask = np.where(video.drop_mask[index], np.uint8(255), np.uint8(0))
            writer.write(topics.gt_drop_mask, array_to_image(store, mask, "mono8", header), stamp)
            streak = np.round(video.streak_map[index] * 255.0).astype(np.uint8)
            writer.write(topics.gt_streak_map, array_to_image(store, streak, "mono8", header), stamp)
    LOGGER.info("wrote sample bag %s: %d frames %dx%d at %.1f fps", path, video.num_frames, width, height, config.fps)
    return topics
