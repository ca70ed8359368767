"""Fleet runs on a real local Ray with two workers over small real bags."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.conftest import SEGMENT_S, FleetBags, assert_same_outputs
from vimpnet_ros.fleet.plan import FleetOptions
from vimpnet_ros.fleet.report import write_fleet_report
from vimpnet_ros.fleet.run import run_fleet


def test_fleet_equals_bag_eval_survives_a_killed_worker_and_reports_a_corrupt_bag(
    ray_cluster: Any, fleet_bags: FleetBags
) -> None:
    output = fleet_bags.root / "out_main"
    options = FleetOptions(output=output, workers=2, segment_s=SEGMENT_S, progress=False)
    pids: list[int] = []
    killed: list[int] = []
    finished: list[tuple[str, str, int]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "workers":
            pids.extend(data["pids"])
        else:
            finished.append((data["name"], data["unit"], data["pid"]))
            if not killed:  # the other worker holds a unit now (two are queued on each): kill it mid-unit
                victim = next(pid for pid in pids if pid != data["pid"])
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

    run = run_fleet([fleet_bags.inputs], fleet_bags.settings, options, on_event)
    units = {p.name: len(p.units) for p in run.plans}
    assert units["drive_gt"] >= 3 and units["drive_nogt"] >= 2 and units["drive_corrupt"] == 0
    # The corrupt bag is reported, the others finish.
    assert list(run.failed) == ["drive_corrupt"] and "drive_corrupt" in run.failed["drive_corrupt"]
    assert sorted(run.merged) == ["drive_gt", "drive_nogt"]
    # The killed worker was restarted and its units ran again: each unit finished exactly once.
    assert killed and len(finished) == len(set(finished)) == units["drive_gt"] + units["drive_nogt"]
    assert len({(name, unit) for name, unit, _ in finished}) == len(finished)
    assert {pid for _, _, pid in finished} - set(pids), "no unit ran on the restarted worker"
    assert run.frames_counted == 12 + 9  # the progress bar counted the retried unit once
    # Outputs equal single-process bag-eval's: every frame once, in the input's storage.
    for name, reference in fleet_bags.references.items():
        assert_same_outputs(output / name / "derained", reference)
    assert next((output / "drive_nogt" / "derained").glob("*.db3"))
    gt_report = json.loads((output / "drive_gt" / "report" / "report.json").read_text())
    want = json.loads((fleet_bags.root / "reference" / "drive_gt_report" / "report.json").read_text())
    for got_topic, want_topic in zip(gt_report["topics"], want["topics"], strict=True):
        for key in ("frames_in", "frames_out", "frames_with_gt", "bad_frames"):
            assert got_topic[key] == want_topic[key], key
        for key in ("psnr_in", "psnr_out", "ssim_out", "mask_iou", "worst_psnr_gain"):
            assert got_topic["quality"][key] == pytest.approx(want_topic["quality"][key], rel=1e-9), key
        assert got_topic["quality"]["frames_worse"] == want_topic["quality"]["frames_worse"]
        assert got_topic["rain"] == pytest.approx(want_topic["rain"], rel=1e-9)
        assert got_topic["warmup_frames"] == want_topic["warmup_frames"]
    assert [f["stamp_ns"] for f in gt_report["frames"]] == [f["stamp_ns"] for f in want["frames"]]
    assert [f["index"] for f in gt_report["frames"]] == list(range(12))
    # A bag without ground truth: no empty quality tables in its report.
    nogt_md = (output / "drive_nogt" / "report" / "report.md").read_text()
    assert "Quality against ground truth" not in nogt_md and "Raindrop mask (" not in nogt_md
    # The fleet report: workers, quality where there is ground truth, a rain timeline where there is none.
    report = write_fleet_report(run, fleet_bags.settings, options)
    assert [w["worker"] for w in report["workers"]] == ["worker-0", "worker-1"]
    assert sum(w["frames"] for w in report["workers"]) == 12 + 9
    assert [(q["bag"], q["camera"]) for q in report["quality"]] == [("drive_gt", "/camera/image")]
    (timeline,) = report["timelines"]
    assert timeline["bag"] == "drive_nogt" and len(timeline["stamp_ns"]) == 9
    assert timeline["stamp_ns"] == sorted(timeline["stamp_ns"])
    detected = sum(timeline["rain_detected"])
    assert sum(s["frames"] for s in report["rainy_segments"]) == detected
    markdown = (output / "fleet_report" / "report.md").read_text()
    assert "## Quality against ground truth" in markdown and "| `drive_corrupt` | failed |" in markdown
    quality = gt_report["topics"][0]["quality"]
    assert f"| {quality['psnr_gain']:.2f} | {quality['frames_worse']} |" in markdown  # gain, then frames made worse
    for figure in report["figures"]:
        assert (output / "fleet_report" / figure).is_file()
    assert "timeline_000.png" in report["figures"]
    assert not list((output / ".fleet" / "units").glob("*/*"))  # merged bags leave no unit files


def test_rerun_after_an_interrupt_recomputes_only_the_unfinished_units(ray_cluster: Any, fleet_bags: FleetBags) -> None:
    output = fleet_bags.root / "out_resume"
    options = FleetOptions(output=output, workers=2, segment_s=SEGMENT_S, progress=False)
    bag = fleet_bags.inputs / "drive_gt"

    def interrupt(kind: str, data: dict[str, Any]) -> None:
        if kind == "unit":
            raise KeyboardInterrupt  # Ctrl-C once the first unit is done

    with pytest.raises(KeyboardInterrupt):
        run_fleet([bag], fleet_bags.settings, options, interrupt)
    assert not (output / "drive_gt" / "derained").exists()
    ran: list[str] = []
    rerun = run_fleet([bag], fleet_bags.settings, options, lambda kind, data: ran.append(data.get("unit", "")))
    (plan,) = rerun.plans
    units = {unit.key for unit in plan.units}
    resumed = {key.partition("/")[2] for key in rerun.resumed}
    ran_units = {r["unit"] for r in rerun.ran}
    assert resumed and ran_units and not resumed & ran_units and resumed | ran_units == units
    assert len(rerun.ran) == len(units) - len(resumed)  # only the unfinished units ran again
    assert not rerun.failed and rerun.merged == ["drive_gt"]
    assert_same_outputs(output / "drive_gt" / "derained", fleet_bags.references["drive_gt"])
    # A third run finds the bag done and runs nothing.
    again = run_fleet([bag], fleet_bags.settings, options)
    assert again.ran == [] and len(again.resumed) == len(units)


def test_a_rerun_with_other_settings_is_refused(fleet_bags: FleetBags, tmp_path: Path) -> None:
    from vimpnet_ros.errors import ConfigError

    options = FleetOptions(output=tmp_path, segment_s=SEGMENT_S)
    (tmp_path / ".fleet").mkdir()
    (tmp_path / ".fleet" / "run.json").write_text(
        json.dumps({**options.fingerprint(fleet_bags.settings), "segment_s": 9})
    )
    with pytest.raises(ConfigError, match="segment_s"):
        run_fleet([fleet_bags.inputs / "drive_gt"], fleet_bags.settings, options)


def test_workers_are_as_many_as_the_cluster_holds(ray_cluster: Any, tmp_path: Path) -> None:
    from vimpnet_ros.errors import ConfigError
    from vimpnet_ros.fleet.run import _worker_count

    assert _worker_count(FleetOptions(output=tmp_path), units=10) == (2, 0.0)  # 2 CPUs, 1 thread each
    assert _worker_count(FleetOptions(output=tmp_path, workers=5), units=10) == (2, 0.0)
    assert _worker_count(FleetOptions(output=tmp_path, workers=1), units=10) == (1, 0.0)
    assert _worker_count(FleetOptions(output=tmp_path), units=1) == (1, 0.0)
    with pytest.raises(ConfigError, match="cannot hold one worker"):
        _worker_count(FleetOptions(output=tmp_path, threads_per_worker=4), units=10)
