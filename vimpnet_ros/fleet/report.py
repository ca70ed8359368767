"""The fleet report: ``fleet_report/report.json``, ``report.md`` and plots, from the bags' own reports.

It says how fast each worker went, how well the derainer did on the cameras that have ground
truth, and, for the cameras that have none, when it rained: a timeline per camera (drop-mask
coverage, streak intensity, gating state over source time) and the list of rainy segments
(bag, camera, start, end, severity) a team can use to pull rainy data out of a fleet. Sections
without content are left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vimpnet_ros.evaluation.report import AtomicFolder
from vimpnet_ros.fleet.merge import TIMELINE_JSON
from vimpnet_ros.fleet.plan import BAG_REPORT, OUTPUT_BAG, FleetOptions
from vimpnet_ros.fleet.run import FleetRun
from vimpnet_ros.pipeline.settings import NodeSettings

#: Folder of the fleet report under the output folder.
FLEET_REPORT = "fleet_report"
#: Dry spells shorter than this [s] do not split a rainy segment.
RAIN_GAP_S = 2.0
#: Severity labels by how far the rain estimate exceeds the detection thresholds (mean ratio over the segment).
SEVERITY: tuple[tuple[float, str], ...] = ((2.0, "light"), (5.0, "moderate"), (math.inf, "heavy"))
#: Timeline plots drawn at most (the JSON has every camera).
MAX_TIMELINE_PLOTS = 50


@dataclass
class RainySegment:
    """A stretch of one camera's recording where rain was detected."""

    bag: str
    camera: str
    start: str  # ISO 8601 source time (UTC)
    end: str
    start_s: float  # from the camera's first frame
    end_s: float
    frames: int
    severity: str
    rain_ratio: float  # mean over the segment of max(coverage / threshold, streak intensity / threshold)
    mean_coverage: float
    mean_streak_intensity: float


