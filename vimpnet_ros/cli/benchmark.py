"""``vimpnet-ros benchmark {model,engine,fleet,overload,gpu}``: timing tables and JSON.

The options of each target are defined here (the command line) and handed over as the target's
typed options; the measuring lives in ``vimpnet_ros.benchmark.model``, ``.engine``, ``.fleet`` and
``.gpu``, each with ``run(options) -> int``. The GPU check is the exception: it must start on a
bare GPU machine as ``python -m vimpnet_ros.benchmark.gpu``, so its few options are defined in
that module (``add_arguments``, ``GpuCheckOptions.from_args``) and reused here.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vimpnet_ros.cli.arguments import size_list_type, size_type


def _positive_list(text: str) -> list[int]:
    """``1,4`` -> [1, 4] (each at least 1)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 1,4; got {text!r}")
    return values


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vimpnet-ros benchmark model``."""
    from vimpnet_ros.benchmark.model import DEFAULT_CONFIGS, DEFAULT_PRECISIONS, DEFAULT_SIZES

    size = size_type(minimum=4, multiple=4)  # the model needs multiples of 4
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="model configs")
    parser.add_argument("--sizes", nargs="+", type=size, default=[size(s) for s in DEFAULT_SIZES],
                        metavar="WxH", help="frame sizes (default: %(default)s)")  # fmt: skip
    parser.add_argument("--precisions", nargs="+", default=list(DEFAULT_PRECISIONS), choices=["fp32", "bf16", "fp16"],
                        help="fp32; bf16 = CPU/CUDA autocast; fp16 = CUDA autocast")  # fmt: skip
    parser.add_argument("--frames", type=int, default=5, help="clip length t")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per case (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards before timing")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case before it is reported as such")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (saves one forward per case)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256x256, fp32, one repeat, no warm-up, t=3")
    parser.add_argument("--output", type=Path, default=None, help="JSON results file")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vimpnet-ros benchmark engine``; defaults cover the full table (slow on CPU: narrow them)."""
    from vimpnet_ros.benchmark.engine import DEFAULT_BACKENDS, DEFAULT_MODELS, DEFAULT_PRECISIONS, DEFAULT_SIZES
    from vimpnet_ros.engine import CHANGE_UPSAMPLINGS, WORKING_SCALES, EngineConfig

    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model configs")
    parser.add_argument("--backends", default=DEFAULT_BACKENDS,
                        help="comma-separated: torch, compiled, onnxruntime, tensorrt")  # fmt: skip
    parser.add_argument("--precisions", default=DEFAULT_PRECISIONS, help="comma-separated: fp32, bf16, fp16 (CUDA)")
    parser.add_argument("--sizes", type=size_list_type(), default=DEFAULT_SIZES, help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--cameras", type=_positive_list, default=[1],
                        help="comma-separated camera counts (cameras of one size share each step call)")  # fmt: skip
    parser.add_argument("--stage1-passes", type=_positive_list, default=[0],
                        help="comma-separated stage-1 passes per window (the node's stage1_passes; default: by "
                        "device and model)")  # fmt: skip
    parser.add_argument("--working-scale", default="native", choices=WORKING_SCALES,
                        help="native: the network at the sizes named (default); weights: at the weights' scale, as "
                        "the node runs, the change mapped back onto each size")  # fmt: skip
    parser.add_argument("--change-upsampling", default=EngineConfig.change_upsampling, choices=CHANGE_UPSAMPLINGS,
                        help="how the change made at a smaller working size is enlarged onto each frame (the "
                        "node's change_upsampling)")  # fmt: skip
    parser.add_argument("--tile-above", type=int, default=640 * 384,
                        help="tile frames with more pixels than this (native working scale)")  # fmt: skip
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
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="engine cache for compiled programs (default: the engine's)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write all records here")
    parser.add_argument("--quality", action="store_true", help="measure PSNR latest vs center instead of timing")
    parser.add_argument("--quality-clips", type=int, default=4, help="synthetic clips for --quality")
    parser.add_argument("--quality-frames", type=int, default=12, help="frames per clip for --quality")
    parser.add_argument(
        "--quality-size", type=size_type(), default="256x256", help="WIDTHxHEIGHT of the --quality clips"
    )


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vimpnet-ros benchmark fleet``."""
    from vimpnet_ros.benchmark.fleet import DEFAULT_OUTPUT

    parser.add_argument("--bags", type=int, default=4, help="sample bags to render and process (default 4)")
    parser.add_argument("--frames", type=int, default=16, help="frames per bag (default 16)")
    parser.add_argument("--size", type=size_type(minimum=16), default=(320, 192), help="WIDTHxHEIGHT (default 320x192)")
    parser.add_argument("--segment-s", type=float, default=60.0,
                        help="work unit length [s of bag time] (default 60, as the fleet)")  # fmt: skip
    parser.add_argument("--workers", type=_positive_list, default=[1, 2],
                        help="comma-separated worker counts, one CPU thread each (default 1,2)")  # fmt: skip
    parser.add_argument("--checkpoint", default=None, help="weights (default: the shipped ones)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file (default %(default)s)")


def add_overload_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vimpnet-ros benchmark overload``."""
    from vimpnet_ros.cli.arguments import add_node_settings_arguments

    parser.add_argument("bag", type=Path, help="a bag with ground truth (vimpnet-ros make-sample-bag)")
    parser.add_argument("--factors", type=_positive_list, default=[1, 3],
                        help="comma-separated overloads: inference time in camera periods (default 1,3)")  # fmt: skip
    add_node_settings_arguments(parser)
    parser.add_argument("--output", type=Path, default=None, help="JSON results file")


