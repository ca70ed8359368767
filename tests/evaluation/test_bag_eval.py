"""bag-eval on generated bags: output bag readable by two readers, report consistent with independent metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.bags.conftest import TINY, make_humble_like
from tests.engine.conftest import moving_frames
from vimpnet_ros.bags.images import array_to_image, make_header, message_to_rgb, stamp_ns
from vimpnet_ros.bags.io import BagReader, BagWriter
from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag
from vimpnet_ros.bags.typestore import make_typestore
from vimpnet_ros.errors import BagError, ConfigError
from vimpnet_ros.evaluation.bag_eval import BagEvalOptions, LiveRun, evaluate_bag, replay_rate_hz, run_bag_eval
from vimpnet_ros.pipeline.settings import load_node_settings


def _settings(checkpoint: Path, **extra: Any) -> Any:
    return load_node_settings(None, {"checkpoint": str(checkpoint), "backend": "torch", "device": "cpu", **extra})


@pytest.fixture(scope="module")
def evaluated(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``evaluated(storage)``: folder with input_<storage>, out_<storage>, report_<storage> of one bag-eval run.

    Each storage is evaluated once per module, on first use.
    """
    root = tmp_path_factory.mktemp("evaluated")
    done: set[str] = set()

    def run(storage: str) -> Path:
        if storage not in done:
            bag = root / f"input_{storage}"
            write_sample_bag(bag, SampleBagConfig(**{**TINY.__dict__, "storage": storage}))
            options = BagEvalOptions(output_bag=root / f"out_{storage}", storage=storage, progress=False)
            evaluate_bag(bag, root / f"report_{storage}", _settings(checkpoint), options)
            done.add(storage)
        return root

    return run


def _images(bag: Path, topic: str) -> dict[int, np.ndarray]:
    with BagReader(bag) as reader:
        out = {}
        for message in reader.messages([topic]):
            msg = reader.deserialize(message)
            if getattr(msg, "encoding", "") == "mono8":
                out[stamp_ns(msg.header)] = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width)
            else:
                out[stamp_ns(msg.header)] = message_to_rgb(msg, message.msgtype)
        return out


