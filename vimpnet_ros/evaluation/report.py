"""Evaluation reports: ``report.json``, ``report.md``, plots over source time and a contact sheet.

Written by bag-eval and the demo. The folder is assembled in a hidden temporary
folder and renamed into place at the end (:class:`AtomicFolder`), so a failed
run never leaves a report that looks complete.

A bag recorded in real rain has no ground truth. Its report shows what is known without it
(frames restored, gated or passed through, latency after the warm-up, the raindrop-mask area,
streak intensity and gating over source time) and says once why quality needs ground truth and
how to give it; tables and columns without a value are left out instead of filled with dashes.
Plots run on source time: seconds from the first frame's header stamp.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from vimpnet_ros.errors import VimpnetError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Files every report folder holds (plots only for metrics that have values).
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONTACT_SHEET = "contact_sheet.png"
#: A table cell without a value.
DASH = "—"
#: The x axis of every plot.
SOURCE_TIME = "source time [s] (header stamps, from the first frame)"
#: Said once in a report where a topic has no ground truth.
WHY_GROUND_TRUTH = (
    "Quality (PSNR and SSIM against the rain-free scene, the raindrop mask's precision, recall and IoU) needs "
    "ground truth: a clean frame and a drop mask of the same scene at the same stamps, which a drive recorded in "
    "real rain does not have. {which} To score a bag that has it, name it: `--gt TOPIC=GT_TOPIC` and "
    "`--gt-mask TOPIC=MASK_TOPIC`, or record it next to the camera as `<ns>/gt/image` and `<ns>/gt/drop_mask` "
    "(`vimpnet-ros make-sample-bag` writes a rainy bag with both)."
)


class AtomicFolder:
    """``with AtomicFolder(path) as tmp:`` write report files into ``tmp``; on success they move into ``path``.

    Files are moved one by one (``report.json`` last), replacing a previous report's
    files but keeping anything else in ``path`` (such as the output bag bag-eval puts
    there). On error the temporary folder vanishes and ``path`` is left as it was.
    """

    def __init__(self, path: str | Path, overwrite: bool = True) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self._tmp: Path | None = None

    def __enter__(self) -> Path:
        if (self.path / REPORT_JSON).exists() and not self.overwrite:
            raise VimpnetError(f"{self.path} already holds a report; remove it or choose another folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
        return self._tmp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tmp is not None
        tmp, self._tmp = self._tmp, None
        try:
            if exc_type is None:
                self.path.mkdir(parents=True, exist_ok=True)
                stale = [REPORT_JSON, REPORT_MD, CONTACT_SHEET, *PLOTS]
                for name in stale:
                    (self.path / name).unlink(missing_ok=True)
                files = sorted(tmp.iterdir(), key=lambda f: f.name == REPORT_JSON)
                for item in files:
                    item.replace(self.path / item.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _fmt(value: Any, digits: int = 2) -> str:
    """Table cell: numbers rounded, None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent(value: Any) -> Any:
    return value * 100 if isinstance(value, int | float) else None


