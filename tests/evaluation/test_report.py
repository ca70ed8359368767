"""bag-eval reports on real bags: no ground truth, gating, plots on source time, labelled contact sheets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.bags.conftest import TINY
from vimpnet_ros.bags.images import stamp_ns
from vimpnet_ros.bags.io import BagReader, BagWriter
from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag
from vimpnet_ros.evaluation.bag_eval import BagEvalOptions, SampleFrame, evaluate_bag
from vimpnet_ros.evaluation.report import SOURCE_TIME, contact_sheet, figure, plot_data
from vimpnet_ros.pipeline.settings import load_node_settings

FRAMES = 8
WINDOW = 3
CAMERA = "/camera/image"


def _settings(checkpoint: Path, **extra: Any) -> Any:
    return load_node_settings(None, {"checkpoint": str(checkpoint), "backend": "torch", "device": "cpu", **extra})


@pytest.fixture(scope="module")
def runs(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A rainy bag with only the camera (no ground truth), evaluated with a 3-frame window and rain gating.

    Rain is never detected (thresholds out of reach): after 3 dry frames the camera is gated and probed every
    4th frame, so the run has restored, gated and warm-up frames: r r r g g g r g.
    """
    root = tmp_path_factory.mktemp("report")
    full = root / "with_gt"
    write_sample_bag(full, SampleBagConfig(**{**TINY.__dict__, "num_frames": FRAMES}))
    bag = root / "camera_only"
    with BagReader(full) as reader, BagWriter(bag, "mcap") as writer:
        for message in reader.messages([CAMERA, "/camera/camera_info"]):
            writer.write_passthrough(message.connection, message.timestamp, message.raw)
    settings = _settings(
        checkpoint,
        window_size=WINDOW,
        gating_enabled=True,
        gating_frames=3,
        gating_probe_interval=4,
        rain_streak_threshold=100.0,
        rain_coverage_threshold=1.0,
    )
    evaluate_bag(bag, root / "report", settings, BagEvalOptions(samples=3, progress=False))
    return {"bag": bag, "report": root / "report"}


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cells (header first, the --- line left out)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= {"-", " "} for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _valueless(cell: str) -> bool:
    return re.sub(r"[—/:>\-\s]", "", cell) == ""


def test_report_without_ground_truth_shows_what_is_known(runs: dict[str, Path]) -> None:
    folder = runs["report"]
    markdown = (folder / "report.md").read_text()
    report = json.loads((folder / "report.json").read_text())
    # Said once, with how to give ground truth; no quality tables.
    assert markdown.count("needs ground truth") == 1 and "`--gt TOPIC=GT_TOPIC`" in markdown
    assert "Quality against ground truth" not in markdown and "Raindrop mask against ground truth" not in markdown
    tables = _tables(markdown)
    assert len(tables) >= 3  # frames and timing, rain, source topics
    for table in tables:
        header, rows = table[0], table[1:]
        assert rows, header
        for column, name in enumerate(header):
            assert not all(_valueless(row[column]) for row in rows), f"column '{name}' has no value"
    assert not any("with GT" in table[0] for table in tables)
    (topic,) = report["topics"]
    frames = report["frames"]
    processing = [f["processing"] for f in frames]
    assert processing == ["restored"] * 3 + ["gated"] * 3 + ["restored", "gated"]
    rain = topic["rain"]
    assert (topic["frames_in"], rain["restored"], rain["gated"], rain["fallback"]) == (FRAMES, 4, 4, 0)
    assert topic["restored_fraction"] == pytest.approx(4 / FRAMES)
    restored = [f for f in frames if f["processing"] == "restored"]
    coverage = [f["raindrop_coverage"] for f in restored]
    assert rain["raindrop_coverage_mean"] == pytest.approx(np.mean(coverage))
    assert rain["raindrop_coverage_max"] == pytest.approx(max(coverage))
    assert rain["streak_intensity_mean"] == pytest.approx(np.mean([f["streak_intensity"] for f in restored]))
    assert rain["rain_detected_fraction"] == 0.0
    # How much the model changed each restored frame, known without ground truth; gated frames pass unchanged.
    changed = [f["psnr_vs_input"] for f in restored]
    assert all(value is not None and 0 < value <= 100.0 for value in changed)
    assert all(f["psnr_vs_input"] is None for f in frames if f["processing"] == "gated")
    assert rain["output_vs_input_psnr"] == pytest.approx(np.mean(changed))
    # Latency leaves out the warm-up (the frames before the window first held 3) and the gated frames.
    assert [f["window_frames"] for f in frames[:WINDOW]] == list(range(1, WINDOW + 1))
    assert topic["warmup_frames"] == WINDOW - 1
    assert [f["warmup"] for f in frames] == [True] * (WINDOW - 1) + [False] * (FRAMES - WINDOW + 1)
    warm = [f["latency_ms"] for f in restored if not f["warmup"]]
    assert len(warm) == 2 and topic["latency_ms"]["count"] == 2
    assert topic["latency_ms"]["p95"] == pytest.approx(np.percentile(warm, 95))
    assert topic["first_frame_ms"] == pytest.approx(frames[0]["latency_ms"])
    frames_table = next(t for t in tables if "warm-up frames" in t[0])
    row = dict(zip(frames_table[0], frames_table[1], strict=True))
    assert (row["restored"], row["gated"], row["warm-up frames"], row["restored [%]"]) == ("4", "4", "2", "50.0")
    assert row["latency p50 / p95 / max [ms]"].split(" / ")[1] == f"{np.percentile(warm, 95):.1f}"
    rain_table = next(t for t in tables if "raindrop mask area mean / max [% of frame]" in t[0])
    cells = dict(zip(rain_table[0], rain_table[1], strict=True))
    assert cells["raindrop mask area mean / max [% of frame]"].startswith(f"{100 * np.mean(coverage):.2f} / ")
    assert cells["gated [% of frames]"] == "50.0" and cells["rain detected [% of frames]"] == "0.0"
    assert cells["output vs input PSNR [dB]"] == f"{np.mean(changed):.2f}"


