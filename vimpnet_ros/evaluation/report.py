"""Evaluation reports: ``report.json``, ``report.md``, metric plots over time and a contact sheet.

Written by bag-eval and the demo. The folder is assembled in a hidden temporary
folder and renamed into place at the end (:class:`AtomicFolder`), so a failed
run never leaves a report that looks complete.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from vimpnet_ros.errors import VimpnetError

#: Files every report folder holds (plots only for metrics that have values).
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONTACT_SHEET = "contact_sheet.png"


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
                stale = [REPORT_JSON, REPORT_MD, CONTACT_SHEET, *(name for name, _ in PLOTS)]
                for name in stale:
                    (self.path / name).unlink(missing_ok=True)
                files = sorted(tmp.iterdir(), key=lambda f: f.name == REPORT_JSON)
                for item in files:
                    item.replace(self.path / item.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _fmt(value: Any, digits: int = 2) -> str:
    """Table cell: numbers rounded, None as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report from :meth:`EvalReport.to_dict`."""
    lines = [f"# Rain removal report ({report['mode']})", ""]
    lines += [f"- source bag: `{report['source_bag']}`"]
    if report.get("output_bag"):
        lines.append(f"- output bag: `{report['output_bag']}`")
    settings = report.get("settings", {})
    lines.append(
        f"- model `{settings.get('model')}`, backend `{report.get('backend')}`, precision `{report.get('precision')}`, "
        f"window {settings.get('window_size')}, output frame `{settings.get('output_frame')}`"
    )
    lines.append(f"- wall time {report['wall_s']:.1f} s")
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    lines += ["", "## Frames and timing", ""]
    lines.append(
        "| topic | frames in | frames out | with GT | bad | latency p50 / p95 / max [ms] | inference p50 [ms] "
        "| throughput [fps] | output rate [Hz] | rate fraction |"
    )
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for topic in report["topics"]:
        latency = topic.get("latency_ms") or {}
        inference = topic.get("inference_ms") or {}
        lines.append(
            f"| `{topic['topic']}` | {topic['frames_in']} | {topic['frames_out']} | {topic['frames_with_gt']} "
            f"| {topic['bad_frames']} | {_fmt(latency.get('p50'), 1)} / {_fmt(latency.get('p95'), 1)} / "
            f"{_fmt(latency.get('max'), 1)} | {_fmt(inference.get('p50'), 1)} | {_fmt(topic.get('throughput_fps'))} "
            f"| {_fmt(topic.get('output_rate_hz'))} | {_fmt(topic.get('rate_fraction'), 3)} |"
        )
    # Quality and mask tables list the topics scored against ground truth, and are left out when none is.
    scored = [t for t in report["topics"] if (t.get("quality") or {}).get("psnr_out") is not None]
    if scored:
        lines += ["", "## Quality against ground truth", ""]
        lines.append(
            "| topic | PSNR in | PSNR out | gain [dB] | SSIM in | SSIM out | in drops: gain [dB] "
            "| elsewhere: gain [dB] |"
        )
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for topic in scored:
        q = topic.get("quality") or {}
        lines.append(
            f"| `{topic['topic']}` | {_fmt(q.get('psnr_in'))} | {_fmt(q.get('psnr_out'))} | {_fmt(q.get('psnr_gain'))} "
            f"| {_fmt(q.get('ssim_in'), 4)} | {_fmt(q.get('ssim_out'), 4)} | {_fmt(q.get('psnr_drop_in'))} -> "
            f"{_fmt(q.get('psnr_drop_out'))}: {_fmt(q.get('psnr_drop_gain'))} | {_fmt(q.get('psnr_clear_in'))} -> "
            f"{_fmt(q.get('psnr_clear_out'))}: {_fmt(q.get('psnr_clear_gain'))} |"
        )
    masked = [t for t in report["topics"] if (t.get("quality") or {}).get("mask_iou") is not None]
    if masked:
        lines += ["", "## Raindrop mask (published threshold 0.5; pixels summed over the topic)", ""]
        lines.append("| topic | precision | recall | IoU | F1 | drops in GT | predicted | mean coverage |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for topic in masked:
        q = topic.get("quality") or {}
        lines.append(
            f"| `{topic['topic']}` | {_fmt(q.get('mask_precision'), 3)} | {_fmt(q.get('mask_recall'), 3)} "
            f"| {_fmt(q.get('mask_iou'), 3)} | {_fmt(q.get('mask_f1'), 3)} | {_fmt(q.get('mask_target_fraction'), 4)} "
            f"| {_fmt(q.get('mask_predicted_fraction'), 4)} | {_fmt(q.get('raindrop_coverage'), 3)} |"
        )
    lines += ["", "## Output topics", ""]
    for topic in report["topics"]:
        outputs = ", ".join(f"`{t}`" for t in topic.get("output_topics", {}).values())
        gts = ", ".join(f"`{t}`" for t in topic.get("gt_topics", {}).values()) or "none"
        lines.append(f"- `{topic['topic']}` -> {outputs}; ground truth: {gts}")
    if report.get("topic_counts"):
        lines += ["", "## Topics in the source bag", "", "| topic | messages |", "| --- | --- |"]
        lines += [f"| `{name}` | {count} |" for name, count in sorted(report["topic_counts"].items())]
    lines += ["", "## Figures", ""]
    for name, caption in PLOTS:
        lines.append(f"![{caption}]({name})")
    lines.append(f"![rainy | derained | mask | ground truth]({CONTACT_SHEET})")
    return "\n".join(lines) + "\n"


#: Plot files and captions (written when there is data for them).
PLOTS: tuple[tuple[str, str], ...] = (
    ("psnr.png", "PSNR over time"),
    ("ssim.png", "SSIM over time"),
    ("mask.png", "raindrop mask IoU, precision, recall and coverage over time"),
    ("latency.png", "latency and inference time over time"),
)


def write_plots(folder: Path, records: Sequence[dict[str, Any]]) -> list[str]:
    """Metric-over-time PNGs (matplotlib, headless); returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    topics = list(dict.fromkeys(r["topic"] for r in records))
    panels = {
        "psnr.png": (
            ("psnr_in", "input"),
            ("psnr_out", "output"),
            ("psnr_drop_in", "input, in drops"),
            ("psnr_drop_out", "output, in drops"),
            "PSNR [dB]",
        ),
        "ssim.png": (("ssim_in", "input"), ("ssim_out", "output"), "SSIM"),
        "mask.png": (
            ("mask_iou", "IoU"),
            ("mask_precision", "precision"),
            ("mask_recall", "recall"),
            ("raindrop_coverage", "coverage"),
            "raindrop mask",
        ),
        "latency.png": (("latency_ms", "latency"), ("inference_ms", "inference"), "ms"),
    }
    written = []
    for name, spec in panels.items():
        series = [item for item in spec if isinstance(item, tuple)]
        ylabel = spec[-1] if isinstance(spec[-1], str) else "value"
        fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
        drawn = False
        for topic in topics:
            rows = [r for r in records if r["topic"] == topic]
            for key, label in series:
                points = [(r["index"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
                points = [(x, y) for x, y in points if math.isfinite(y)]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker=".", linewidth=1, label=f"{topic} {label}" if len(topics) > 1 else label)
                    drawn = True
        if drawn:
            ax.set_xlabel("frame")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(folder / name)
            written.append(name)
        plt.close(fig)
    return written


def contact_sheet(samples: Sequence[Any], tile_width: int = 256) -> np.ndarray:
    """Rows of rainy | derained | mask | GT (grey when missing), each tile ``tile_width`` wide; (H, W, 3) uint8 RGB."""
    import cv2

    rows = []
    for sample in samples:
        height, width = sample.rainy.shape[:2]
        tile_h = max(1, round(tile_width * height / width))
        mask = (np.clip(np.nan_to_num(sample.mask, nan=0.0), 0, 1) * 255 + 0.5).astype(np.uint8)
        gt = sample.gt if sample.gt is not None else np.full_like(sample.rainy, 96)
        tiles = [sample.rainy, sample.derained, np.repeat(mask[..., None], 3, axis=2), gt]
        resized = [cv2.resize(t, (tile_width, tile_h), interpolation=cv2.INTER_AREA) for t in tiles]
        row = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in resized], axis=1)
        rows.append(row)
    if not rows:
        return np.full((32, 4 * (tile_width + 4), 3), 255, np.uint8)
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])


