"""``vimpnet-ros evaluate``: PSNR/SSIM of a checkpoint on a VRDS-layout test set, as the reference scores.

With ground-truth drop masks (``01drop/``) it also prints PSNR inside and outside the
mask and the predicted mask's IoU, precision and recall at 0.5.

Example::

    vimpnet-ros evaluate --checkpoint runs/lite/final.pth --data VRDS/test --output results.json
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Checkpoint, test folder, output JSON and restoration options."""
    parser.add_argument(
        "--checkpoint",
        help="our checkpoint, the published MMEditing .pth or a bare state dict (default: the shipped weights)",
    )
    parser.add_argument("--model", help="model config name (needed for foreign checkpoints / the shipped weights)")
    parser.add_argument("--data", required=True, help="VRDS-layout test folder with lq/ and gt/ (01drop/ optional)")
    parser.add_argument("--output", default="results.json", help="where to write the scores (JSON)")
    parser.add_argument("--save-frames", metavar="DIR", help="also write the restored frames as PNG under DIR/<video>/")
    parser.add_argument("--clip-length", type=int, default=5, help="frames per clip (reference: 5)")
    parser.add_argument(
        "--stride",
        type=int,
        default=1,
        help="temporal stride between clips; 1 = the reference test (each frame averaged over up to 5 clips)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--max-videos", type=int, help="only the first N videos")
    parser.add_argument("--max-frames", type=int, help="only the first N frames of each video")


def run(args: argparse.Namespace) -> int:
    """Load the model, evaluate, write JSON, print the summary."""
    from tqdm import tqdm

    from vimpnet_ros.evaluation.metrics import summarize
    from vimpnet_ros.evaluation.vrds_eval import evaluate_vrds
    from vimpnet_ros.model.checkpoint import load_model, shipped_checkpoint
    from vimpnet_ros.training.distributed import resolve_device

    model_name = args.model or (None if args.checkpoint else "vimpnet_lite")
    checkpoint = args.checkpoint or shipped_checkpoint(str(model_name))
    device = resolve_device(args.device)
    model = load_model(checkpoint, model_name).to(device)
    result = evaluate_vrds(
        model,
        args.data,
        clip_length=args.clip_length,
        stride=args.stride,
        device=device,
        precision=args.precision,
        max_videos=args.max_videos,
        max_frames=args.max_frames,
        save_frames=args.save_frames,
        progress=lambda videos: iter(tqdm(videos, desc="evaluate", unit="video")),
    )
    result.settings["checkpoint"] = str(checkpoint)
    path = result.write(args.output)
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
    print(f"wrote {path}")
    return 0