def _gpu_arguments(parser: argparse.ArgumentParser) -> None:
    from vimpnet_ros.benchmark.gpu import add_arguments

    add_arguments(parser)


def _names(text: str) -> tuple[str, ...]:
    """``a,b`` -> ("a", "b")."""
    return tuple(part for part in text.split(",") if part)


def _model_options(args: argparse.Namespace) -> Any:
    from vimpnet_ros.benchmark.model import ModelBenchOptions

    return ModelBenchOptions(
        configs=tuple(args.configs), sizes=tuple(args.sizes), precisions=tuple(args.precisions), frames=args.frames,
        repeats=args.repeats, warmup=args.warmup, device=args.device, threads=args.threads, timeout=args.timeout,
        flops=not args.no_flops, quick=args.quick, output=args.output,
    )  # fmt: skip


def _engine_options(args: argparse.Namespace) -> Any:
    from vimpnet_ros.benchmark.engine import EngineBenchOptions

    return EngineBenchOptions(
        models=_names(args.models), backends=_names(args.backends), precisions=_names(args.precisions),
        sizes=tuple(args.sizes), cameras=tuple(args.cameras), stage1_passes=tuple(args.stage1_passes),
        working_scale=args.working_scale, change_upsampling=args.change_upsampling, tile_above=args.tile_above,
        tile_size=args.tile_size, tile_overlap=args.tile_overlap, tile_batch=args.tile_batch, window=args.window,
        output_frame=args.output_frame, device=args.device, threads=args.threads, frames=args.frames,
        baseline_frames=args.baseline_frames, baselines=not args.no_baselines, checkpoint=args.checkpoint,
        cache_dir=args.cache_dir, json=args.json, quality=args.quality, quality_clips=args.quality_clips,
        quality_frames=args.quality_frames, quality_size=args.quality_size,
    )  # fmt: skip


def _fleet_options(args: argparse.Namespace) -> Any:
    from vimpnet_ros.benchmark.fleet import FleetBenchOptions

    return FleetBenchOptions(
        bags=args.bags, frames=args.frames, size=args.size, segment_s=args.segment_s, workers=tuple(args.workers),
        checkpoint=args.checkpoint, output=args.output,
    )  # fmt: skip


def _overload_options(args: argparse.Namespace) -> Any:
    from vimpnet_ros.benchmark.overload import OverloadBenchOptions
    from vimpnet_ros.cli.arguments import node_settings

    return OverloadBenchOptions(args.bag, tuple(args.factors), node_settings(args), args.output)  # type: ignore[arg-type]


def _gpu_options(args: argparse.Namespace) -> Any:
    from vimpnet_ros.benchmark.gpu import GpuCheckOptions

    return GpuCheckOptions.from_args(args)


#: target -> (module with ``run(options)``, one-line help, its command-line options, the typed options from them).
TARGETS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]] = {
    "model": ("vimpnet_ros.benchmark.model", "whole-clip forward time, memory and FLOPs per config and precision",
              add_model_arguments, _model_options),
    "engine": ("vimpnet_ros.benchmark.engine", "streaming per-frame latency per backend, precision and resolution",
               add_engine_arguments, _engine_options),
    "fleet": ("vimpnet_ros.benchmark.fleet", "frames/s of the fleet with 1 and 2 workers (one thread each), and "
              "their ratio", add_fleet_arguments, _fleet_options),
    "overload": ("vimpnet_ros.benchmark.overload", "PSNR of the restored frames when inference takes k camera "
                 "periods (latest wins), against the nominal rate", add_overload_arguments, _overload_options),
    "gpu": ("vimpnet_ros.benchmark.gpu", "the one GPU check: fidelity, latency per backend, cameras, compile and "
            "restart times, in a time budget", _gpu_arguments, _gpu_options),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One nested subcommand per benchmark target."""
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, (module_name, help_text, add_options, _) in TARGETS.items():
        sub = targets.add_parser(name, help=help_text, description=help_text)
        add_options(sub)
        sub.set_defaults(_target_module=module_name)


def run(args: argparse.Namespace) -> int:
    """Run the chosen target."""
    module = importlib.import_module(args._target_module)
    options = TARGETS[args.target][3](args)
    return int(module.run(options) or 0)


def main(argv: list[str] | None = None) -> int:
    """``vimpnet-ros benchmark ...`` without the rest of the command line (used by tests and scripts)."""
    parser = argparse.ArgumentParser(prog="vimpnet-ros benchmark")
    add_arguments(parser)
    return run(parser.parse_args(argv))
