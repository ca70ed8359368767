"""The benchmark and quality commands run end to end on tiny inputs and report sane records."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from tests.engine.conftest import CPU_ENV, moving_frames
from vimpnet_ros.benchmark.engine import (
    EngineBenchOptions,
    add_peak_fractions,
    build_cases,
    format_table,
    measure_matmul_peak,
    run_case,
)
from vimpnet_ros.cli.benchmark import TARGETS, add_engine_arguments
from vimpnet_ros.engine import EngineConfig
from vimpnet_ros.evaluation.output_frames import measure_output_frames, psnr
from vimpnet_ros.model import VimpNet


def _args(*argv: str) -> EngineBenchOptions:
    """The typed options the command line hands the engine benchmark for ``argv``."""
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    return TARGETS["engine"][3](parser.parse_args(list(argv)))


def test_cases_cover_backends_precisions_and_baselines() -> None:
    args = _args("--models", "vimpnet_lite", "--backends", "torch,onnxruntime", "--precisions", "fp32,bf16",
                 "--sizes", "256x256,1280x720")  # fmt: skip
    cases = build_cases(args)
    kinds = {(c.kind, c.backend, c.precision, c.size) for c in cases}
    assert ("stream", "onnxruntime", "fp32", (256, 256)) in kinds
    assert ("stream", "onnxruntime", "bf16", (256, 256)) not in kinds
    assert ("naive", "torch", "bf16", (1280, 720)) in kinds and ("reference", "torch", "fp32", (256, 256)) in kinds
    assert {c.tile_size for c in cases if c.size == (1280, 720)} == {256}
    assert {c.tile_size for c in cases if c.size == (256, 256)} == {0}


def test_compiled_and_multi_camera_cases() -> None:
    args = _args("--models", "vimpnet_lite", "--backends", "torch,compiled", "--precisions", "fp16", "--sizes",
                 "1280x720", "--cameras", "1,4", "--device", "cuda", "--cache-dir", "/tmp/engines")  # fmt: skip
    streams = {(c.backend, c.cameras) for c in build_cases(args) if c.kind == "stream"}
    assert streams == {("torch", 1), ("torch", 4), ("compiled", 1), ("compiled", 4)}
    assert {c.device for c in build_cases(args)} == {"cuda"}
    assert {c.cache_dir for c in build_cases(args)} == {"/tmp/engines"}
    with pytest.raises(SystemExit):
        _args("--cameras", "0")


def test_baselines_run_on_the_device_asked_for() -> None:
    """--device cuda times the naive and reference baselines on CUDA (here: none, so an error), never on the CPU."""
    args = _args("--models", "vimpnet_lite", "--backends", "torch", "--precisions", "fp16", "--sizes", "48x32",
                 "--device", "cuda", "--baseline-frames", "1")  # fmt: skip
    for case in build_cases(args):
        if case.kind != "stream":
            record = run_case(case)
            assert "CUDA" in record["error"], record


def test_matmul_peak_is_measured_for_both_precisions() -> None:
    peaks = measure_matmul_peak(threads=0, seconds=0.05, device="cpu")
    assert set(peaks) == {"fp32", "bf16"} and all(value > 0 for value in peaks.values())


def test_peak_fractions_and_floor() -> None:
    """ONNX Runtime rows take the torch graph's FLOPs; each row gets its share of the matching peak."""
    common = {"model": "vimpnet_lite", "size": (256, 256), "kind": "stream"}
    records = [
        {**common, "backend": "torch", "precision": "fp32", "mean_ms": 500.0, "gflop_per_frame": 30.0},
        {**common, "backend": "onnxruntime", "precision": "fp32", "mean_ms": 400.0},
        {**common, "backend": "torch", "precision": "bf16", "mean_ms": 1000.0, "gflop_per_frame": 30.0},
        {**common, "backend": "torch", "precision": "fp32", "error": "boom"},
    ]
    add_peak_fractions(records, {"fp32": 150.0, "bf16": 3.0})
    assert records[0]["gflops"] == pytest.approx(60.0) and records[0]["peak_fraction"] == pytest.approx(0.4)
    assert records[0]["floor_ms"] == pytest.approx(200.0)
    assert records[1]["gflop_per_frame"] == 30.0 and records[1]["gflops"] == pytest.approx(75.0)
    assert records[2]["floor_ms"] == pytest.approx(10000.0)  # against the bf16 peak
    assert "gflops" not in records[3]


