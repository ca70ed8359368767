"""Clean footage sources for the renderer: image folders, video files and rosbag image topics."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

from vimpnet_ros.data.layout import scan_vrds
from vimpnet_ros.data.sources import FootageIndex, clips_from_frames, fit_frame, iter_bag_frames, iter_video_frames
from vimpnet_ros.data.synthesize import prepare_output, render_dataset, source_clips
from vimpnet_ros.errors import BagError, DatasetError, InputError


def _frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth, distinct RGB frames (video codecs keep them close to the original)."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for index in range(count):
        r = 128 + 100 * np.sin((xs + 3 * index) / 9.0)
        g = 128 + 100 * np.cos((ys + 2 * index) / 7.0)
        b = np.full_like(r, 40 + 15 * index)
        frames.append(np.stack([r, g, b], axis=-1))
    return np.clip(frames, 0, 255).astype(np.uint8)


def _write_folder(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img_{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def _write_bag(path: Path, topic: str, frames: np.ndarray, compressed: bool = False) -> None:
    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    header = types["std_msgs/msg/Header"]
    stamp = types["builtin_interfaces/msg/Time"]
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    with Writer(path, version=9) as writer:
        connection = writer.add_connection(topic, msgtype, typestore=store)
        other = writer.add_connection("/other", "std_msgs/msg/String", typestore=store)
        for index, frame in enumerate(frames):
            head = header(stamp=stamp(sec=index, nanosec=0), frame_id="camera")
            if compressed:
                ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                assert ok
                message = types[msgtype](header=head, format="png", data=data.reshape(-1))
            else:
                height, width = frame.shape[:2]
                message = types[msgtype](
                    header=head,
                    height=height,
                    width=width,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=3 * width,
                    data=frame.reshape(-1),
                )
            writer.write(connection, index * 10**9, store.serialize_cdr(message, msgtype))
            text = types["std_msgs/msg/String"](data="x")
            writer.write(other, index * 10**9 + 1, store.serialize_cdr(text, "std_msgs/msg/String"))


def test_folder_source_single_and_nested(tmp_path: Path) -> None:
    frames = _frames(7)
    _write_folder(tmp_path / "one", frames)
    clips = list(source_clips("folder", videos=5, frames=3, size=None, input_path=tmp_path / "one"))
    assert [name for name, _ in clips] == ["0000_one", "0001_one"]  # 7 frames -> two full clips of 3
    np.testing.assert_array_equal(clips[1][1], frames[3:6])
    nested = tmp_path / "nested"
    _write_folder(nested / "drive_a", frames[:4])
    _write_folder(nested / "drive_b", frames[:4])
    names = [name for name, _ in source_clips("folder", videos=3, frames=2, size=(32, 24), input_path=nested)]
    assert names == ["0000_drive_a", "0001_drive_a", "0002_drive_b"]


def test_video_file_source(tmp_path: Path) -> None:
    frames = _frames(10)
    path = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    decoded = np.stack(list(iter_video_frames(path)))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 6  # MJPG is lossy, RGB order must be right
    clips = list(source_clips("video", videos=2, frames=4, size=(32, 32), input_path=path))
    assert [clip.shape for _, clip in clips] == [(4, 32, 32, 3)] * 2
    assert clips[0][0] == "0000_drive"
    with pytest.raises(DatasetError, match="does not exist"):
        list(iter_video_frames(tmp_path / "missing.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="cannot open"):
        list(iter_video_frames(tmp_path / "junk.mp4"))


@pytest.mark.parametrize("compressed", [False, True])
def test_rosbag_topic_source(tmp_path: Path, compressed: bool) -> None:
    frames = _frames(6)
    bag = tmp_path / "bag"
    _write_bag(bag, "/camera/image", frames, compressed=compressed)
    decoded = np.stack(list(iter_bag_frames(bag, "/camera/image")))
    np.testing.assert_array_equal(decoded, frames)  # raw and PNG-compressed are lossless
    clips = list(source_clips("bag", videos=4, frames=3, size=None, input_path=bag, topic="/camera/image"))
    assert [name for name, _ in clips] == ["0000_camera_image", "0001_camera_image"]
    with pytest.raises(BagError, match="no topic '/nope'"):
        list(iter_bag_frames(bag, "/nope"))
    with pytest.raises(BagError, match="not sensor_msgs"):
        list(iter_bag_frames(bag, "/other"))


def test_fit_frame_and_clip_cutting() -> None:
    frame = _frames(1, 40, 80)[0]
    fitted = fit_frame(frame, (20, 20))
    assert fitted.shape == (20, 20, 3)
    assert fit_frame(frame, None) is frame
    mixed = [_frames(1, 40, 80)[0], _frames(1, 30, 80)[0]]
    with pytest.raises(DatasetError, match="frame size changed"):
        list(clips_from_frames(mixed, 2))
    assert len(list(clips_from_frames(mixed, 2, size=(16, 16)))) == 1


def test_source_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown source"):
        list(source_clips("camera", 1, 1, None))
    with pytest.raises(InputError, match="--input"):
        list(source_clips("video", 1, 1, None))
    with pytest.raises(InputError, match="--topic"):
        list(source_clips("bag", 1, 1, None, input_path=tmp_path))
    with pytest.raises(InputError, match="--size"):
        list(source_clips("bundled", 1, 1, None))
    with pytest.raises(InputError, match=r"unknown bundled image\(s\) \['lena'\]"):
        source_clips("bundled", 1, 1, (8, 8), images=["rocket", "lena"])


def test_render_dataset_writes_all_streams(tmp_path: Path) -> None:
    output = prepare_output(tmp_path / "out", overwrite=False)
    clips = source_clips("bundled", videos=2, frames=5, size=(48, 40), seed=9)
    summary = render_dataset(clips, output, seed=9, preview=tmp_path / "sheet.png")
    assert summary.videos == ["0000_motorcycle_left", "0001_motorcycle_right"]
    assert summary.frames == 10
    index = scan_vrds(output)
    assert [(v.name, v.num_frames, v.width, v.height) for v in index.videos] == [
        ("0000_motorcycle_left", 5, 48, 40),
        ("0001_motorcycle_right", 5, 48, 40),
    ]
    assert (output / "meta" / "render.json").is_file()
    assert cv2.imread(str(summary.preview)) is not None
    with pytest.raises(DatasetError, match="--overwrite"):
        prepare_output(output, overwrite=False)
    prepare_output(output, overwrite=True)
    assert not (output / "lq").exists()


def test_footage_index_reads_random_consecutive_clips_of_camera_size_footage(tmp_path: Path) -> None:
    # Two 1280x720 recordings in a folder of folders (6 and 3 frames) and a 10-frame video file.
    big = np.stack([cv2.resize(frame, (1280, 720)) for frame in _frames(6)])
    _write_folder(tmp_path / "drives" / "a", big)
    _write_folder(tmp_path / "drives" / "b", big[:3])
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for frame in _frames(10):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    index = FootageIndex([tmp_path / "drives", video], min_frames=4)
    assert [(r.path.name, r.count) for r in index.recordings] == [("a", 6), ("drive.avi", 10)]  # b is too short
    expected = {"a": [fit_frame(f, (64, 36)) for f in big]}
    seen = set()
    for seed in range(12):
        clip = index.clip(np.random.default_rng(seed), 4, (64, 36))
        assert clip.shape == (4, 36, 64, 3) and clip.dtype == np.uint8
        starts = [s for s in range(3) if all(np.array_equal(clip[i], expected["a"][s + i]) for i in range(4))]
        seen.add("a" if starts else "video")
        assert np.array_equal(clip, index.clip(np.random.default_rng(seed), 4, (64, 36)))  # the rng decides
    assert seen == {"a", "video"}
    with pytest.raises(DatasetError, match="no recording of at least 7 frames"):
        FootageIndex([tmp_path / "drives"], min_frames=7)
    with pytest.raises(DatasetError, match="neither an image folder nor a video file"):
        FootageIndex([tmp_path / "missing"], min_frames=1)
