"""Clean footage for the rain renderer: image folders, video files and rosbag image topics.

Every reader yields frames lazily as (h, w, 3) uint8 RGB, so hour-long recordings
never sit in memory; :func:`clips_from_frames` cuts a stream into fixed-length
clips at a fixed output size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from vimpnet_ros.errors import BagError, DatasetError, InputError

#: Image files read from folders.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: Message types :func:`iter_bag_frames` decodes.
IMAGE_MSGTYPES: frozenset[str] = frozenset({"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"})


def image_files(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist")
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS)


def iter_folder_frames(folder: str | Path) -> Iterator[np.ndarray]:
    """Frames of an image folder in file-name order."""
    files = image_files(folder)
    if not files:
        raise DatasetError(f"{folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot decode {path}; remove it or convert it to PNG/JPEG")
        yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def folder_videos(folder: str | Path) -> list[Path]:
    """The videos of a folder: its sub-folders that hold images, or the folder itself if it holds images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"input folder {folder} does not exist")
    if image_files(folder):
        return [folder]
    videos = sorted(sub for sub in folder.iterdir() if sub.is_dir() and image_files(sub))
    if not videos:
        raise DatasetError(f"{folder} holds neither images nor sub-folders of images")
    return videos


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Frames of a video file decoded with OpenCV (any container/codec its FFmpeg build reads)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"video file {path} does not exist")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DatasetError(f"OpenCV cannot open video {path}; convert it to MP4 (H.264) or AVI (MJPG)")
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def iter_bag_frames(path: str | Path, topic: str) -> Iterator[np.ndarray]:
    """Frames of a ``sensor_msgs/Image`` or ``CompressedImage`` topic of a rosbag (ROS 1 or ROS 2, any storage)."""
    from rosbags.highlevel import AnyReader
    from rosbags.image import message_to_cvimage
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    if not path.exists():
        raise BagError(f"rosbag {path} does not exist")
    try:
        with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
            connections = [c for c in reader.connections if c.topic == topic]
            if not connections:
                topics = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
                raise BagError(f"rosbag {path} has no topic {topic!r}; its topics: {topics}")
            wrong = sorted({c.msgtype for c in connections} - IMAGE_MSGTYPES)
            if wrong:
                raise BagError(f"topic {topic!r} in {path} carries {wrong}, not sensor_msgs Image/CompressedImage")
            for connection, _, raw in reader.messages(connections=connections):
                message = reader.deserialize(raw, connection.msgtype)
                image = message_to_cvimage(message, "rgb8")
                yield np.ascontiguousarray(image)
    except BagError:
        raise
    except Exception as error:  # rosbags raises its own reader/image errors; give one actionable message
        raise BagError(f"cannot read images from topic {topic!r} of rosbag {path}: {error}") from error


def fit_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize (keeping the aspect ratio) to cover ``size`` = (width, height), then centre-crop; None keeps it."""
    if size is None:
        return frame
    out_w, out_h = size
    height, width = frame.shape[:2]
    if (width, height) == (out_w, out_h):
        return frame
    scale = max(out_w / width, out_h / height)
    new_w, new_h = max(out_w, round(width * scale)), max(out_h, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return np.ascontiguousarray(resized[top : top + out_h, left : left + out_w])


def clips_from_frames(
    frames: Iterable[np.ndarray],
    num_frames: int,
    max_clips: int | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Cut a frame stream into consecutive clips (t, h, w, 3) uint8 of ``num_frames`` frames.

    A shorter tail is dropped. Without ``size`` every frame must match the first one.
    """
    if num_frames < 1:
        raise InputError(f"clips need at least one frame, got num_frames={num_frames}")
    produced = 0
    buffer: list[np.ndarray] = []
    first_shape: tuple[int, ...] | None = None
    for frame in frames:
        if max_clips is not None and produced >= max_clips:
            return
        frame = fit_frame(frame, size)
        if first_shape is None:
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise DatasetError(
                f"frame size changed within the input ({first_shape[1]}x{first_shape[0]} -> "
                f"{frame.shape[1]}x{frame.shape[0]}); pass an output size (--size WxH) to resize all frames"
            )
        buffer.append(frame)
        if len(buffer) == num_frames:
            yield np.stack(buffer)
            produced += 1
            buffer = []
