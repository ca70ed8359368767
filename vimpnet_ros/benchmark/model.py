"""``vimpnet-ros benchmark model``: whole-clip forward time, peak memory and FLOPs per config and precision.

Every case (config x size x precision) runs in a fresh Python process so its peak
resident memory (``ru_maxrss``) is its own. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` on a forward over meta tensors (shapes
only, no arithmetic). Besides wall time the table gives the process CPU time per
clip, which stays meaningful on a machine shared with other jobs. Prints a table
and writes JSON. Torch is imported only inside the worker and ``run``; the command-line
front end is ``vimpnet_ros.cli.benchmark``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_SIZES = ("256x256", "640x384")
DEFAULT_CONFIGS = ("vimpnet", "vimpnet_lite")
DEFAULT_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class ModelBenchOptions:
    """What ``vimpnet-ros benchmark model`` measures (its options; the command line fills them)."""

    configs: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    precisions: tuple[str, ...]
    frames: int
    repeats: int
    warmup: int
    device: str
    threads: int
    timeout: float
    flops: bool
    quick: bool  # smoke run: 256x256, fp32, one repeat, no warm-up, t=3
    output: Path | None


@dataclass(frozen=True)
class ModelCase:
    """One measurement: a config at one size and precision (sent to its worker process as JSON)."""

    config: str
    width: int
    height: int
    precision: str
    frames: int
    repeats: int
    warmup: int
    device: str
    threads: int
    flops: bool


def _peak_rss_mib() -> float:
    import resource

    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / 1024 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def count_flops(config: str, frames: int, height: int, width: int) -> int:
    """FLOPs of one (1, t, 3, h, w) forward, counted on meta tensors (no compute, no memory)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vimpnet_ros.model.checkpoint import build_model

    with torch.device("meta"):
        model = build_model(config)
        lqs = torch.rand(1, frames, 3, height, width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(lqs)
    return int(counter.get_total_flops())


def run_case(case: ModelCase) -> dict[str, Any]:
    """Measure one case in this process (the worker side); the record starts with the case's fields."""
    import torch

    from vimpnet_ros.model.checkpoint import build_model

    if case.threads:
        torch.set_num_threads(case.threads)
    rss_start = _peak_rss_mib()
    device = torch.device(case.device)
    torch.manual_seed(0)
    model = build_model(case.config).to(device)
    width, height, t = case.width, case.height, case.frames
    lqs = torch.rand(1, t, 3, height, width, device=device)
    precision = case.precision
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def forward() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            model(lqs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    result: dict[str, Any] = asdict(case)
    if case.flops:
        result["gflop_per_frame"] = count_flops(case.config, t, height, width) / t / 1e9
    for _ in range(case.warmup):  # oneDNN primitive creation, allocator growth
        forward()
    times, cpu_times = [], []
    for _ in range(case.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        forward()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    times.sort()
    cpu_times.sort()
    result["seconds_per_clip"] = times[len(times) // 2]
    result["seconds_min"] = times[0]
    result["cpu_seconds_per_clip"] = cpu_times[len(cpu_times) // 2]
    result["frames_per_second"] = t / result["seconds_per_clip"]
    result["peak_rss_mib"] = _peak_rss_mib()
    result["rss_before_model_mib"] = rss_start
    if device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    if "gflop_per_frame" in result:
        result["achieved_gflops"] = result["gflop_per_frame"] * t / result["seconds_per_clip"]
    result["status"] = "ok"
    return result


def _spawn(case: ModelCase, timeout: float) -> dict[str, Any]:
    """Run one case in a fresh interpreter; a crash or timeout becomes a status, not an exception."""
    fields = asdict(case)
    command = [sys.executable, "-m", "vimpnet_ros.benchmark.model", json.dumps(fields)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**fields, "status": f"timeout after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {**fields, "status": f"failed: {tail[:200]}"}


def _table(results: list[dict[str, Any]]) -> str:
    header = (
        f"| config | size | precision | s / {results[0]['frames']}-frame clip | CPU s / clip | frames/s "
        "| peak RSS MiB | GFLOP / frame | GFLOP/s |"
    )
    lines = [header, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        size = f"{r['width']}x{r['height']}"
        if r["status"] != "ok":
            lines.append(f"| {r['config']} | {size} | {r['precision']} | {r['status']} | | | | | |")
            continue
        gflop = f"{r['gflop_per_frame']:.1f}" if "gflop_per_frame" in r else "-"
        rate = f"{r['achieved_gflops']:.1f}" if "achieved_gflops" in r else "-"
        lines.append(
            f"| {r['config']} | {size} | {r['precision']} | {r['seconds_per_clip']:.2f} | "
            f"{r['cpu_seconds_per_clip']:.2f} | {r['frames_per_second']:.2f} | {r['peak_rss_mib']:.0f} | "
            f"{gflop} | {rate} |"
        )
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    """CPU model, core count and the instruction-set flags that decide bf16 speed."""
    import torch

    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = [f for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "amx", "avx2"))]
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa_flags": sorted(set(flags)),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run(options: ModelBenchOptions) -> int:
    """Run every case, print the table, write JSON."""
    from vimpnet_ros.errors import ConfigError
    from vimpnet_ros.model.config import get_config

    for name in options.configs:
        get_config(name)
    if options.frames < 2:
        raise ConfigError("--frames must be >= 2")
    sizes, precisions, repeats, frames = options.sizes, options.precisions, options.repeats, options.frames
    if options.quick:
        sizes, precisions, repeats, frames = ((256, 256),), ("fp32",), 1, 3
    results = []
    for config in options.configs:
        for width, height in sizes:
            for precision in precisions:
                case = ModelCase(
                    config=config,
                    width=width,
                    height=height,
                    precision=precision,
                    frames=frames,
                    repeats=repeats,
                    warmup=0 if options.quick else options.warmup,
                    device=options.device,
                    threads=options.threads,
                    flops=options.flops,
                )
                result = _spawn(case, options.timeout)
                results.append(result)
                shown = f"{result['seconds_per_clip']:.2f} s/clip" if result["status"] == "ok" else result["status"]
                print(f"{config} {width}x{height} {precision}: {shown}", file=sys.stderr, flush=True)
    machine = machine_description()
    print(_table(results))
    print(f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch {machine['torch']}")
    if options.output:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
        print(f"wrote {options.output}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":  # the per-case worker: python -m vimpnet_ros.benchmark.model CASE_JSON
    print(json.dumps(run_case(ModelCase(**json.loads(sys.argv[1])))))