def write_contact_sheet(path: Path, samples: Sequence[Any]) -> None:
    """Save :func:`contact_sheet` with a caption row naming the columns."""
    import cv2

    sheet = contact_sheet(samples)
    caption = np.full((24, sheet.shape[1], 3), 255, np.uint8)
    quarter = sheet.shape[1] // 4
    for i, text in enumerate(("rainy", "derained", "raindrop mask", "ground truth")):
        cv2.putText(caption, text, (i * quarter + 8, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([caption, sheet])
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise VimpnetError(f"cannot write {path}")


def write_report(folder: Path, report: Any, records: Sequence[Any], samples: Sequence[Any]) -> dict[str, Any]:
    """Write report.json (summary + per-frame records), report.md, plots and the contact sheet into ``folder``."""
    from vimpnet_ros.evaluation.scoring import clean_json, record_dict

    summary = report.to_dict()
    frames = [clean_json(record_dict(r)) for r in records]
    plots = write_plots(folder, frames)
    summary["figures"] = [*plots, CONTACT_SHEET]
    write_contact_sheet(folder / CONTACT_SHEET, samples)
    (folder / REPORT_JSON).write_text(json.dumps({**summary, "frames": frames}, indent=2))
    markdown = render_markdown(summary)
    for name, caption in PLOTS:
        if name not in plots:
            markdown = markdown.replace(f"![{caption}]({name})\n", "")
    (folder / REPORT_MD).write_text(markdown)
    return summary
