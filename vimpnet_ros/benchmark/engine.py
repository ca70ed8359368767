"""``vimpnet-ros benchmark engine``: streaming latency, throughput, memory and GFLOP/s vs naive and reference.

Cases (each in a fresh subprocess so peak RSS belongs to that case alone):

- ``stream``: the engine as the node runs it (per-frame caches, output frame decoded
  only), steady state after the window filled; per-push wall time.
- ``naive``: one whole-window ``VimpNet.forward`` per frame at the same size/tiling
  (what an engine without caches would do).
- ``reference``: the reference test procedure's cost per frame: one 5-frame 256x256
  clip per 256-pixel tile (32 overlap), fp32, i.e. tiles x forward(1, 5, 3, 256, 256).

Random-initialised weights unless ``--checkpoint`` is given (timing does not depend
on the values). ``--quality`` instead measures PSNR of ``latest`` vs ``center`` on
synthetic rain (:mod:`vimpnet_ros.evaluation.output_frames`), which needs trained weights to mean anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from vimpnet_ros.cli.arguments import size_list_type, size_type

LOGGER = logging.getLogger(__name__)
#: What the reference code takes on this class of 2-core CPU for one 5-frame 256x256 fp32 clip (issue 4).
REFERENCE_CLIP_SECONDS = 5.36


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Benchmark options; defaults cover the issue's table (slow on CPU: narrow them for a quick look)."""
    parser.add_argument("--models", default="vimpnet_lite,vimpnet", help="comma-separated model configs")
    parser.add_argument("--backends", default="torch,onnxruntime", help="comma-separated: torch, onnxruntime, tensorrt")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (CPU), fp16 (CUDA)")
    parser.add_argument(
        "--sizes", type=size_list_type(), default="256x256,640x384,1280x720", help="comma-separated WIDTHxHEIGHT"
    )
    parser.add_argument("--tile-above", type=int, default=640 * 384, help="tile frames with more pixels than this")
    parser.add_argument("--tile-size", type=int, default=256, help="tile size for tiled sizes")
    parser.add_argument("--tile-overlap", type=int, default=32, help="tile overlap in pixels")
    parser.add_argument("--tile-batch", type=int, default=4, help="tiles per network call")
    parser.add_argument("--window", type=int, default=5, help="frames per window T (odd, 3..9)")
    parser.add_argument("--output-frame", default="latest", choices=("latest", "center"), help="output frame mode")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--frames", type=int, default=10, help="timed frames per case (after warm-up)")
    parser.add_argument("--baseline-frames", type=int, default=2, help="timed forwards for naive/reference")
    parser.add_argument("--no-baselines", action="store_true", help="skip the naive and reference cases")
    parser.add_argument("--checkpoint", default=None, help="weights to time (default: random init)")
    parser.add_argument("--json", type=Path, default=None, help="write all records here")
    parser.add_argument("--quality", action="store_true", help="measure PSNR latest vs center instead of timing")
    parser.add_argument("--quality-clips", type=int, default=4, help="synthetic clips for --quality")
    parser.add_argument("--quality-frames", type=int, default=12, help="frames per clip for --quality")
    parser.add_argument(
        "--quality-size", type=size_type(), default="256x256", help="WIDTHxHEIGHT of the --quality clips"
    )


# -- cases (run in a child process) ----------------------------------------------------------------------


def _model(name: str, checkpoint: str | None) -> Any:
    import torch

    from vimpnet_ros.model import VimpNet, get_config
    from vimpnet_ros.model.checkpoint import load_model

    if checkpoint:
        return load_model(checkpoint, name)
    torch.manual_seed(0)
    return VimpNet(get_config(name)).eval()


def _frames(count: int, width: int, height: int) -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height + count, width + count, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[k : k + height, k : k + width]) for k in range(count)]


def _percentiles(times_ms: list[float]) -> dict[str, float]:
    import numpy as np

    values = np.asarray(times_ms)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "mean_ms": float(values.mean()),
        "fps": float(1000.0 / values.mean()),
    }


