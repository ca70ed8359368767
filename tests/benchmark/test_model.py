"""The model benchmark command runs a case end to end and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from vimpnet_ros.benchmark.model import count_flops
from vimpnet_ros.cli.benchmark import main


def test_flop_count_scales_with_frames_and_area() -> None:
    small = count_flops("vimpnet_lite", 2, 64, 64)
    assert small > 0
    assert count_flops("vimpnet_lite", 2, 256, 256) > 8 * small  # 16x the area
    assert count_flops("vimpnet_lite", 4, 64, 64) > 1.8 * small
    assert count_flops("vimpnet", 2, 64, 64) > 5 * small


def test_benchmark_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    code = main(["model", "--configs", "vimpnet_lite", "--sizes", "32x32", "--precisions", "fp32",
                 "--frames", "2", "--repeats", "1", "--warmup", "0", "--output", str(output)])  # fmt: skip
    assert code == 0
    data = json.loads(output.read_text())
    (result,) = data["results"]
    assert result["status"] == "ok"
    assert result["seconds_per_clip"] > 0 and result["peak_rss_mib"] > 50 and result["gflop_per_frame"] > 0
    assert data["machine"]["logical_cpus"] >= 1