def test_the_weights_scale_times_camera_sizes_as_the_node_runs_them() -> None:
    """--working-scale weights: a 1280x720 and a 1920x1080 frame inferred at the weights' scale, untiled, and the
    table says at which size; their time differs by the work done at the frame's own size only."""
    args = _args("--models", "vimpnet_lite_gated", "--backends", "torch", "--precisions", "fp32", "--sizes",
                 "1280x720,1920x1080", "--frames", "2", "--window", "3", "--working-scale", "weights",
                 "--no-baselines")  # fmt: skip
    cases = build_cases(args)
    assert {(c.working_scale, c.tile_size) for c in cases} == {("weights", 0)}
    records = [run_case(case) for case in cases]
    assert all("error" not in record for record in records), records
    assert [tuple(r["working_size"]) for r in records] == [(269, 151), (269, 151)]
    assert records[0]["gflop_per_frame"] == pytest.approx(records[1]["gflop_per_frame"], rel=0.01)
    table = format_table(records)
    assert "| 1280x720 at 269x151 | 1 | 1 |" in table and "| 1920x1080 at 269x151 |" in table
    assert _args().working_scale == "native"  # by default the network is timed at the sizes named


@pytest.mark.slow
def test_stream_naive_and_reference_records(tmp_path: Path) -> None:
    args = _args("--models", "vimpnet_lite", "--backends", "torch", "--precisions", "fp32", "--sizes", "48x32",
                 "--frames", "2", "--baseline-frames", "1", "--window", "3", "--cameras", "1,2")  # fmt: skip
    records = [run_case(case) for case in build_cases(args)]
    add_peak_fractions(records, {"fp32": 100.0, "bf16": 1.0})
    assert [r["kind"] for r in records] == ["stream", "stream", "naive", "reference"]
    assert [r.get("cameras", 1) for r in records] == [1, 2, 1, 1]
    for record in records:
        assert "error" not in record, record
        assert record["p95_ms"] >= record["p50_ms"] > 0 and record["peak_rss_mib"] > 0
        assert record["gflop_per_frame"] > 0 and record["gflops"] > 0
        assert record["peak_fraction"] == pytest.approx(record["gflops"] / 100.0)
        assert record["launches_per_push"]["aten_ops"] > 100  # the profiler's count (kernel launches on CUDA)
    assert records[0]["gflop_per_frame"] < records[2]["gflop_per_frame"]  # caching saves work
    assert records[1]["gflop_per_frame"] == pytest.approx(records[0]["gflop_per_frame"], rel=0.01)  # per frame
    assert records[3]["tiles"] == 1 and records[3]["reference_code_ms"] == 5360.0
    table = format_table(records)
    assert table.count("\n") == 5 and "| vimpnet_lite | stream | torch | fp32 | 48x32 | 2 |" in table
    json.dumps(records, default=str)


@pytest.mark.slow
def test_quality_measures_both_modes_on_every_frame(lite_model: VimpNet) -> None:
    clean = np.stack(moving_frames(5, 24, 32, seed=5))
    rainy = np.clip(clean.astype(np.int16) + 40, 0, 255).astype(np.uint8)
    config = EngineConfig(device="cpu", backend="torch", precision="fp32", window_size=3)
    report = measure_output_frames(lite_model, [(rainy, clean)], config, environment=CPU_ENV)
    assert report.frames == 5 and set(report.psnr) == {"latest", "center"}
    assert report.input_psnr == np.mean([psnr(a, b) for a, b in zip(rainy, clean, strict=True)])
    assert all(np.isfinite(v) for v in report.psnr.values())