def test_plots_are_titled_and_run_on_source_time(runs: dict[str, Path]) -> None:
    import matplotlib.pyplot as plt

    folder = runs["report"]
    report = json.loads((folder / "report.json").read_text())
    frames = report["frames"]
    with BagReader(runs["bag"]) as reader:
        stamps = [stamp_ns(reader.deserialize(m).header) for m in reader.messages([CAMERA])]
    seconds = [(s - stamps[0]) / 1e9 for s in stamps]
    assert seconds[-1] == pytest.approx((FRAMES - 1) / TINY.fps)
    assert [f["time_s"] for f in frames] == pytest.approx(seconds)
    restored_s = [t for t, f in zip(seconds, frames, strict=True) if f["processing"] == "restored"]
    plots = {p.name: p for p in plot_data(frames)}
    assert sorted(plots) == ["latency.png", "rain.png", "streaks.png"]  # quality plots need ground truth
    assert report["figures"] == [*plots, "contact_sheet.png"]
    for name, plot in plots.items():
        assert (folder / name).is_file()
        assert plot.title and plot.ylabel and plot.xlabel == SOURCE_TIME
        fig = figure(plot)
        (ax,) = fig.axes
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (plot.title, SOURCE_TIME, plot.ylabel)
        for line in ax.get_lines():  # gated frames carry no fresh rain estimate: those plots skip them
            assert list(line.get_xdata()) == pytest.approx(seconds if name == "latency.png" else restored_s)
        plt.close(fig)
    latency = plots["latency.png"]
    assert [label for label, _, _ in latency.lines] == ["latency", "inference"]
    ((label, start, end),) = latency.spans  # the warm-up, shaded: frames 0 and 1, half a frame either side
    assert label.startswith("warm-up") and (start, end) == pytest.approx((-0.05, 0.15))
    rain = plots["rain.png"]
    gated = [edge for label, a, b in rain.spans if label.startswith("gated") for edge in (a, b)]
    assert gated == pytest.approx([0.25, 0.55, 0.65, 0.75])  # frames 3..5 and 7


def test_contact_sheet_rows_name_topic_and_time(runs: dict[str, Path]) -> None:
    import cv2

    report = json.loads((runs["report"] / "report.json").read_text())
    sheet = cv2.imread(str(runs["report"] / "contact_sheet.png"))
    assert report["contact_sheet_columns"] == ["rainy", "derained", "raindrop mask"]  # no empty ground-truth column
    assert sheet is not None and sheet.shape[1] == 3 * (256 + 4)
    # Two cameras at camera size, one with ground truth: the column is there, the other row says it has none.
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), np.uint8)
    mask = rng.random((720, 1280)).astype(np.float32)
    start = 1_000_000_000
    samples = [
        SampleFrame("/front/image_raw", 0, start + 500_000_000, frame, frame, mask, frame),
        SampleFrame("/rear/image_raw", 0, start + 1_250_000_000, frame, frame, mask, None),
    ]
    made = contact_sheet(samples, origin_ns=start)
    assert made.columns == ["rainy", "derained", "raindrop mask", "ground truth"]
    assert made.rows == ["/front/image_raw   t = 0.50 s", "/rear/image_raw   t = 1.25 s"]
    tile_h = round(256 * 720 / 1280)
    assert made.image.shape == (24 + 2 * (20 + tile_h + 4), 4 * 260, 3)
    for row in range(2):
        top = 24 + row * (20 + tile_h + 4)
        label = made.image[top : top + 20, :400]
        assert (label < 128).any(), "the row's label strip holds text"
    missing = made.image[24 + 20 + tile_h + 4 + 20 + 2 :, 3 * 260 + 2 : 4 * 260 - 2][:tile_h]
    assert len(np.unique(missing)) > 2, "the missing ground truth tile says so instead of being plain grey"