def _iso(stamp_ns: int) -> str:
    return datetime.fromtimestamp(stamp_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def rainy_segments(bag: str, timeline: dict[str, Any], settings: NodeSettings) -> list[RainySegment]:
    """Runs of rain-detected frames of one camera, joined across dry spells under :data:`RAIN_GAP_S`."""
    stamps = timeline["stamp_ns"]
    if not stamps:
        return []
    coverage_thr = max(settings.rain.rain_coverage_threshold, 1e-9)
    streak_thr = max(settings.rain.rain_streak_threshold, 1e-9)
    runs: list[list[int]] = []
    for i, detected in enumerate(timeline["rain_detected"]):
        if not detected:
            continue
        if runs and (stamps[i] - stamps[runs[-1][-1]]) / 1e9 <= RAIN_GAP_S:
            runs[-1].append(i)
        else:
            runs.append([i])
    found = []
    for run in runs:
        coverage = [timeline["raindrop_coverage"][i] for i in run]
        streak = [timeline["streak_intensity"][i] for i in run]
        ratio = sum(max(c / coverage_thr, s / streak_thr) for c, s in zip(coverage, streak, strict=True)) / len(run)
        found.append(
            RainySegment(
                bag=bag,
                camera=timeline["topic"],
                start=_iso(stamps[run[0]]),
                end=_iso(stamps[run[-1]]),
                start_s=(stamps[run[0]] - stamps[0]) / 1e9,
                end_s=(stamps[run[-1]] - stamps[0]) / 1e9,
                frames=len(run),
                severity=next(label for bound, label in SEVERITY if ratio < bound),
                rain_ratio=ratio,
                mean_coverage=sum(coverage) / len(run),
                mean_streak_intensity=sum(streak) / len(run),
            )
        )
    return found


def _worker_rows(run: FleetRun) -> list[dict[str, Any]]:
    """Per worker of this run: units, frames, busy time and frames per second of busy time."""
    rows: dict[str, dict[str, Any]] = {}
    for result in run.ran:
        row = rows.setdefault(
            result["worker"],
            {"worker": result["worker"], "host": result["host"], "units": 0, "frames": 0, "busy_s": 0.0, "cpu_s": 0.0},
        )
        row["units"] += 1
        row["frames"] += result["end"] - result["start"]
        row["busy_s"] += result["wall_s"]
        row["cpu_s"] += result["cpu_s"]
    for row in rows.values():
        row["fps"] = row["frames"] / row["busy_s"] if row["busy_s"] > 0 else None
    return sorted(rows.values(), key=lambda r: r["worker"])


def _plot_workers(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.bar([r["worker"] for r in rows], [r["fps"] or 0.0 for r in rows])
    ax.set_ylabel("frames / s (busy time)")
    ax.set_title("throughput per worker")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_timeline(path: Path, bag: str, timeline: dict[str, Any]) -> None:
    """Coverage and streak intensity over source time, gated frames and detected rain shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stamps = timeline["stamp_ns"]
    seconds = [(s - stamps[0]) / 1e9 for s in stamps]
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    ax.plot(seconds, timeline["raindrop_coverage"], linewidth=1, label="drop-mask coverage")
    ax.plot(seconds, timeline["streak_intensity"], linewidth=1, label="streak intensity")
    top = max([*timeline["raindrop_coverage"], *timeline["streak_intensity"], 1e-3]) * 1.05
    ax.fill_between(seconds, 0, top, where=timeline["rain_detected"], step="mid", alpha=0.15, label="rain detected")
    ax.fill_between(seconds, 0, top, where=timeline["gated"], step="mid", alpha=0.15, color="grey", label="gated")
    ax.set_xlabel(f"source time [s] from {_iso(stamps[0])}")
    ax.set_title(f"{bag} {timeline['topic']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_fleet_report(run: FleetRun, settings: NodeSettings, options: FleetOptions) -> dict[str, Any]:
    """Write the fleet report folder; returns what report.json holds."""
    bags, quality, timelines, rainy = [], [], [], []
    for plan in run.plans:
        folder = options.output / plan.name / BAG_REPORT
        entry: dict[str, Any] = {"name": plan.name, "path": plan.path, "units": len(plan.units), "frames": plan.frames}
        error = run.failed.get(plan.name) or next(
            (text for key, text in run.failed.items() if key.startswith(f"{plan.name}/")), None
        )
        if error or not (folder / "report.json").is_file():
            bags.append({**entry, "status": "failed", "error": error or "not finished"})
            continue
        report = json.loads((folder / "report.json").read_text())
        bags.append({**entry, "status": "done", "output_bag": str(options.output / plan.name / OUTPUT_BAG)})
        camera_timelines = json.loads((folder / TIMELINE_JSON).read_text())
        for topic in report["topics"]:
            if topic["frames_with_gt"]:
                quality.append({"bag": plan.name, "camera": topic["topic"], "frames_with_gt": topic["frames_with_gt"],
                                **{k: v for k, v in (topic.get("quality") or {}).items()}})  # fmt: skip
            elif topic["topic"] in camera_timelines:
                timeline = camera_timelines[topic["topic"]]
                timelines.append((plan.name, timeline))
                rainy += rainy_segments(plan.name, timeline, settings)
    workers = _worker_rows(run)
    frames_run = sum(r["end"] - r["start"] for r in run.ran)
    summary = {
        "bags": len(run.plans),
        "bags_done": sum(b["status"] == "done" for b in bags),
        "bags_failed": sum(b["status"] == "failed" for b in bags),
        "units": sum(len(p.units) for p in run.plans),
        "units_run": len(run.ran),
        "units_resumed": len(run.resumed),
        "units_failed": sum("/" in key for key in run.failed),
        "frames": sum(p.frames for p in run.plans),
        "frames_run": frames_run,
        "workers": run.workers,
        "wall_s": run.wall_s,
        "fps": frames_run / run.wall_s if run.wall_s > 0 and frames_run else None,
    }
    data = {
        "summary": summary,
        "settings": settings.values(),
        "segment_s": options.segment_s,
        "workers": workers,
        "bags": bags,
        "failures": run.failed,
        "quality": quality,
        "rainy_segments": [asdict(s) for s in rainy],
        "timelines": [{"bag": bag, **timeline} for bag, timeline in timelines],
    }
    with AtomicFolder(options.output / FLEET_REPORT, overwrite=True) as folder:
        figures = []
        if workers:
            _plot_workers(folder / "workers.png", workers)
            figures.append(("workers.png", "throughput per worker"))
        for i, (bag, timeline) in enumerate(timelines[:MAX_TIMELINE_PLOTS]):
            name = f"timeline_{i:03d}.png"
            _plot_timeline(folder / name, bag, timeline)
            figures.append((name, f"rain timeline: {bag} {timeline['topic']}"))
        data["figures"] = [name for name, _ in figures]
        (folder / "report.md").write_text(render_markdown(data, figures))
        (folder / "report.json").write_text(json.dumps(data, indent=1))
    return data


def render_markdown(data: dict[str, Any], figures: Sequence[tuple[str, str]]) -> str:
    """The human-readable fleet report; tables only where they have rows."""
    s = data["summary"]
    lines = ["# Fleet report", ""]
    lines.append(
        f"- {s['bags']} bags ({s['bags_done']} done, {s['bags_failed']} failed), {s['frames']} camera frames in "
        f"{s['units']} units of up to {data['segment_s']:g} s"
    )
    lines.append(
        f"- this run: {s['units_run']} units ({s['frames_run']} frames) on {s['workers']} workers in "
        f"{s['wall_s']:.1f} s ({_fmt(s['fps'])} frames/s); {s['units_resumed']} units done by an earlier run"
    )
    settings = data["settings"]
    lines.append(f"- model `{settings['model']}`, backend `{settings['backend']}`, window {settings['window_size']}")
    if data["workers"]:
        lines += ["", "## Throughput per worker", ""]
        lines.append("| worker | host | units | frames | busy [s] | CPU [s] | frames/s |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for r in data["workers"]:
            lines.append(
                f"| {r['worker']} | {r['host']} | {r['units']} | {r['frames']} | {r['busy_s']:.1f} | {r['cpu_s']:.1f} "
                f"| {_fmt(r['fps'])} |"
            )
    lines += [
        "",
        "## Bags",
        "",
        "| bag | status | units | frames | output or error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b in data["bags"]:
        where = f"`{b['output_bag']}`" if b["status"] == "done" else b["error"].replace("|", "/")
        lines.append(f"| `{b['name']}` | {b['status']} | {b['units']} | {b['frames']} | {where} |")
    if data["quality"]:
        lines += ["", "## Quality against ground truth", ""]
        lines.append(
            "| bag | camera | frames | PSNR in | PSNR out | gain [dB] | frames worse | SSIM in | SSIM out | mask IoU |"
        )
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for q in data["quality"]:
            lines.append(
                f"| `{q['bag']}` | `{q['camera']}` | {q['frames_with_gt']} | {_fmt(q.get('psnr_in'))} "
                f"| {_fmt(q.get('psnr_out'))} | {_fmt(q.get('psnr_gain'))} | {_fmt(q.get('frames_worse'))} "
                f"| {_fmt(q.get('ssim_in'), 4)} "
                f"| {_fmt(q.get('ssim_out'), 4)} | {_fmt(q.get('mask_iou'), 3)} |"
            )
    if data["timelines"]:
        lines += ["", "## Rainy segments (cameras without ground truth)", ""]
        if data["rainy_segments"]:
            lines.append("| bag | camera | start (UTC) | end (UTC) | frames | severity | coverage | streaks |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for r in data["rainy_segments"]:
                lines.append(
                    f"| `{r['bag']}` | `{r['camera']}` | {r['start']} | {r['end']} | {r['frames']} | {r['severity']} "
                    f"| {r['mean_coverage']:.3f} | {r['mean_streak_intensity']:.3f} |"
                )
        else:
            lines.append(f"No rain detected on {len(data['timelines'])} cameras.")
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{caption}]({name})" for name, caption in figures]
    return "\n".join(lines) + "\n"
