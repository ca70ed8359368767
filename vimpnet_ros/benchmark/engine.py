"""``vimpnet-ros benchmark engine``: streaming latency, throughput, memory and GFLOP/s vs naive and reference.

Cases (each in a fresh subprocess so peak RSS and GPU memory belong to that case alone):

- ``stream``: the engine as the node runs it (per-frame caches, output frame decoded
  only), steady state after the window filled; wall time per push, with ``cameras``
  streams of the same size restored in one batch per push (as the node does).
- ``naive``: one whole-window ``VimpNet.forward`` per frame at the same size/tiling
  (what an engine without caches would do), on the chosen device and precision.
- ``reference``: the reference test procedure's cost per frame: one 5-frame 256x256
  clip per 256-pixel tile (32 overlap), fp32, i.e. tiles x forward(1, 5, 3, 256, 256),
  on the chosen device.

Each record carries the machine (GPU name and memory, torch/CUDA versions), the peak GPU
memory and, per frame, the kernel launches (``torch.profiler``; operator calls on CPU).
Random-initialised weights unless a checkpoint is given (timing does not depend on the
values). The quality mode instead measures PSNR of ``latest`` vs ``center`` on synthetic
rain (:mod:`vimpnet_ros.evaluation.output_frames`), which needs trained weights to mean
anything. The command-line front end is ``vimpnet_ros.cli.benchmark``.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from vimpnet_ros.benchmark.measure import (
    StreamBench,
    count_launches,
    device_memory,
    launches,
    machine_record,
    percentiles,
    synchronize,
)

LOGGER = logging.getLogger(__name__)
#: What the reference code takes on a 2-core CPU for one 5-frame 256x256 fp32 clip (the speed targets' figure).
REFERENCE_CLIP_SECONDS = 5.36
#: Defaults of the command line (the full benchmark table; slow on CPU: narrow them for a quick look).
DEFAULT_MODELS = "vimpnet_lite,vimpnet"
DEFAULT_BACKENDS = "torch,onnxruntime"
DEFAULT_PRECISIONS = "fp32,bf16"
DEFAULT_SIZES = "256x256,640x384,1280x720"


@dataclass(frozen=True)
class EngineBenchOptions:
    """What ``vimpnet-ros benchmark engine`` measures (its options; the command line fills them)."""

    models: tuple[str, ...]
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    cameras: tuple[int, ...]
    stage1_passes: tuple[int, ...]  # 0 = by device and model, as the engine picks
    working_scale: str  # native: the network at the sizes named; weights: at the weights' scale (as the node runs)
    change_upsampling: str  # how the change made at a smaller working size is enlarged onto the frame
    tile_above: int  # frames with more pixels are tiled (native working scale)
    tile_size: int
    tile_overlap: int
    tile_batch: int
    window: int
    output_frame: str
    device: str
    threads: int
    frames: int
    baseline_frames: int
    baselines: bool
    checkpoint: str | None
    cache_dir: Path | None
    json: Path | None
    quality: bool
    quality_clips: int
    quality_frames: int
    quality_size: tuple[int, int]


@dataclass(frozen=True)
class EngineCase:
    """One measurement: ``kind`` stream (the engine), naive (whole-window forward per frame) or reference."""

    kind: str
    model: str
    size: tuple[int, int]
    backend: str
    precision: str
    window: int
    output_frame: str
    tile_size: int
    tile_overlap: int
    tile_batch: int
    device: str
    checkpoint: str | None
    frames: int
    baseline_frames: int
    threads: int
    cache_dir: str | None
    change_upsampling: str  # the engine's: how the change made at a smaller working size is enlarged
    cameras: int = 1
    stage1_passes: int = 0
    working_scale: str = "native"


# -- cases (run in a child process) ----------------------------------------------------------------------


def _model(name: str, checkpoint: str | None) -> Any:
    import torch

    from vimpnet_ros.model import VimpNet, get_config
    from vimpnet_ros.model.checkpoint import load_model

    if checkpoint:
        return load_model(checkpoint, name)
    torch.manual_seed(0)
    return VimpNet(get_config(name)).eval()


def _stream_case(case: EngineCase) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    from vimpnet_ros.engine import EngineConfig, InferenceEngine

    width, height = case.size
    cameras = case.cameras
    config = EngineConfig(
        model=case.model, backend=case.backend, precision=case.precision, device=case.device,
        window_size=case.window, output_frame=case.output_frame, tile_size=case.tile_size,
        tile_overlap=case.tile_overlap, tile_batch=max(case.tile_batch, cameras),
        engine_cache_dir=case.cache_dir, cpu_threads=case.threads, stage1_passes=case.stage1_passes,
        working_scale=case.working_scale, change_upsampling=case.change_upsampling,
    )  # fmt: skip
    engine = InferenceEngine(config).load(_model(case.model, case.checkpoint))
    bench = StreamBench(engine, width, height, cameras, case.frames + 2)
    record = {**bench.record(case.frames), "prepare_s": bench.prepare_s, "cameras": cameras,
              "stage1_passes": engine.stage1_passes_for(width, height),
              "working_size": engine.working_size(width, height)}  # fmt: skip
    if case.backend == "torch":
        with FlopCounterMode(display=False) as counter:
            bench.push()
        record["gflop_per_frame"] = counter.get_total_flops() / 1e9 / cameras
    status = getattr(engine.backend, "status", None)
    if callable(status):
        record["backend_status"] = status()
    record["tiles"] = engine.geometry_for(height, width).num_tiles
    record.update(device_memory(engine.device))
    engine.close()
    return record


def _naive_case(case: EngineCase) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vimpnet_ros.engine import EngineConfig, Environment, FrameGeometry, autocast_dtype, resolve_device

    width, height = case.size
    if case.threads:
        torch.set_num_threads(case.threads)
    device = torch.device(resolve_device(case.device, Environment.probe()))
    model = _model(case.model, case.checkpoint).to(device)
    if case.kind == "reference":  # one 5-frame 256x256 clip per 256 tile (32 overlap), fp32
        tiles = FrameGeometry.plan(height, width, EngineConfig(tile_size=256, tile_overlap=32)).num_tiles
        clip = torch.rand(1, 5, 3, 256, 256, device=device)
        precision = "fp32"
    else:
        geometry = FrameGeometry.plan(height, width, EngineConfig(tile_size=case.tile_size,
                                                                  tile_overlap=case.tile_overlap))  # fmt: skip
        tiles = geometry.num_tiles
        ph, pw = geometry.padded_shape
        clip = torch.rand(min(tiles, case.tile_batch), case.window, 3, ph, pw, device=device)
        precision = case.precision
    chunks = tiles if case.kind == "reference" else -(-tiles // clip.shape[0])
    dtype = autocast_dtype(precision)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(clip)
        synchronize(device)

    forward()
    times = []
    for _ in range(case.baseline_frames):
        start = time.perf_counter()
        forward()
        times.append((time.perf_counter() - start) * 1000.0 * chunks)
    with FlopCounterMode(display=False) as counter:
        forward()
    record = percentiles(times)
    record["gflop_per_frame"] = counter.get_total_flops() * chunks / 1e9
    record["launches_per_push"] = {k: v * chunks for k, v in count_launches(forward, device).items()}
    record["tiles"] = tiles
    record.update(device_memory(device))
    if case.kind == "reference":
        record["reference_code_ms"] = REFERENCE_CLIP_SECONDS * 1000.0 * tiles
    return record


def measure_matmul_peak(threads: int, seconds: float = 1.0, device: str = "cpu") -> dict[str, float]:
    """GFLOP/s of a square matmul per precision on ``device``: the machine's floor for these graphs.

    CPU: fp32 (1024) and bf16 (256); CUDA: fp32, bf16 and fp16 (4096). A convolution graph
    cannot beat the dense matmul rate, so ``GFLOP/frame / peak`` is the best latency this
    machine allows for a model at a size.
    """
    import torch

    from vimpnet_ros.engine import Environment, resolve_device

    if threads:
        torch.set_num_threads(threads)
    target = torch.device(resolve_device(device, Environment.probe()))
    if target.type == "cuda":
        plan = (("fp32", torch.float32, 4096), ("bf16", torch.bfloat16, 4096), ("fp16", torch.float16, 4096))
    else:
        plan = (("fp32", torch.float32, 1024), ("bf16", torch.bfloat16, 256))
    peaks = {}
    for name, dtype, n in plan:
        a, b = torch.rand(n, n, dtype=dtype, device=target), torch.rand(n, n, dtype=dtype, device=target)
        a @ b  # warm-up
        synchronize(target)
        count, start = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - start < seconds:
            a @ b
            count += 1
            if target.type == "cuda" and count % 10 == 0:
                synchronize(target)
        synchronize(target)
        peaks[name] = 2.0 * n**3 * count / (time.perf_counter() - start) / 1e9
    return peaks


def add_peak_fractions(records: list[dict[str, Any]], peaks: dict[str, float]) -> None:
    """Give ONNX Runtime rows the torch graph's FLOPs; add each row's share of the matmul peak and its floor."""
    flops = {
        (r["model"], tuple(r["size"]), r["kind"]): r["gflop_per_frame"]
        for r in records
        if r["backend"] == "torch" and "gflop_per_frame" in r
    }
    for record in records:
        if "mean_ms" not in record:
            continue
        gflop = record.setdefault(
            "gflop_per_frame", flops.get((record["model"], tuple(record["size"]), record["kind"]))
        )
        if gflop is None:
            continue
        record["gflops"] = gflop / (record["mean_ms"] / 1000.0)
        peak = peaks.get(record["precision"]) or peaks.get("fp32")
        if peak:
            record["peak_fraction"] = record["gflops"] / peak
            record["floor_ms"] = gflop / peak * 1000.0


def run_case(case: EngineCase) -> dict[str, Any]:
    """Run one case and add the process's peak RSS (for the subprocess: that case alone); the case's fields first."""
    logging.basicConfig(level=logging.ERROR)
    try:
        record = _stream_case(case) if case.kind == "stream" else _naive_case(case)
    except Exception as error:
        record = {"error": f"{type(error).__name__}: {error}"}
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    fields = {k: v for k, v in asdict(case).items() if k != "checkpoint"}
    return {**fields, **record}


def build_cases(options: EngineBenchOptions) -> list[EngineCase]:
    """Every (kind, model, backend, precision, size) combination asked for."""
    from vimpnet_ros.engine import REGISTRY

    cases = []
    for model in options.models:
        for width, height in options.sizes:
            tiled = options.working_scale == "native" and width * height > options.tile_above
            common = EngineCase(
                kind="stream", model=model, size=(width, height), backend="torch", precision="fp32",
                window=options.window, output_frame=options.output_frame,
                tile_size=options.tile_size if tiled else 0, tile_overlap=options.tile_overlap,
                tile_batch=options.tile_batch, device=options.device, checkpoint=options.checkpoint,
                frames=options.frames, baseline_frames=options.baseline_frames, threads=options.threads,
                cache_dir=str(options.cache_dir) if options.cache_dir else None, working_scale=options.working_scale,
                change_upsampling=options.change_upsampling,
            )  # fmt: skip
            for backend in options.backends:
                runs = REGISTRY[backend].precisions if backend in REGISTRY else options.precisions
                for precision in (p for p in options.precisions if p in runs):
                    cases += [
                        replace(common, backend=backend, precision=precision, cameras=n, stage1_passes=passes)
                        for n in options.cameras
                        for passes in options.stage1_passes
                    ]
            if options.baselines:
                cases += [replace(common, kind="naive", precision=precision) for precision in options.precisions]
                cases.append(replace(common, kind="reference"))
    return cases


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_table(records: list[dict[str, Any]]) -> str:
    """Markdown table of the records (README-ready)."""
    header = ("| model | case | backend | precision | size | cameras | tiles | p50 ms | p95 ms | pushes/s "
              "| launches/push | peak RSS MiB | GFLOP/frame | GFLOP/s | % of matmul peak | floor ms |")  # fmt: skip
    lines = [header, "|" + " --- |" * 16]
    for r in records:
        size = "x".join(map(str, r["size"]))
        if tuple(r.get("working_size", r["size"])) != tuple(r["size"]):
            size += " at " + "x".join(map(str, r["working_size"]))
        cameras = r.get("cameras", 1)
        kind = r["kind"] + (f", stage 1 x{r['stage1_passes']}" if r.get("stage1_passes", 1) > 1 else "")
        if "error" in r:
            lines.append(f"| {r['model']} | {kind} | {r['backend']} | {r['precision']} | {size} | {cameras} | | "
                         f"error: {r['error'][:80]} | | | | | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {r['model']} | {kind} | {r['backend']} | {r['precision']} | {size} | {cameras} | "
            f"{r.get('tiles', 1)} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.2f} | "
            f"{_number(launches(r), 0)} | {r['peak_rss_mib']:.0f} | "
            f"{_number(r.get('gflop_per_frame'))} | {_number(r.get('gflops'))} | "
            f"{_number(100.0 * r['peak_fraction'] if 'peak_fraction' in r else None)} | "
            f"{_number(r.get('floor_ms'), 0)} |"
        )
    return "\n".join(lines)


def _run_quality(options: EngineBenchOptions) -> int:
    from vimpnet_ros.engine import EngineConfig
    from vimpnet_ros.evaluation.output_frames import measure_output_frames, synthetic_clips

    model_name = options.models[0]
    if not options.checkpoint:
        LOGGER.warning("no --checkpoint: random weights, so these PSNR figures say nothing about quality")
    clips = synthetic_clips(options.quality_clips, options.quality_frames, options.quality_size)
    config = EngineConfig(
        model=model_name,
        backend=options.backends[0],
        precision=options.precisions[0],
        device=options.device,
        window_size=options.window,
        cpu_threads=options.threads,
    )
    report = measure_output_frames(_model(model_name, options.checkpoint), clips, config)
    print(f"input PSNR {report.input_psnr:.2f} dB over {report.frames} frames of {report.clips} clips")
    for mode, value in report.psnr.items():
        print(f"{mode:>6}: {value:.2f} dB")
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps({"model": model_name, **report.as_dict()}, indent=1))
    return 0


def run(options: EngineBenchOptions) -> int:
    """Run every case in its own process; print a Markdown table; optionally write JSON."""
    if options.quality:
        return _run_quality(options)
    records = []
    cases = build_cases(options)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        peaks = pool.submit(measure_matmul_peak, options.threads, 1.0, options.device).result()
        machine = pool.submit(machine_record, options.device).result()
    for index, case in enumerate(cases, 1):
        LOGGER.info("case %d/%d: %s %s %s %s %s", index, len(cases), case.kind, case.model, case.backend,
                    case.precision, case.size)  # fmt: skip
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            records.append(pool.submit(run_case, case).result())
    add_peak_fractions(records, peaks)
    rates = ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peaks.items())
    print(f"machine: {machine.get('gpu') or machine['cpu']}, torch {machine['torch']} (CUDA {machine['cuda']})")
    print(f"matmul peak on {options.device} ({options.threads or 'default'} threads): {rates}; "
          "floor ms = GFLOP/frame at that peak")  # fmt: skip
    print(format_table(records))
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps({"machine": machine, "matmul_peak_gflops": peaks, "records": records},
                                        indent=1, default=str))  # fmt: skip
    return 0