@pytest.mark.parametrize("storage", ["mcap", pytest.param("sqlite3", marks=pytest.mark.slow)])
def test_report_matches_independent_metrics(storage: str, evaluated: Callable[[str], Path]) -> None:
    root = evaluated(storage)
    report = json.loads((root / f"report_{storage}" / "report.json").read_text())
    assert report["stage1_passes"] == 2  # what the engine ran: two passes on a CPU
    assert "stage-1 passes 2," in (root / f"report_{storage}" / "report.md").read_text()
    assert report["working_sizes"] == "64x48 at 64x48"  # below the default weights' scale: its own size
    assert "frames restored 64x48 at 64x48" in (root / f"report_{storage}" / "report.md").read_text()
    (topic,) = report["topics"]
    assert (topic["topic"], topic["frames_in"], topic["frames_out"], topic["frames_with_gt"]) == (
        "/camera/image",
        TINY.num_frames,
        TINY.num_frames,
        TINY.num_frames,
    )
    source, output = root / f"input_{storage}", root / f"out_{storage}"
    gt = _images(source, "/camera/gt/image")
    rainy = _images(source, "/camera/image")
    derained = _images(output, "/camera/derained/image")
    masks = _images(output, "/camera/raindrop_mask")
    gt_masks = _images(source, "/camera/gt/drop_mask")
    assert sorted(derained) == sorted(gt)
    frames = {f["stamp_ns"]: f for f in report["frames"]}
    for stamp, clean in gt.items():
        frame = frames[stamp]
        assert frame["psnr_in"] == pytest.approx(peak_signal_noise_ratio(clean, rainy[stamp], data_range=255), rel=1e-9)
        assert frame["psnr_out"] == pytest.approx(
            peak_signal_noise_ratio(clean, derained[stamp], data_range=255), rel=1e-9
        )
        expected_ssim = structural_similarity(
            clean,
            derained[stamp],
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        assert frame["ssim_out"] == pytest.approx(expected_ssim, abs=1e-4)
        predicted, target = masks[stamp] >= 128, gt_masks[stamp] >= 128
        union = np.logical_or(predicted, target).sum()
        iou = 1.0 if union == 0 else np.logical_and(predicted, target).sum() / union
        assert frame["mask_iou"] == pytest.approx(iou)
        assert frame["latency_ms"] > 0 and frame["inference_ms"] > 0
    means = topic["quality"]
    assert means["psnr_out"] == pytest.approx(np.mean([f["psnr_out"] for f in report["frames"]]))
    assert means["psnr_gain"] == pytest.approx(means["psnr_out"] - means["psnr_in"])
    gains = [f["psnr_out"] - f["psnr_in"] for f in report["frames"]]
    assert means["frames_worse"] == sum(gain < -0.01 for gain in gains)
    assert means["worst_psnr_gain"] == pytest.approx(min(gains))
    latency = topic["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert topic["throughput_fps"] > 0
    folder = root / f"report_{storage}"
    for name in ("report.md", "psnr.png", "ssim.png", "mask.png", "latency.png", "contact_sheet.png"):
        assert (folder / name).is_file(), name
    sheet = cv2.imread(str(folder / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] >= 4 * 256
    markdown = (folder / "report.md").read_text()
    assert "| `/camera/image` | 6 | 6 | 0 | 0 | 0 | 100.0 | 6 |" in markdown
    assert "needs ground truth" not in markdown and "Quality against ground truth" in markdown
    assert f"{means['psnr_out']:.2f}" in markdown
    assert f"| {means['frames_worse']} ({means['worst_psnr_gain']:.2f}) |" in markdown


def test_output_bag_has_inputs_and_outputs_at_source_stamps(evaluated: Callable[[str], Path]) -> None:
    root = evaluated("mcap")
    source, output = root / "input_mcap", root / "out_mcap"
    with BagReader(source) as reader:
        source_times = {stamp_ns(reader.deserialize(m).header): m.timestamp for m in reader.messages(["/camera/image"])}
        source_topics = {t.name: t.count for t in reader.topics()}
    with BagReader(output) as reader:
        topics = {t.name: t.count for t in reader.topics()}
        statuses = [reader.deserialize(m) for m in reader.messages(["/camera/rain_status"])]
    assert {name: topics[name] for name in source_topics} == source_topics
    for name in ("/camera/derained/image", "/camera/raindrop_mask", "/camera/streak_map", "/camera/rain_status"):
        assert topics[name] == TINY.num_frames
    assert [s.processed_frames for s in statuses] == list(range(1, TINY.num_frames + 1))
    assert {s.model for s in statuses} == {"vimpnet_lite_gated"} and {s.backend for s in statuses} == {"torch"}
    assert [s.window_frames for s in statuses][:3] == [1, 2, 3]
    # An independent reader (mcap + mcap-ros2-support) sees the same stamps and log times.
    seen: dict[str, list[tuple[int, int]]] = {}
    with next(output.glob("*.mcap")).open("rb") as stream:
        for _, channel, message, decoded in make_reader(
            stream, decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages():
            stamp = decoded.header.stamp.sec * 1_000_000_000 + decoded.header.stamp.nanosec
            seen.setdefault(channel.topic, []).append((stamp, message.log_time))
    expected = sorted(source_times.items())
    for name in ("/camera/derained/image", "/camera/rain_status", "/camera/image"):
        assert sorted(seen[name]) == expected, name


@pytest.mark.slow
def test_bag_outputs_equal_the_engine_run_directly(evaluated: Callable[[str], Path], checkpoint: Path) -> None:
    from vimpnet_ros.engine import EngineConfig, InferenceEngine

    root = evaluated("mcap")
    engine = InferenceEngine(EngineConfig(checkpoint=checkpoint, backend="torch", device="cpu")).load()
    stream = engine.open_stream("check")
    derained = _images(root / "out_mcap", "/camera/derained/image")
    for stamp, frame in sorted(_images(root / "input_mcap", "/camera/image").items()):
        result = engine.push(stream, frame, stamp)
        np.testing.assert_array_equal(result.image, derained[stamp])


@pytest.mark.slow
def test_humble_bag_and_compressed_topic(checkpoint: Path, tmp_path: Path) -> None:
    bag = tmp_path / "humble"
    write_sample_bag(bag, SampleBagConfig(**{**TINY.__dict__, "num_frames": 3, "storage": "sqlite3"}))
    make_humble_like(bag)
    report = evaluate_bag(bag, None, _settings(checkpoint), BagEvalOptions(progress=False))
    assert report.topics[0].frames_out == 3 and report.topics[0].quality["psnr_in"] is not None
    jpeg = tmp_path / "jpeg"
    write_sample_bag(jpeg, SampleBagConfig(**{**TINY.__dict__, "num_frames": 3, "compressed": True}))
    report = evaluate_bag(
        jpeg, tmp_path / "report", _settings(checkpoint), BagEvalOptions(output_bag=tmp_path / "out", progress=False)
    )
    assert report.topics[0].topic == "/camera/image/compressed" and report.topics[0].frames_out == 3
    assert _images(tmp_path / "out", "/camera/derained/image")  # compressed input -> raw derained (bgr8)


def _assert_nothing_written(tmp_path: Path) -> None:
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("bag", "broken")]
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample bag for the error cases (never evaluated successfully, so no engine is needed)."""
    path = tmp_path_factory.mktemp("bag") / "tiny"
    write_sample_bag(path, SampleBagConfig(**{**TINY.__dict__, "num_frames": 2}))
    return path


def test_errors_are_clear_and_leave_nothing(checkpoint: Path, tmp_path: Path, tiny_bag: Path) -> None:
    settings = _settings(checkpoint)
    options = BagEvalOptions(output_bag=tmp_path / "out", progress=False)
    with pytest.raises(BagError, match=r"topic /camera/missing is not in the bag; the bag has: .*/camera/gt/image"):
        evaluate_bag(tiny_bag, tmp_path / "report", settings, options.__class__(image_topics=("/camera/missing",)))
    with pytest.raises(BagError, match="CameraInfo; bag-eval restores sensor_msgs/msg/Image"):
        evaluate_bag(tiny_bag, tmp_path / "report", settings, BagEvalOptions(image_topics=("/camera/camera_info",)))
    with pytest.raises(BagError, match="does not exist"):
        evaluate_bag(tmp_path / "nope", tmp_path / "report", settings, options)
    _assert_nothing_written(tmp_path)
    # A bag whose frames cannot be decoded fails after writing started: no output bag, no report.
    store = make_typestore()
    with BagWriter(tmp_path / "broken", "mcap", store) as writer:
        for index in range(3):
            header = make_header(store, 1_000_000_000 + index * 100_000_000, "cam")
            image = store.types["sensor_msgs/msg/Image"](
                header=header,
                height=4,
                width=4,
                encoding="yuv422",
                is_bigendian=0,
                step=8,
                data=np.zeros(32, np.uint8),
            )
            writer.write("/camera/image", image, 1_000_000_000 + index * 100_000_000)
    broken = tmp_path / "broken"
    with pytest.raises(BagError, match="no frame of /camera/image could be restored"):
        evaluate_bag(broken, tmp_path / "report", settings, options)
    _assert_nothing_written(tmp_path)


def test_cli_exit_code_and_message(tmp_path: Path, tiny_bag: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vimpnet_ros.cli import main

    code = main(["bag-eval", str(tiny_bag), "--topics", "/nope", "--report", str(tmp_path / "r")])
    assert code == 2
    error = capsys.readouterr().err
    assert "vimpnet-ros bag-eval: error: topic /nope is not in the bag" in error and "/camera/image" in error
    assert not (tmp_path / "r").exists()


def test_cli_writes_report_and_output_bag_together(
    checkpoint: Path, tmp_path: Path, tiny_bag: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vimpnet_ros.cli import main

    report = tmp_path / "report"
    args = ["bag-eval", str(tiny_bag), "--report", str(report), "--checkpoint", str(checkpoint), "--no-progress"]
    assert main([*args, "-p", "backend:=torch", "-p", "device:=cpu"]) == 0
    assert "/camera/image: 2/2 frames restored, PSNR" in capsys.readouterr().out
    assert (report / "report.json").is_file() and (report / "output_bag" / "metadata.yaml").is_file()
    # Running again needs --overwrite for the bag; the report is replaced, the new bag kept.
    assert main([*args, "-p", "backend:=torch"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "-p", "backend:=torch", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    with BagReader(report / "output_bag") as reader:
        assert {t.name: t.count for t in reader.topics()}["/camera/derained/image"] == 2


def _write_custom_bag(path: Path) -> dict[int, np.ndarray]:
    """A bag as another team records it: image_raw + clean + drop_mask names, and a 12-bit mono16 camera."""
    store = make_typestore()
    image_type = store.types["sensor_msgs/msg/Image"]
    frames = moving_frames(3, 24, 32)
    clean: dict[int, np.ndarray] = {}
    with BagWriter(path, "mcap", store) as writer:
        for k, frame in enumerate(frames):
            stamp = 2_000_000_000 + k * 100_000_000
            header = make_header(store, stamp, "front")
            gt = np.clip(frame.astype(int) + 10, 0, 255).astype(np.uint8)
            clean[stamp] = gt
            mask = np.zeros((24, 32), np.uint8)
            mask[4:10, 5:12] = 255
            ramp = (np.arange(24 * 32).reshape(24, 32) * 5).astype("<u2")
            for topic, pixels, encoding in (
                ("/camera/front/image_raw", frame, "rgb8"),
                ("/camera/front/clean", gt, "rgb8"),
                ("/camera/front/drop_mask", mask, "mono8"),
                ("/camera/ir/image", ramp, "mono16"),
            ):
                data = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
                msg = image_type(
                    header=header,
                    height=24,
                    width=32,
                    encoding=encoding,
                    is_bigendian=0,
                    step=data.size // 24,
                    data=data.copy(),
                )
                writer.write(topic, msg, stamp)
    return clean


def test_ground_truth_named_explicitly_is_scored_and_not_derained(checkpoint: Path, tmp_path: Path) -> None:
    """--gt/--gt-mask: other people's names score; GT topics are not restored; mono16 stays mono16 at 12 bits."""
    from vimpnet_ros.cli import main

    bag = tmp_path / "custom"
    clean = _write_custom_bag(bag)
    report_dir, out = tmp_path / "report", tmp_path / "out"
    args = [
        "bag-eval",
        str(bag),
        "--report",
        str(report_dir),
        "--output-bag",
        str(out),
        "--checkpoint",
        str(checkpoint),
        "--no-progress",
        "-p",
        "backend:=torch",
        "-p",
        "device:=cpu",
        "--gt",
        "/camera/front/image_raw=/camera/front/clean",
        "--gt-mask",
        "/camera/front/image_raw=/camera/front/drop_mask",
    ]
    assert main(args) == 0
    report = json.loads((report_dir / "report.json").read_text())
    topics = {t["topic"]: t for t in report["topics"]}
    assert sorted(topics) == ["/camera/front/image_raw", "/camera/ir/image"]  # clean and drop_mask not derained
    front = topics["/camera/front/image_raw"]
    assert front["frames_with_gt"] == 3 and front["gt_topics"] == {
        "image": "/camera/front/clean",
        "drop_mask": "/camera/front/drop_mask",
    }
    quality = front["quality"]
    assert quality["psnr_in"] is not None and quality["psnr_drop_in"] is not None
    assert quality["mask_target_fraction"] == pytest.approx(42 / (24 * 32))
    assert all(f["mask_recall"] is not None for f in report["frames"] if f["topic"] == "/camera/front/image_raw")
    with BagReader(out) as reader:
        names = {t.name for t in reader.topics()}
        ir = [reader.deserialize(m) for m in reader.messages(["/camera/ir/derained/image"])]
    assert "/camera/front/derained/image" in names and "/camera/front/clean/derained/image" not in names
    assert {m.encoding for m in ir} == {"mono16"}
    values = np.frombuffer(ir[-1].data.tobytes(), "<u2")
    assert values.max() <= 4095 and len(np.unique(values)) > 100  # the camera's 12-bit scale, not x257
    assert sorted(clean) == sorted(f["stamp_ns"] for f in report["frames"] if f["topic"] == "/camera/front/image_raw")
    # The camera without ground truth is named once; the quality tables hold only the one with it.
    markdown = (report_dir / "report.md").read_text()
    assert markdown.count("needs ground truth") == 1 and "This bag has none for `/camera/ir/image`." in markdown
    quality = markdown.split("## Quality against ground truth")[1].split("## Output topics")[0]
    assert "`/camera/front/image_raw`" in quality and "`/camera/ir/image`" not in quality
    assert report["contact_sheet_columns"][-1] == "ground truth"
    assert main([*args, "--overwrite", "--gt", "no-equals-sign"]) == 2


def test_replay_rate_follows_the_recorded_rate_and_speed() -> None:
    assert replay_rate_hz(11, 1.0, 1.0) == 10.0
    assert replay_rate_hz(11, 1.0, 2.0) == 20.0
    assert replay_rate_hz(11, 1.0, 0.0) == 10.0  # as fast as possible counts as the recorded rate
    assert replay_rate_hz(1, 1.0, 1.0) == 0.0 and replay_rate_hz(5, 0.0, 1.0) == 0.0


def test_live_run_from_bag_play_stats(tmp_path: Path, tiny_bag: Path) -> None:
    """The camera topic, frames played, camera rate and output namespace of a replay, from its stats file."""
    with BagReader(tiny_bag) as reader:
        camera = next(t for t in reader.topics() if t.name == "/camera/image")
        span_s = reader.duration_ns / 1e9
    stats = tmp_path / "play.json"
    stats.write_text(json.dumps({"rate": 2.0, "stamp_map": [[100, 1], [200, 2], [300, 2]]}))
    run = LiveRun.from_play_stats(tiny_bag, stats)
    assert (run.input_topic, run.output_namespace, run.frames_played) == ("/camera/image", "/camera", 2)
    assert run.stamp_map == {100: 1, 200: 2, 300: 2}
    assert run.camera_rate_hz == pytest.approx((camera.count - 1) / span_s * 2.0)
    assert LiveRun.from_play_stats(tiny_bag, stats, output_namespace="/derain").output_namespace == "/derain"
    stats.write_text(json.dumps({"stamp_map": []}))
    with pytest.raises(ConfigError, match="no stamp map"):
        LiveRun.from_play_stats(tiny_bag, stats)
    with pytest.raises(ConfigError, match="cannot read bag-play stats"):
        LiveRun.from_play_stats(tiny_bag, tmp_path / "missing.json")


def test_a_stop_signal_finishes_the_output_bag_and_the_report_with_what_was_done(
    checkpoint: Path, tmp_path: Path
) -> None:
    """A real SIGTERM to this process after 3 of 8 frames: a readable bag and a report of those 3, no debris."""
    import os
    import signal

    from vimpnet_ros.bags.stop import StopRequest

    bag = tmp_path / "input"
    write_sample_bag(bag, SampleBagConfig(**{**TINY.__dict__, "num_frames": 8}))
    output = tmp_path / "report" / "output_bag"

    class SignalAfter:
        """A progress counter that sends SIGTERM to this process once 3 frames are done."""

        def __init__(self) -> None:
            self.n = 0

        def update(self, count: int) -> None:
            self.n += count
            if self.n == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    options = BagEvalOptions(output_bag=output, progress=False)
    with StopRequest() as stop:
        run = run_bag_eval(bag, tmp_path / "report", _settings(checkpoint), options, progress=SignalAfter(), stop=stop)
    assert stop.name == "SIGTERM" and stop.exit_code == 143
    assert run.report.interrupted == {"signal": "SIGTERM", "frames_done": 3, "frames_total": 8}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["interrupted"]["frames_done"] == 3 and any("interrupted by SIGTERM" in n for n in report["notes"])
    assert "interrupted by SIGTERM after 3 of 8 frames" in (tmp_path / "report" / "report.md").read_text()
    with BagReader(output) as reader:
        counts = {t.name: t.count for t in reader.topics()}
    assert counts["/camera/derained/image"] == 3 and counts["/camera/rain_status"] == 3
    assert [p.name for p in (tmp_path / "report").iterdir() if p.name.startswith(".")] == []  # no hidden debris


def test_a_frame_decoded_smaller_is_scored_against_its_ground_truth_resized(checkpoint: Path, tmp_path: Path) -> None:
    """A 1920x1080 camera starts at its size; a 3840x2160 frame among its frames is decoded smaller and scored.

    The frame cost budget (``frame_cost_periods``, here a hundredth of a period) resizes the jump before
    decoding; its ground truth is resized to it, the report names it, and the camera's own frames (the first
    one too) keep their size.
    """
    store = make_typestore()
    small = cv2.resize(moving_frames(1, 90, 160)[0], (1920, 1080), interpolation=cv2.INTER_LINEAR)
    sizes = ((1920, 1080), (1920, 1080), (3840, 2160), (1920, 1080))
    bag = tmp_path / "jump"
    with BagWriter(bag, "mcap", store) as writer:
        for k, (width, height) in enumerate(sizes):
            stamp = 2_000_000_000 + k * 50_000_000
            clean = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
            rainy = np.clip(clean.astype(int) + (k + 1) * 6, 0, 255).astype(np.uint8)
            mask = np.zeros((height, width), np.uint8)
            mask[height // 4 : height // 2, width // 4 : width // 2] = 255
            for topic, pixels, encoding in (
                ("/camera/image", rainy, "rgb8"),
                ("/camera/gt/image", clean, "rgb8"),
                ("/camera/gt/drop_mask", mask, "mono8"),
            ):
                writer.write(topic, array_to_image(store, pixels, encoding, make_header(store, stamp, "camera")), stamp)
    report_dir, out = tmp_path / "report", tmp_path / "out"
    options = BagEvalOptions(output_bag=out, progress=False, samples=0)
    report = evaluate_bag(bag, report_dir, _settings(checkpoint, frame_cost_periods=0.01), options).to_dict()
    (topic,) = report["topics"]
    assert topic["frames_with_gt"] == 4 and topic["frames_out"] == 4
    assert any("/camera/image: 1 frame(s) decoded smaller" in note for note in report["notes"]), report["notes"]
    frames = json.loads((report_dir / "report.json").read_text())["frames"]
    assert all(f["psnr_in"] is not None and f["psnr_out"] is not None for f in frames)
    assert [f["mask_iou"] is not None for f in frames] == [True] * 4
    derained = [msg for _, msg in sorted(_images(out, "/camera/derained/image").items())]
    assert [d.shape[:2] for d in derained[:2]] + [derained[3].shape[:2]] == [(1080, 1920)] * 3
    height, width = derained[2].shape[:2]
    assert height * width < 3840 * 2160 and abs(width / height - 16 / 9) < 0.01
    assert "decoded smaller" in (report_dir / "report.md").read_text()


def test_ground_truth_of_another_aspect_stops_the_scoring_with_both_sizes() -> None:
    """Only a frame decoded smaller at its ground truth's aspect is scored against it resized; anything else is a
    wrong ground-truth topic, and silently resizing it would score the wrong picture."""
    from vimpnet_ros.errors import InputError
    from vimpnet_ros.evaluation.scoring import FrameRecord, score_frame

    gt = np.full((1080, 1920, 3), 100, np.uint8)
    mask = np.zeros((1039, 1847), np.uint8)
    record = FrameRecord(topic="/camera/image", index=0, stamp_ns=0)
    frame = np.full((1039, 1847, 3), 110, np.uint8)  # 1920x1080 decoded smaller: scored
    score_frame(record, frame, frame, mask, gt, np.zeros((1080, 1920), bool))
    assert record.gt_resized and record.psnr_in == pytest.approx(28.13, abs=0.01)
    for shape in ((1080, 1440, 3), (1200, 1920, 3), (1080, 1920)):  # 4:3, taller, a mono plane
        wrong = np.full(shape, 110, np.uint8)
        with pytest.raises(InputError, match=r"differ in size on /camera/image"):
            score_frame(FrameRecord(topic="/camera/image", index=0, stamp_ns=0), wrong, wrong,
                        np.zeros(shape[:2], np.uint8), gt, None)  # fmt: skip