def _stream_case(case: dict[str, Any]) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    from vimpnet_ros.engine import EngineConfig, InferenceEngine

    width, height = case["size"]
    config = EngineConfig(
        model=case["model"], backend=case["backend"], precision=case["precision"], device=case["device"],
        window_size=case["window"], output_frame=case["output_frame"], tile_size=case["tile_size"],
        tile_overlap=case["tile_overlap"], tile_batch=case["tile_batch"], engine_cache_dir=case.get("cache_dir"),
        cpu_threads=case["threads"],
    )  # fmt: skip
    engine = InferenceEngine(config).load(_model(case["model"], case["checkpoint"]))
    start = time.perf_counter()
    engine.prepare(width, height)
    prepare_s = time.perf_counter() - start
    stream = engine.open_stream("bench")
    frames = _frames(case["window"] + case["frames"] + 1, width, height)
    for k in range(case["window"]):  # fill the window (context only, then one restore): steady state from here
        stream.push(frames[k], k, restore=k == case["window"] - 1)
    times = []
    for k in range(case["window"], case["window"] + case["frames"]):
        start = time.perf_counter()
        stream.push(frames[k], k)
        times.append((time.perf_counter() - start) * 1000.0)
    record = {**_percentiles(times), "prepare_s": prepare_s}
    if case["backend"] == "torch":
        with FlopCounterMode(display=False) as counter:
            stream.push(frames[-1], len(frames))
        record["gflop_per_frame"] = counter.get_total_flops() / 1e9
    record["tiles"] = engine.geometry_for(height, width).num_tiles
    return record