def _empty(cell: str) -> bool:
    """A cell without a value (``—``, or ``— / — / —`` for a combined cell)."""
    return set(cell.replace("/", " ").replace("->", " ").replace(":", " ").split()) <= {DASH}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table without the columns that have no value in any row; no lines at all without rows."""
    if not rows:
        return []
    keep = [i for i in range(len(headers)) if i == 0 or not all(_empty(row[i]) for row in rows)]
    lines = ["| " + " | ".join(headers[i] for i in keep) + " |", "|" + " --- |" * len(keep)]
    lines += ["| " + " | ".join(row[i] for i in keep) + " |" for row in rows]
    return lines


def _frames_table(topics: Sequence[dict[str, Any]], any_gt: bool) -> list[str]:
    headers = (
        "topic",
        "frames in",
        "restored",
        "gated",
        "model failed",
        "undecodable",
        "restored [%]",
        "with GT",
        "warm-up frames",
        "first frame [ms]",
        "latency p50 / p95 / max [ms]",
        "inference p50 [ms]",
        "throughput [fps]",
        "output rate [Hz]",
        "rate fraction",
    )
    rows = []
    for topic in topics:
        rain, latency = topic.get("rain") or {}, topic.get("latency_ms") or {}
        inference = topic.get("inference_ms") or {}
        rows.append(
            (
                f"`{topic['topic']}`",
                _fmt(topic["frames_in"]),
                _fmt(rain.get("restored")),
                _fmt(rain.get("gated")),
                _fmt(rain.get("fallback")),
                _fmt(topic.get("bad_frames")),
                _fmt(_percent(topic.get("restored_fraction")), 1),
                _fmt(topic.get("frames_with_gt") if any_gt else None),
                _fmt(topic.get("warmup_frames")),
                _fmt(topic.get("first_frame_ms"), 1),
                f"{_fmt(latency.get('p50'), 1)} / {_fmt(latency.get('p95'), 1)} / {_fmt(latency.get('max'), 1)}",
                _fmt(inference.get("p50"), 1),
                _fmt(topic.get("throughput_fps")),
                _fmt(topic.get("output_rate_hz")),
                _fmt(topic.get("rate_fraction"), 3),
            )
        )
    return markdown_table(headers, rows)


def _rain_table(topics: Sequence[dict[str, Any]]) -> list[str]:
    headers = (
        "topic",
        "rain detected [% of frames]",
        "raindrop mask area mean / max [% of frame]",
        "streak intensity mean / max",
        "gated [% of frames]",
        "output vs input PSNR [dB]",
    )
    rows = []
    for topic in topics:
        rain = topic.get("rain") or {}
        out = topic.get("frames_out") or 0
        rows.append(
            (
                f"`{topic['topic']}`",
                _fmt(_percent(rain.get("rain_detected_fraction")), 1),
                f"{_fmt(_percent(rain.get('raindrop_coverage_mean')))} / "
                f"{_fmt(_percent(rain.get('raindrop_coverage_max')))}",
                f"{_fmt(rain.get('streak_intensity_mean'), 3)} / {_fmt(rain.get('streak_intensity_max'), 3)}",
                _fmt(100 * rain["gated"] / out if out and rain.get("gated") is not None else None, 1),
                _fmt(rain.get("output_vs_input_psnr")),
            )
        )
    return markdown_table(headers, rows)


def _quality_tables(topics: Sequence[dict[str, Any]]) -> list[str]:
    quality_rows, mask_rows = [], []
    for topic in topics:
        q = topic.get("quality") or {}
        name = f"`{topic['topic']}`"
        quality_rows.append(
            (
                name,
                _fmt(q.get("psnr_in")),
                _fmt(q.get("psnr_out")),
                _fmt(q.get("psnr_gain")),
                _worse(q),
                _fmt(q.get("ssim_in"), 4),
                _fmt(q.get("ssim_out"), 4),
                f"{_fmt(q.get('psnr_drop_in'))} -> {_fmt(q.get('psnr_drop_out'))}: {_fmt(q.get('psnr_drop_gain'))}",
                f"{_fmt(q.get('psnr_clear_in'))} -> {_fmt(q.get('psnr_clear_out'))}: {_fmt(q.get('psnr_clear_gain'))}",
            )
        )
        mask_rows.append(
            (
                name,
                _fmt(q.get("mask_precision"), 3),
                _fmt(q.get("mask_recall"), 3),
                _fmt(q.get("mask_iou"), 3),
                _fmt(q.get("mask_f1"), 3),
                _fmt(q.get("mask_target_fraction"), 4),
                _fmt(q.get("mask_predicted_fraction"), 4),
            )
        )
    quality_rows = [row for row in quality_rows if not all(_empty(cell) for cell in row[1:])]
    mask_rows = [row for row in mask_rows if not all(_empty(cell) for cell in row[1:])]
    lines: list[str] = []
    if quality_rows:
        lines += ["", "## Quality against ground truth", ""]
        lines += markdown_table(
            (
                "topic",
                "PSNR in",
                "PSNR out",
                "gain [dB]",
                "frames worse (worst gain [dB])",
                "SSIM in",
                "SSIM out",
                "in drops: PSNR in -> out: gain [dB]",
                "elsewhere: PSNR in -> out: gain [dB]",
            ),
            quality_rows,
        )
    if mask_rows:
        lines += ["", "## Raindrop mask against ground truth (threshold 0.5; pixels summed over the topic)", ""]
        lines += markdown_table(("topic", "precision", "recall", "IoU", "F1", "drops in GT", "predicted"), mask_rows)
    return lines


def _worse(quality: dict[str, Any]) -> str:
    """``frames_worse (worst_psnr_gain)``, or the empty cell without ground truth."""
    if quality.get("frames_worse") is None:
        return _fmt(None)
    return f"{quality['frames_worse']} ({_fmt(quality.get('worst_psnr_gain'))})"


def _scored(topic: dict[str, Any]) -> bool:
    """Whether any quality figure of ``topic`` has a value (it had ground truth)."""
    return any(value is not None for value in (topic.get("quality") or {}).values())


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report from :meth:`EvalReport.to_dict` (plus ``figures`` and ``contact_sheet_columns``)."""
    topics = report["topics"]
    lines = [f"# Rain removal report ({report['mode']})", ""]
    lines += [f"- source bag: `{report['source_bag']}`"]
    if report.get("output_bag"):
        lines.append(f"- output bag: `{report['output_bag']}`")
    settings = report.get("settings", {})
    lines.append(
        f"- model `{settings.get('model')}`, backend `{report.get('backend')}`, precision `{report.get('precision')}`, "
        + (f"stage-1 passes {report['stage1_passes']}, " if report.get("stage1_passes") is not None else "")
        + f"window {settings.get('window_size')}, output frame `{settings.get('output_frame')}`"
        + (f", frames restored {report['working_sizes']}" if report.get("working_sizes") else "")
    )
    lines.append(f"- wall time {report['wall_s']:.1f} s")
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    unscored = [t["topic"] for t in topics if not _scored(t)]
    if unscored:
        which = (
            "This bag has none."
            if len(unscored) == len(topics)
            else f"This bag has none for {', '.join(f'`{name}`' for name in unscored)}."
        )
        lines += ["", WHY_GROUND_TRUTH.format(which=which)]
    lines += ["", "## Frames and timing", ""]
    lines += _frames_table(topics, any_gt=len(unscored) < len(topics))
    lines += [
        "",
        "Latency and inference are over restored frames after each topic's warm-up: the frames before the model's "
        f"window first held {settings.get('window_size')} frames (they run on fewer, and the first pays the model's "
        "start-up; its latency is the first-frame column) are left out.",
    ]
    lines += ["", "## Rain seen by the model (no ground truth needed)", ""]
    lines += _rain_table(topics)
    lines += [
        "",
        "Raindrop mask area: share of the frame the published raindrop mask marks (threshold 0.5); streak intensity: "
        "mean positive intensity of the streak map; both over restored frames. Gated frames were passed through "
        "unchanged because the camera looked dry (rain gating). Output vs input: PSNR of each restored frame against "
        "its input (capped at 100 dB), how much the model changed it; on a camera without rain it should stay high.",
    ]
    lines += _quality_tables([t for t in topics if _scored(t)])
    lines += ["", "## Output topics", ""]
    for topic in topics:
        outputs = ", ".join(f"`{t}`" for t in topic.get("output_topics", {}).values())
        gts = ", ".join(f"`{t}`" for t in topic.get("gt_topics", {}).values())
        lines.append(f"- `{topic['topic']}` -> {outputs}" + (f"; ground truth: {gts}" if gts else ""))
    if report.get("topic_counts"):
        lines += ["", "## Topics in the source bag", "", "| topic | messages |", "| --- | --- |"]
        lines += [f"| `{name}` | {count} |" for name, count in sorted(report["topic_counts"].items())]
    figures = report.get("figures", [])
    if figures:
        lines += ["", "## Figures", ""]
        titles = {name: spec.title for name, spec in PLOTS.items()}
        columns = " | ".join(report.get("contact_sheet_columns") or [])
        titles[CONTACT_SHEET] = f"sample frames by topic and source time: {columns}"
        lines += [f"![{titles.get(name, name)}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PlotSpec:
    """One figure: what it shows (``series``: (record field, legend label)), and what is shaded behind it."""

    title: str
    ylabel: str
    series: tuple[tuple[str, str], ...]
    shade: str | None = None  # "gated" or "warmup": frames of that kind drawn as shaded spans
    restored_only: bool = False  # plot only frames the model restored (gated frames carry no fresh estimate)


#: Plot files: title, y label, series. Written when a series has values (quality plots need ground truth).
PLOTS: dict[str, PlotSpec] = {
    "psnr.png": PlotSpec(
        "PSNR against ground truth",
        "PSNR [dB]",
        (
            ("psnr_in", "input"),
            ("psnr_out", "output"),
            ("psnr_drop_in", "input, in drops"),
            ("psnr_drop_out", "output, in drops"),
        ),
    ),
    "ssim.png": PlotSpec("SSIM against ground truth", "SSIM", (("ssim_in", "input"), ("ssim_out", "output"))),
    "mask.png": PlotSpec(
        "Raindrop mask against ground truth (threshold 0.5)",
        "score",
        (("mask_iou", "IoU"), ("mask_precision", "precision"), ("mask_recall", "recall")),
    ),
    "rain.png": PlotSpec(
        "Raindrop mask area (gated frames shaded)",
        "share of the frame marked as raindrop",
        (("raindrop_coverage", "raindrop mask area"),),
        shade="gated",
        restored_only=True,
    ),
    "streaks.png": PlotSpec(
        "Rain streak intensity (gated frames shaded)",
        "mean positive streak intensity",
        (("streak_intensity", "streak intensity"),),
        shade="gated",
        restored_only=True,
    ),
    "latency.png": PlotSpec(
        "Latency and inference time per frame (warm-up shaded)",
        "time [ms]",
        (("latency_ms", "latency"), ("inference_ms", "inference")),
        shade="warmup",
    ),
}


@dataclass
class Plot:
    """What one figure draws: lines of (x = source time [s], y) per topic and series, and shaded x spans."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    lines: list[tuple[str, list[float], list[float]]] = field(default_factory=list)
    spans: list[tuple[str, float, float]] = field(default_factory=list)


def source_times(frames: Sequence[dict[str, Any]]) -> None:
    """Add ``time_s`` to each frame dict: seconds from the earliest header stamp among ``frames``."""
    origin = min((f["stamp_ns"] for f in frames), default=0)
    for frame in frames:
        frame["time_s"] = (frame["stamp_ns"] - origin) / 1e9


def _spans(rows: Sequence[dict[str, Any]], flag: Any) -> list[tuple[float, float]]:
    """Runs of consecutive frames with ``flag(frame)``, as source-time spans widened by half a frame on each side."""
    times = [r["time_s"] for r in rows]
    half = float(np.median(np.diff(times))) / 2 if len(times) > 1 else 0.05
    spans, start = [], None
    for index, row in enumerate(rows):
        if flag(row) and start is None:
            start = index
        if start is not None and (not flag(row) or index == len(rows) - 1):
            end = index if flag(row) else index - 1
            spans.append((times[start] - half, times[end] + half))
            start = None
    return spans


def plot_data(frames: Sequence[dict[str, Any]]) -> list[Plot]:
    """The plots that have data, from report.json frame dicts carrying ``time_s`` (see :func:`source_times`)."""
    topics = list(dict.fromkeys(f["topic"] for f in frames))
    shading = {"gated": lambda r: r.get("processing") == "gated", "warmup": lambda r: bool(r.get("warmup"))}
    span_labels = {"gated": "gated: passed through unchanged", "warmup": "warm-up (left out of the percentiles)"}
    plots = []
    for name, spec in PLOTS.items():
        plot = Plot(name, spec.title, SOURCE_TIME, spec.ylabel)
        for topic in topics:
            rows = sorted((f for f in frames if f["topic"] == topic), key=lambda f: f["time_s"])
            shown = [r for r in rows if r.get("processing", "restored") == "restored"] if spec.restored_only else rows
            for key, label in spec.series:
                points = [(r["time_s"], r[key]) for r in shown if isinstance(r.get(key), int | float)]
                points = [(x, float(y)) for x, y in points if math.isfinite(y)]
                if points:
                    xs, ys = zip(*points, strict=True)
                    plot.lines.append((f"{topic} {label}" if len(topics) > 1 else label, list(xs), list(ys)))
            if spec.shade is not None:
                label = span_labels[spec.shade] + (f" ({topic})" if len(topics) > 1 else "")
                plot.spans += [(label, a, b) for a, b in _spans(rows, shading[spec.shade])]
        if plot.lines:
            plots.append(plot)
    return plots


def figure(plot: Plot) -> Figure:
    """The matplotlib figure of ``plot`` (headless; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    for label, xs, ys in plot.lines:
        ax.plot(xs, ys, marker=".", linewidth=1, label=label)
    labelled: set[str] = set()
    for label, start, end in plot.spans:
        ax.axvspan(start, end, color="0.85", zorder=0, label=None if label in labelled else label)
        labelled.add(label)
    ax.set_title(plot.title)
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_plots(folder: Path, plots: Sequence[Plot]) -> list[str]:
    """Save each plot as ``folder/<name>``; returns the file names written."""
    import matplotlib.pyplot as plt

    for plot in plots:
        fig = figure(plot)
        fig.savefig(folder / plot.name)
        plt.close(fig)
    return [plot.name for plot in plots]


@dataclass
class ContactSheet:
    """The contact-sheet image ((H, W, 3) uint8 RGB), its column names and each row's label (topic, source time)."""

    image: np.ndarray
    columns: list[str]
    rows: list[str]


#: Contact-sheet layout: tile border, row label strip and column caption heights [px].
_BORDER, _LABEL_H, _CAPTION_H = 2, 20, 24


def _text(image: np.ndarray, text: str, x: int, y: int, scale: float = 0.45) -> None:
    import cv2

    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def contact_sheet(samples: Sequence[Any], origin_ns: int | None = None, tile_width: int = 256) -> ContactSheet:
    """Rows of rainy | derained | mask (| ground truth, when any row has it), each under a label naming its topic
    and source time (seconds from ``origin_ns``, default the earliest sample); tiles ``tile_width`` wide."""
    import cv2

    with_gt = any(sample.gt is not None for sample in samples)
    columns = ["rainy", "derained", "raindrop mask"] + (["ground truth"] if with_gt else [])
    cell = tile_width + 2 * _BORDER
    width = len(columns) * cell
    origin = origin_ns if origin_ns is not None else min((s.stamp_ns for s in samples), default=0)
    caption = np.full((_CAPTION_H, width, 3), 255, np.uint8)
    for i, name in enumerate(columns):
        _text(caption, name, i * cell + 8, 17, 0.5)
    parts, labels = [caption], []
    for sample in samples:
        height, frame_width = sample.rainy.shape[:2]
        tile_h = max(1, round(tile_width * height / frame_width))
        mask = (np.clip(np.nan_to_num(sample.mask, nan=0.0), 0, 1) * 255 + 0.5).astype(np.uint8)
        tiles = [sample.rainy, sample.derained, np.repeat(mask[..., None], 3, axis=2)]
        tiles = [cv2.resize(t, (tile_width, tile_h), interpolation=cv2.INTER_AREA) for t in tiles]
        if with_gt:
            if sample.gt is not None:
                tiles.append(cv2.resize(sample.gt, (tile_width, tile_h), interpolation=cv2.INTER_AREA))
            else:
                missing = np.full((tile_h, tile_width, 3), 200, np.uint8)
                _text(missing, "no ground truth", 8, tile_h // 2)
                tiles.append(missing)
        label = f"{sample.topic}   t = {(sample.stamp_ns - origin) / 1e9:.2f} s"
        strip = np.full((_LABEL_H, width, 3), 255, np.uint8)
        _text(strip, label, 6, 15)
        padded = [np.pad(t, ((_BORDER, _BORDER), (_BORDER, _BORDER), (0, 0)), constant_values=255) for t in tiles]
        parts += [strip, np.concatenate(padded, axis=1)]
        labels.append(label)
    if not samples:
        parts.append(np.full((32, width, 3), 255, np.uint8))
    return ContactSheet(np.concatenate(parts), columns, labels)


def write_contact_sheet(path: Path, samples: Sequence[Any], origin_ns: int | None = None) -> ContactSheet:
    """Save :func:`contact_sheet` as a PNG; returns it."""
    import cv2

    sheet = contact_sheet(samples, origin_ns)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet.image, cv2.COLOR_RGB2BGR)):
        raise VimpnetError(f"cannot write {path}")
    return sheet


def write_report(folder: Path, report: Any, records: Sequence[Any], samples: Sequence[Any]) -> dict[str, Any]:
    """Write report.json (summary + per-frame records with source time), report.md, plots and the contact sheet."""
    from vimpnet_ros.evaluation.scoring import clean_json, record_dict

    summary = report.to_dict()
    frames = [clean_json(record_dict(r)) for r in records]
    source_times(frames)
    origin = min((f["stamp_ns"] for f in frames), default=None)
    summary["source_start_ns"] = origin
    written = write_plots(folder, plot_data(frames))
    sheet = write_contact_sheet(folder / CONTACT_SHEET, samples, origin)
    summary["figures"] = [*written, CONTACT_SHEET]
    summary["contact_sheet_columns"] = sheet.columns
    (folder / REPORT_JSON).write_text(json.dumps({**summary, "frames": frames}, indent=2))
    (folder / REPORT_MD).write_text(render_markdown(summary))
    return summary
