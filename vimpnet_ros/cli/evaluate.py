"""``vimpnet-ros evaluate``: PSNR/SSIM of a checkpoint on a VRDS-layout test set, as the reference scores.

With ground-truth drop masks (``01drop/``) it also prints PSNR inside and outside the
mask and the predicted mask's IoU, precision and recall at 0.5.

With ``--set`` it renders (once, into ``--sets-dir``) and scores the package's quality
sets instead: ``heldout`` (heavy, style-shifted rain), ``light`` and ``clean`` (no rain:
scored by the output's PSNR against the input, which a model that leaves clean frames
alone keeps high).

Examples::

    vimpnet-ros evaluate --checkpoint runs/lite/final.pth --data VRDS/test --output results.json
    vimpnet-ros evaluate --set heldout --set light --set clean --output sets.json
    vimpnet-ros evaluate --set heldout --output-frame latest --output streamed.json   # as the node restores
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vimpnet_ros.engine import DROP_FILL_BLEND, DROP_FILL_FRAMES

if TYPE_CHECKING:
    import torch
    from torch import nn

    from vimpnet_ros.evaluation.vrds_eval import EvaluationResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Checkpoint, test folder, output JSON and restoration options."""
    parser.add_argument(
        "--checkpoint",
        help="our checkpoint, the published MMEditing .pth or a bare state dict (default: the shipped weights)",
    )
    parser.add_argument("--model", help="model config name (needed for foreign checkpoints / the shipped weights)")
    parser.add_argument("--data", help="VRDS-layout test folder with lq/ and gt/ (01drop/ optional)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME",
        help="score a quality set instead of --data: heldout, light or clean (repeatable)",
    )
    parser.add_argument(
        "--sets-dir", default="data/quality_sets", help="where the quality sets are rendered once and reused"
    )
    parser.add_argument("--output", default="results.json", help="where to write the scores (JSON)")
    parser.add_argument(
        "--save-frames",
        metavar="DIR",
        help="also write the restored frames as PNG under DIR/<video>/ (with --set: DIR/<set>/<video>/)",
    )
    parser.add_argument("--clip-length", type=int, default=5, help="frames per clip (reference: 5)")
    parser.add_argument(
        "--stride",
        type=int,
        default=1,
        help="temporal stride between clips; 1 = the reference test (each frame averaged over up to 5 clips)",
    )
    parser.add_argument(
        "--output-frame",
        help="latest or center: score as the node streams, each frame restored once as that frame of a "
        "--clip-length window (default: the reference test's averaged clips)",
    )
    parser.add_argument(
        "--drop-fill",
        type=float,
        default=DROP_FILL_BLEND,
        help="weight of the drops' inpainting against the network's restoration inside the predicted drops, as the "
        f"node's drop_fill parameter (default {DROP_FILL_BLEND}); 0 = score the network's output alone",
    )
    parser.add_argument(
        "--drop-fill-frames",
        type=int,
        default=DROP_FILL_FRAMES,
        help="earlier frames each frame's drops are also filled from, in order, as the node's drop_fill_frames "
        f"parameter (default {DROP_FILL_FRAMES}); 0 = from the frame's own pixels only",
    )
    parser.add_argument(
        "--stage1-passes",
        type=int,
        default=0,
        help="times stage 1 runs on each clip, as the node's stage1_passes parameter; 0 (default) = by device and "
        "model, as the node picks",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--max-videos", type=int, help="only the first N videos")
    parser.add_argument("--max-frames", type=int, help="only the first N frames of each video")


def run(args: argparse.Namespace) -> int:
    """Load the model, evaluate the folder or each quality set, write JSON, print the summary."""
    import json

    from vimpnet_ros.engine import EngineConfig, resolve_stage1_passes
    from vimpnet_ros.errors import ConfigError
    from vimpnet_ros.model.checkpoint import load_model, shipped_checkpoint
    from vimpnet_ros.training.distributed import resolve_device
    from vimpnet_ros.training.ship_weights import quality_set, quality_set_source, set_summary

    if (args.data is None) == (not args.sets):
        raise ConfigError("give either --data FOLDER or one or more --set NAME")
    specs = [quality_set(name) for name in args.sets]  # unknown names fail before any work
    # What the engine refuses fails here.
    EngineConfig(drop_fill=args.drop_fill, drop_fill_frames=args.drop_fill_frames, stage1_passes=args.stage1_passes)
    if args.output_frame is not None:
        EngineConfig(window_size=args.clip_length, output_frame=args.output_frame)
    model_name = args.model or (None if args.checkpoint else EngineConfig().model)
    checkpoint = args.checkpoint or shipped_checkpoint(str(model_name))
    device = resolve_device(args.device)
    model = load_model(checkpoint, model_name).to(device)
    model.set_stage1_passes(resolve_stage1_passes(args.stage1_passes, str(device), model.config))
    if args.data is not None:
        result = _evaluate(model, args.data, args, device, args.save_frames)
        result.settings["checkpoint"] = str(checkpoint)
        _print_result(result)
        print(f"wrote {result.write(args.output)}")
        return 0
    from vimpnet_ros.training.data import prepare_source

    sets: dict[str, object] = {}
    for spec in specs:
        root = prepare_source(quality_set_source(spec.name, Path(args.sets_dir) / f"{spec.name}_seed{spec.seed}"))
        frames_dir = Path(args.save_frames) / spec.name if args.save_frames else None  # the sets share video names
        result = _evaluate(model, root, args, device, frames_dir)
        print(f"[{spec.name}] {spec.description}")
        _print_result(result)
        sets[spec.name] = {"summary": set_summary(spec, result.to_dict()), **result.to_dict()}
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(checkpoint), "sets": sets}
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _evaluate(
    model: nn.Module, data: str | Path, args: argparse.Namespace, device: torch.device, save_frames: str | Path | None
) -> EvaluationResult:
    """One folder through :func:`~vimpnet_ros.evaluation.vrds_eval.evaluate_vrds` with the CLI's options, the
    restored frames written under ``save_frames`` (None: not written)."""
    from tqdm import tqdm

    from vimpnet_ros.evaluation.vrds_eval import evaluate_vrds

    return evaluate_vrds(
        model,
        data,
        clip_length=args.clip_length,
        stride=args.stride,
        device=device,
        precision=args.precision,
        max_videos=args.max_videos,
        max_frames=args.max_frames,
        save_frames=save_frames,
        output_frame=args.output_frame,
        drop_fill=args.drop_fill,
        drop_fill_frames=args.drop_fill_frames,
        progress=lambda videos: iter(tqdm(videos, desc="evaluate", unit="video")),
    )


def _print_result(result: EvaluationResult) -> None:
    """The summary lines of one evaluation."""
    from vimpnet_ros.evaluation.metrics import summarize

    print(f"restored: {summarize(result.restored)}   rainy input: {summarize(result.rainy_input)}")
    gain = result.gain
    if "psnr_in_mask" in gain:
        print(
            f"PSNR inside the drop mask {result.restored['psnr_in_mask']:.2f} dB ({gain['psnr_in_mask']:+.2f}), "
            f"outside {result.restored['psnr_outside_mask']:.2f} dB ({gain['psnr_outside_mask']:+.2f})"
        )
    if result.drop_mask is not None:
        mask = result.drop_mask
        print(
            f"drop mask at {mask['threshold']}: IoU {mask['iou']:.3f}, precision {mask['precision']:.3f}, "
            f"recall {mask['recall']:.3f}"
        )
    print(f"output against input: PSNR {result.output_vs_input['psnr']:.2f} dB")