def _naive_case(case: dict[str, Any]) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vimpnet_ros.engine import EngineConfig
    from vimpnet_ros.engine.geometry import FrameGeometry

    width, height = case["size"]
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    model = _model(case["model"], case["checkpoint"])
    if case["kind"] == "reference":  # one 5-frame 256x256 clip per 256 tile (32 overlap), fp32
        tiles = FrameGeometry.plan(height, width, EngineConfig(tile_size=256, tile_overlap=32)).num_tiles
        clip = torch.rand(1, 5, 3, 256, 256)
        precision = "fp32"
    else:
        geometry = FrameGeometry.plan(height, width, EngineConfig(tile_size=case["tile_size"],
                                                                  tile_overlap=case["tile_overlap"]))  # fmt: skip
        tiles = geometry.num_tiles
        ph, pw = geometry.padded_shape
        clip = torch.rand(min(tiles, case["tile_batch"]), case["window"], 3, ph, pw)
        precision = case["precision"]
    chunks = tiles if case["kind"] == "reference" else -(-tiles // clip.shape[0])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            model(clip)

    forward()
    times = []
    for _ in range(case["baseline_frames"]):
        start = time.perf_counter()
        forward()
        times.append((time.perf_counter() - start) * 1000.0 * chunks)
    with FlopCounterMode(display=False) as counter:
        forward()
    record = _percentiles(times)
    record["gflop_per_frame"] = counter.get_total_flops() * chunks / 1e9
    record["tiles"] = tiles
    if case["kind"] == "reference":
        record["reference_code_ms"] = REFERENCE_CLIP_SECONDS * 1000.0 * tiles
    return record


def measure_matmul_peak(threads: int, seconds: float = 1.0) -> dict[str, float]:
    """GFLOP/s of a square matmul in fp32 (1024) and bf16 (256): the machine's floor for these graphs.

    A convolution graph cannot beat the dense matmul rate, so ``GFLOP/frame / peak``
    is the best latency this machine allows for a model at a size.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    peaks = {}
    for name, dtype, n in (("fp32", torch.float32, 1024), ("bf16", torch.bfloat16, 256)):
        a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
        a @ b  # warm-up
        count, start = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - start < seconds:
            a @ b
            count += 1
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
        peak = peaks.get("bf16" if record["precision"] == "bf16" else "fp32")
        if peak:
            record["peak_fraction"] = record["gflops"] / peak
            record["floor_ms"] = gflop / peak * 1000.0


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case and add the process's peak RSS (for the subprocess: that case alone)."""
    logging.basicConfig(level=logging.ERROR)
    try:
        record = _stream_case(case) if case["kind"] == "stream" else _naive_case(case)
    except Exception as error:
        record = {"error": f"{type(error).__name__}: {error}"}
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {**{k: v for k, v in case.items() if k != "checkpoint"}, **record}


def build_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (kind, model, backend, precision, size) combination asked for."""
    cases = []
    for model in args.models.split(","):
        for width, height in args.sizes:
            tiled = width * height > args.tile_above
            common = {
                "model": model, "size": (width, height), "window": args.window, "output_frame": args.output_frame,
                "tile_size": args.tile_size if tiled else 0, "tile_overlap": args.tile_overlap,
                "tile_batch": args.tile_batch, "device": args.device, "checkpoint": args.checkpoint,
                "frames": args.frames, "baseline_frames": args.baseline_frames, "threads": args.threads,
            }  # fmt: skip
            for backend in args.backends.split(","):
                for precision in args.precisions.split(","):
                    if backend == "onnxruntime" and precision != "fp32":
                        continue
                    cases.append({**common, "kind": "stream", "backend": backend, "precision": precision})
            if not args.no_baselines:
                for precision in args.precisions.split(","):
                    cases.append({**common, "kind": "naive", "backend": "torch", "precision": precision})
                cases.append({**common, "kind": "reference", "backend": "torch", "precision": "fp32"})
    return cases


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_table(records: list[dict[str, Any]]) -> str:
    """Markdown table of the records (README-ready)."""
    header = ("| model | case | backend | precision | size | tiles | p50 ms | p95 ms | frames/s | peak RSS MiB "
              "| GFLOP/frame | GFLOP/s | % of matmul peak | floor ms |")  # fmt: skip
    lines = [header, "|" + " --- |" * 14]
    for r in records:
        size = "x".join(map(str, r["size"]))
        if "error" in r:
            lines.append(f"| {r['model']} | {r['kind']} | {r['backend']} | {r['precision']} | {size} | | "
                         f"error: {r['error'][:80]} | | | | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {r['model']} | {r['kind']} | {r['backend']} | {r['precision']} | {size} | {r.get('tiles', 1)} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['fps']:.2f} | {r['peak_rss_mib']:.0f} | "
            f"{_number(r.get('gflop_per_frame'))} | {_number(r.get('gflops'))} | "
            f"{_number(100.0 * r['peak_fraction'] if 'peak_fraction' in r else None)} | "
            f"{_number(r.get('floor_ms'), 0)} |"
        )
    return "\n".join(lines)


def _run_quality(args: argparse.Namespace) -> int:
    from vimpnet_ros.engine import EngineConfig
    from vimpnet_ros.evaluation.output_frames import measure_output_frames, synthetic_clips

    model_name = args.models.split(",")[0]
    if not args.checkpoint:
        LOGGER.warning("no --checkpoint: random weights, so these PSNR figures say nothing about quality")
    clips = synthetic_clips(args.quality_clips, args.quality_frames, args.quality_size)
    backend, precision = args.backends.split(",")[0], args.precisions.split(",")[0]
    config = EngineConfig(
        model=model_name,
        backend=backend,
        precision=precision,
        device=args.device,
        window_size=args.window,
        cpu_threads=args.threads,
    )
    report = measure_output_frames(_model(model_name, args.checkpoint), clips, config)
    print(f"input PSNR {report.input_psnr:.2f} dB over {report.frames} frames of {report.clips} clips")
    for mode, value in report.psnr.items():
        print(f"{mode:>6}: {value:.2f} dB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": model_name, **report.as_dict()}, indent=1))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run every case in its own process; print a Markdown table; optionally write JSON."""
    if args.quality:
        return _run_quality(args)
    records = []
    cases = build_cases(args)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        peaks = pool.submit(measure_matmul_peak, args.threads).result()
    for index, case in enumerate(cases, 1):
        LOGGER.info("case %d/%d: %s %s %s %s %s", index, len(cases), case["kind"], case["model"], case["backend"],
                    case["precision"], case["size"])  # fmt: skip
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            records.append(pool.submit(run_case, case).result())
    add_peak_fractions(records, peaks)
    print(
        f"matmul peak on this machine ({args.threads or 'default'} threads): fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.1f} GFLOP/s; floor ms = GFLOP/frame at that peak"
    )
    print(format_table(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"matmul_peak_gflops": peaks, "records": records}, indent=1, default=str))
    return 0
