"""Clean footage for the rain renderer: image folders, video files and rosbag image topics.

Every reader yields frames lazily as (h, w, 3) uint8 RGB, so hour-long recordings
never sit in memory; :func:`clips_from_frames` cuts a stream into fixed-length
clips at a fixed output size. :class:`FootageIndex` reads a random clip of image
folders and video files instead (online training draws its clean clips from it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
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
    yield from iter_folder_frames_of(files)


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
    yield from _video_frames(path)


def _open_video(path: Path) -> cv2.VideoCapture:
    """An opened capture of ``path``; a DatasetError with a remedy when OpenCV cannot read it."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DatasetError(f"OpenCV cannot open video {path}; convert it to MP4 (H.264) or AVI (MJPG)")
    return capture


def _video_frames(path: Path, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a video file from frame ``start`` (RGB): ``count`` of them, or to the end; fewer where it ends."""
    capture = _open_video(path)
    try:
        if start:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        read = 0
        while count is None or read < count:
            ok, frame = capture.read()
            if not ok:
                return
            read += 1
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


@dataclass(frozen=True)
class Recording:
    """One recording of clean footage: an image folder (``files`` in order) or a video file (``files`` empty)."""

    path: Path
    files: tuple[Path, ...]
    count: int


class FootageIndex:
    """Random clips of clean footage: image folders (or folders of them, one recording each) and video files.

    The recordings are listed once (file names; a video's frame count from its container) and
    those shorter than ``min_frames`` are left out; a clip is ``num_frames`` consecutive frames
    of one recording, each resized to cover ``size`` and centre-cropped (:func:`fit_frame`), so
    at most one full-size frame is in memory at a time. Bags are not read here: render them
    into a VRDS folder first (``vimpnet-ros render --source bag``), which decodes them once.
    """

    def __init__(self, paths: Sequence[str | Path], min_frames: int) -> None:
        recordings: list[Recording] = []
        for raw in paths:
            path = Path(raw).expanduser()
            if path.is_file():
                recordings.append(Recording(path, (), _video_frame_count(path)))
            elif path.is_dir():
                for folder in folder_videos(path):
                    files = tuple(image_files(folder))
                    recordings.append(Recording(folder, files, len(files)))
            else:
                raise DatasetError(f"footage {path} is neither an image folder nor a video file")
        self.recordings = tuple(r for r in recordings if r.count >= min_frames)
        if not self.recordings:
            raise DatasetError(
                f"footage {[str(p) for p in paths]} holds no recording of at least {min_frames} frames "
                f"(found {sorted(r.count for r in recordings)})"
            )
        self.min_frames = min_frames

    def clip(self, rng: np.random.Generator, num_frames: int, size: tuple[int, int]) -> np.ndarray:
        """``num_frames`` consecutive frames (t, h, w, 3) uint8 RGB of a recording, drawn by window count."""
        if not 1 <= num_frames <= self.min_frames:
            raise DatasetError(f"a footage clip needs 1..{self.min_frames} frames, got {num_frames}")
        windows = np.array([r.count - num_frames + 1 for r in self.recordings], dtype=np.float64)
        recording = self.recordings[int(rng.choice(len(windows), p=windows / windows.sum()))]
        start = int(rng.integers(0, recording.count - num_frames + 1))
        if recording.files:
            frames = iter_folder_frames_of(recording.files[start : start + num_frames])
        else:
            frames = _video_frames(recording.path, start, num_frames)
        clip = [fit_frame(frame, size) for frame in frames]
        if len(clip) != num_frames:
            raise DatasetError(f"{recording.path} ended at frame {start + len(clip)} of {recording.count}")
        return np.stack(clip)


def iter_folder_frames_of(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """The given image files decoded in order (RGB)."""
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot decode {path}; remove it or convert it to PNG/JPEG")
        yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _video_frame_count(path: Path) -> int:
    """Frames of a video file as its container states them (checked when a clip is read)."""
    capture = _open_video(path)
    try:
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()
