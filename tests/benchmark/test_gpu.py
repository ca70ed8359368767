"""The GPU check: its plan, its budget, its files, its workers; the whole command at tiny sizes on the CPU (slow).

CI has no GPU. ``--device cpu --quick`` runs the same orchestration, subprocess workers, compiled
programs, JSON and Markdown as the real check, so a first run on a GPU has run before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vimpnet_ros.benchmark import gpu
from vimpnet_ros.cli.benchmark import main as benchmark_main

ROOT = Path(__file__).resolve().parents[2]
#: Modules the check must never import: the GPU machine is promised only numpy, OpenCV, ONNX and torch.
ABSENT_THERE = ("yaml", "pytest", "rclpy", "skimage", "matplotlib", "scipy")


def _args(*argv: str) -> gpu.GpuCheckOptions:
    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    return gpu.GpuCheckOptions.from_args(parser.parse_args(["--output", "/tmp/unused", *argv]))


def test_full_plan_covers_the_targets_and_compiles_lite_first(tmp_path: Path) -> None:
    plan = gpu.Plan.from_options(_args())
    assert plan.precisions == ("fp16",) and plan.frames == 30 and plan.window == 5
    cases, compiles = gpu.build_plan(plan, tmp_path)
    ids = [case["id"] for case in cases]
    assert ids[0] == "fidelity" and cases[0]["precisions"] == ["fp32", "fp16"]
    for backend in ("torch", "compiled"):
        for model in ("vimpnet_lite", "vimpnet"):
            for size in ("640x384", "1280x720"):
                assert f"latency-{backend}-{model}-{size}-1cam-fp16" in ids
        assert f"latency-{backend}-vimpnet_lite-1280x720-4cam-fp16" in ids
    first_compiled = ids.index("latency-compiled-vimpnet_lite-640x384-1cam-fp16")
    assert ids.index("latency-torch-vimpnet-1280x720-1cam-fp16") < first_compiled  # eager first, while compiling
    # the node's default model as the engine runs it on the device (its stage-1 passes), eager, at 1280x720 and
    # 3840x2160 (both inferred at the weights' scale: the difference is the work at the frame's own size)
    assert ids.index("latency-torch-vimpnet_lite_gated-1280x720-1cam-fp16") == first_compiled - 2
    assert ids.index("latency-torch-vimpnet_lite_gated-3840x2160-1cam-fp16") == first_compiled - 1
    defaults = cases[first_compiled - 2 : first_compiled]  # at the weights' scale, as the node runs it
    assert all(case["working_scale"] == "weights" for case in defaults) and all(
        "working_scale" not in case for case in cases if case not in defaults
    )
    assert ids[-2:] == ["restart", "fidelity_compiled"]
    needed = {case["needs"] for case in cases if "needs" in case}
    assert needed == {job["id"] for job in compiles}  # every compilation is used, each once
    assert [job["model"] for job in compiles] == ["vimpnet_lite"] * 3 + ["vimpnet"] * 3
    assert compiles[-1]["weights"] == "golden" and compiles[-1]["size"] == [256, 256] and compiles[-1]["window"] == 5
    assert {job["cameras"] for job in compiles} == {1, 4}


def test_quick_cpu_plan_is_small_and_says_what_it_leaves_out(tmp_path: Path) -> None:
    plan = gpu.Plan.from_options(_args("--quick", "--device", "cpu"))
    assert plan.precisions == ("fp32",) and plan.models == ("vimpnet_lite",) and plan.cameras == 2
    cases, compiles = gpu.build_plan(plan, tmp_path)
    assert len(compiles) == 2 and cases[0]["precisions"] == ["fp32"]
    assert "quick mode" in next(case["skip"] for case in cases if case["kind"] == "fidelity_compiled")


def test_no_budget_skips_everything_and_still_writes_the_files(tmp_path: Path) -> None:
    """What a budget too small for anything leaves: both files, every case skipped with its reason, complete."""
    code = benchmark_main(["gpu", "--output", str(tmp_path), "--device", "cpu", "--quick", "--budget-s", "1"])
    assert code == 1  # nothing measured
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["complete"] is True and doc["machine"]["torch"] and doc["budget_s"] == 1.0
    statuses = {case["id"]: case["status"] for case in doc["cases"]}
    assert set(statuses.values()) == {"skipped"} and len(statuses) == 11
    assert all(case["reason"] for case in doc["cases"])
    assert "| target | measured | met |" in (tmp_path / "gpu.md").read_text()


def test_targets_and_markdown_from_records() -> None:
    cases = [
        {"kind": "latency", "status": "ok", "model": "vimpnet_lite", "size": [640, 384], "cameras": 1,
         "backend": "compiled", "precision": "fp16", "p50_ms": 4.2, "p95_ms": 5.0, "camera_hz": 238.0,
         "launches_per_push": {"launch_calls": 40, "gpu_kernels": 900}, "vs_eager": {"max_abs": 1e-3}},
        {"kind": "latency", "status": "ok", "model": "vimpnet_lite", "size": [1280, 720], "cameras": 4,
         "backend": "compiled", "precision": "fp16", "p50_ms": 40.0, "p95_ms": 41.0, "camera_hz": 25.0},
        {"kind": "restart", "id": "restart", "status": "ok", "total_s": 7.5},
        {"kind": "latency", "status": "skipped", "model": "vimpnet", "size": [640, 384], "cameras": 1,
         "backend": "compiled", "precision": "fp16", "reason": "budget"},
        {"kind": "latency", "status": "ok", "model": "vimpnet_lite_gated", "size": [1280, 720], "cameras": 1,
         "backend": "torch", "precision": "fp16", "p50_ms": 20.0, "p95_ms": 21.0, "camera_hz": 50.0,
         "stage1_passes": 2},
    ]  # fmt: skip
    rows = {row["target"].split(" <=")[0].split(" >=")[0]: row for row in gpu.target_summary(cases)}
    assert rows["vimpnet_lite 640x384"]["met"] is True and rows["vimpnet 640x384"]["met"] is None
    assert rows["4 cameras 1280x720 vimpnet_lite"]["met"] is False
    assert rows["restart with a warm cache to the first frame"]["met"] is True
    text = gpu.markdown({"machine": {"gpu": "NVIDIA H100"}, "cases": cases, "targets": gpu.target_summary(cases)})
    assert "| vimpnet_lite | 640x384 | 1 | compiled | fp16 | 4.2 | 5.0 | 238.0 | 40 | 900 |" in text
    assert "skipped: budget" in text
    assert "| vimpnet_lite_gated (stage 1 x2) | 1280x720 | 1 | torch | fp16 | 20.0 |" in text


def test_workers_import_nothing_the_gpu_machine_lacks(tmp_path: Path) -> None:
    """An eager latency worker (what every case shares) on the CPU, in a clean interpreter."""
    case = {"id": "x", "kind": "latency", "backend": "torch", "precision": "fp32", "model": "vimpnet_lite",
            "size": [40, 32], "cameras": 2, "device": "cpu", "cache_dir": str(tmp_path), "window": 3,
            "frames": 1}  # fmt: skip
    script = (
        "import json, sys\n"
        "from vimpnet_ros.benchmark import gpu\n"
        f"record = gpu.WORKERS['latency'](json.loads({json.dumps(json.dumps(case))}))\n"
        "print(json.dumps({'record': record, 'modules': sorted({m.split('.')[0] for m in sys.modules})}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=True)  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["record"]["status"] == "ok" and result["record"]["camera_hz"] > 0
    assert result["record"]["launches_per_push"]["aten_ops"] > 0
    assert not set(ABSENT_THERE) & set(result["modules"]), set(ABSENT_THERE) & set(result["modules"])


@pytest.mark.slow
def test_golden_fidelity_worker_on_cpu() -> None:
    record = gpu.WORKERS["fidelity"]({"id": "fidelity", "kind": "fidelity", "device": "cpu", "precisions": ["fp32"]})
    assert record["status"] == "ok" and record["within_fp32_tolerance"] is True
    assert set(record["errors"]["fp32"]) == {"stage1", "drop_mask", "streak_map", "output"}


@pytest.mark.slow
def test_whole_check_on_cpu_quick(tmp_path: Path) -> None:
    """The command end to end at tiny sizes: every case runs (compiled ones included) within the budget."""
    output = tmp_path / "out"
    command = [sys.executable, "-m", "vimpnet_ros.benchmark.gpu", "--output", str(output), "--device", "cpu",
               "--quick", "--budget-s", "900", "--warm-inductor-cache"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1000, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((output / "gpu.json").read_text())
    assert doc["complete"] is True
    cases = {case["id"]: case for case in doc["cases"]}
    problems = {k: c.get("error") or c.get("reason") for k, c in cases.items() if c["status"] != "ok"}
    assert set(problems) == {"fidelity_compiled"}, problems  # skipped in quick mode, with its reason
    compiled = cases["latency-compiled-vimpnet_lite-48x32-1cam-fp32"]
    assert compiled["eager_calls_while_timed"] == 0 and compiled["vs_eager"]["max_abs"] < 1e-4
    assert cases["latency-compiled-vimpnet_lite-48x32-2cam-fp32"]["vs_eager"]["max_abs"] < 1e-4
    assert cases["compile-vimpnet_lite-48x32-1cam-fp32"]["programs"] == 3
    assert cases["restart"]["compiled"] is True and cases["restart"]["total_s"] > 0
    assert cases["fidelity"]["within_fp32_tolerance"] is True
    assert "| vimpnet_lite | 48x32 | 2 | compiled | fp32 |" in (output / "gpu.md").read_text()


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("after_s", [0.0, 6.0])  # as the workers start; in the middle of a compilation
def test_a_killed_check_stops_its_workers_and_leaves_json(tmp_path: Path, after_s: float) -> None:
    """SIGTERM (a caller's timeout) mid-run: the workers are stopped, their files gone, gpu.json holds what was done.

    Only inductor's cache stays (``--warm-inductor-cache`` keeps it on purpose).
    """
    import signal
    import time

    output, cache = tmp_path / "out", tmp_path / "cache"
    command = [sys.executable, "-m", "vimpnet_ros.benchmark.gpu", "--output", str(output), "--device", "cpu",
               "--quick", "--budget-s", "900", "--cache-dir", str(cache), "--warm-inductor-cache"]  # fmt: skip
    scratch = tmp_path / "tmp"  # the check's temporary folder: worker logs, their temporary files, inductor's cache
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_processes_mentioning(str(cache))) < 3 and time.monotonic() < deadline:  # check + 2 workers
            time.sleep(0.2)
        assert len(_processes_mentioning(str(cache))) >= 3, "the workers did not start"
        time.sleep(after_s)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
    doc = json.loads((output / "gpu.json").read_text())
    assert doc["complete"] is False
    time.sleep(0.5)
    assert _processes_mentioning(str(cache)) == []
    assert [path.name for path in scratch.iterdir() if not path.name.startswith("torchinductor_")] == []
