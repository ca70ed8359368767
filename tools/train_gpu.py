"""Train the lite model for a fixed wall-clock budget on one GPU, rendering rainy road clips on the fly.

Made for a bare GPU machine that has torch, numpy, OpenCV, tqdm and tensorboard but no
ROS, no scikit-image and perhaps no PyYAML, and no network. From the repository root::

    PYTHONPATH=$PWD python3 tools/train_gpu.py --out $OUT --budget-s 300

What it does, all inside ``--out``:

1. builds the training config in Python (no YAML needed): clean clips are procedural
   road scenes rendered by ``--workers`` DataLoader processes with rain drawn from the
   default ranges (each item: one scene, ``--clips-per-item`` rainy windows);
   bf16 autocast (``--precision``), optional ``torch.compile`` (``--compile``; its
   compile time counts against the budget) and channels-last;
2. renders the held-out test set in a separate process while it trains, and trains
   until the budget (minus ``--reserve-s`` for the final save and the held-out test) is
   spent, saving ``run/checkpoints/iter_*.pth`` every ``--save-every-s``
   seconds, so a kill at the budget still leaves the latest weights;
3. writes ``run/final.pth`` (our checkpoint format: load it with
   ``vimpnet_ros.model.load_model``), ``run/log.json`` (loss terms, validations),
   ``heldout.json`` (the final weights on the held-out set: other seeds, the
   ``heldout`` scene preset and the shifted ``heldout`` rain ranges when PyYAML can
   read them) and ``summary.json`` (all of it plus the machine).

Nothing here imports ROS, rosbags, scikit-image or matplotlib. With ``--device cpu``
and a budget of 20 s the same command runs on a laptop (the smoke test).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

#: Seeds of the data this tool renders (none equals a seed of another shipped config's data).
TRAIN_SEED = 1501
VAL_SEED = 2502
HELDOUT_SEED = 3503


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (checkpoints, logs, scores)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="wall-clock budget of the whole command")
    parser.add_argument("--reserve-s", type=float, default=30.0, help="part of the budget kept for the end")
    parser.add_argument("--save-every-s", type=float, default=60.0, help="checkpoint period in seconds")
    parser.add_argument(
        "--recipe",
        default="gated",
        choices=sorted(RECIPES),
        help="gated: the gated lite model, rain-free clips, the no-harm term, wide rain, road + photographs "
        "(vimpnet_lite_gated.yaml); road: the ungated recipe (vimpnet_lite_road.yaml)",
    )
    parser.add_argument("--model", help="model config name (default: the recipe's)")
    parser.add_argument(
        "--init-from",
        help="start from these weights (any config: matching tensors load), shipped:NAME for the package's, "
        "or kept:CONFIG for a run's newest weights kept in training_state/",
    )
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compile time counts)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights for the 2-D convolutions")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per step")
    parser.add_argument("--clips-per-item", type=int, default=8, help="rainy clips cut from one rendered scene")
    parser.add_argument("--crop", type=int, default=128, help="training crop (multiple of 4)")
    parser.add_argument("--size", type=int, nargs=2, default=[160, 160], metavar=("W", "H"), help="rendered frames")
    parser.add_argument("--frames", type=int, default=6, help="frames rendered per scene (>= 5)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="render processes")
    parser.add_argument("--steps", type=int, default=3000, help="length of the cosine schedule (budget stops first)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--mask-balance",
        type=float,
        default=0.25,
        help="loss.mask_balance: 0.25 keeps the mask calibrated at 0.5 (for --init-from a trained checkpoint); "
        "1.0 leaves the p = 0.5 plateau of a mask head trained from scratch faster",
    )
    parser.add_argument(
        "--no-worse",
        type=float,
        default=0.0,
        help="loss.no_worse: weight of the frame-level no-harm term (0: the recipe's, off; the shipped weights' "
        "last steps trained with 2)",
    )
    parser.add_argument("--val-every", type=int, default=400, help="validate every N steps (0 = only at the end)")
    parser.add_argument("--heldout-videos", type=int, default=6)
    parser.add_argument("--heldout-frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=20261201)
    return parser.parse_args(argv)


def rain_preset_or_default(name: str) -> tuple[str | None, str]:
    """The rain preset ``name`` when this machine can read it (PyYAML), else the built-in default, with a note."""
    from vimpnet_ros.data.rain.config import load_rain_config
    from vimpnet_ros.errors import ConfigError

    try:
        load_rain_config(name)
    except ConfigError as error:
        return None, f"rain preset {name!r} unavailable ({error}); used the built-in default ranges"
    return name, f"rain preset {name!r}"


def build_config(
    args: argparse.Namespace, val_rain: str | None, data_dir: Path, train_rain: str | None = None
) -> dict[str, Any]:
    """The training config as a plain dict (validated by ``config_from_dict``); ``train_rain`` replaces the
    recipe's rain preset (None: the built-in default ranges, where the preset cannot be read)."""
    recipe = RECIPES[args.recipe]
    return {
        "name": "train_gpu",
        "seed": args.seed,
        "model": args.model or recipe["model"],
        "init_from": args.init_from,
        "zero_flow_init": True,
        "device": args.device,
        "precision": args.precision,
        "cpu_threads": None,
        "compile": bool(args.compile),
        "channels_last": bool(args.channels_last),
        "data": {
            "train": {
                "type": "online",
                **recipe["data"],
                "rain_config": train_rain,
                "scene": "default",
                "num_videos": 1_000_000,
                "num_frames": args.frames,
                "size": list(args.size),
                "seed": TRAIN_SEED,
                "clips_per_item": args.clips_per_item,
            },
            "val": {
                "type": "synthetic",
                "root": str(data_dir / "val"),
                "clean": "road",
                "scene": "heldout",
                "num_videos": 4,
                "num_frames": 10,
                "size": [192, 128],
                "seed": VAL_SEED,
                "rain_config": val_rain,
            },
            "clip_length": 5,
            "crop_size": args.crop,
            "batch_size": args.batch_size,
            "num_workers": args.workers,
            "prefetch_factor": 4,
            "augment": True,
            "val_max_videos": 4,
            "val_max_frames": 10,
        },
        "optim": {
            "type": "adamw",
            "lr": args.lr,
            "betas": [0.9, 0.99],
            "weight_decay": 0.0,
            "spynet_lr_mult": 0.25,
            "spynet_freeze_iters": 1_000_000,
            "grad_clip": 10.0,
        },
        "schedule": {"total_iters": args.steps, "eta_min": 1e-6, "warmup_iters": min(100, args.steps // 10)},
        "loss": {**recipe["loss"], "mask_balance": args.mask_balance, "no_worse": args.no_worse},
        "log": {
            "out_dir": str(args.out / "run"),
            "log_every": 25,
            "val_every": args.val_every,
            "save_every": 0,
            "save_every_seconds": args.save_every_s,
            "keep_last": 2,
            "tensorboard": True,
            "progress": False,
        },
    }


#: Loss weights of the lite recipe (see vimpnet_ros/training/configs/vimpnet_lite_road.yaml, the same values).
LOSS: dict[str, float] = {
    "stage1": 20.0,
    "mask": 8.0,
    "mask_balance": 0.25,
    "mask_dice": 4.0,
    "output": 10.0,
    "masked": 2.0,
    "streak": 10.0,
    "charbonnier_eps": 1e-2,
}
#: The recipes this tool trains: model, online data and loss of the packaged configs of the same name
#: (vimpnet_lite_road.yaml, vimpnet_lite_gated.yaml), written out so no YAML reader is needed.
RECIPES: dict[str, dict[str, Any]] = {
    "road": {"model": "vimpnet_lite", "data": {"clean": "road"}, "loss": LOSS},
    "gated": {
        "model": "vimpnet_lite_gated",
        "data": {"clean": "mixed", "clear_fraction": 0.2, "rain_config": "wide"},
        "loss": {**LOSS, "image_l1": 2.0, "identity": 5.0, "gate": 4.0, "charbonnier_eps": 1e-4},
    },
}


def machine() -> dict[str, Any]:
    """What ran this (for the record)."""
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def main(argv: list[str] | None = None) -> int:
    """Train for the budget, then score the final weights on the held-out set."""
    started = time.perf_counter()
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"vimpnet_train_gpu_{os.getpid()}"
    log_lines: list[str] = []

    def log(message: str) -> None:
        line = f"[{time.perf_counter() - started:7.1f}s] {message}"
        print(line, flush=True)
        log_lines.append(line)

    from vimpnet_ros.evaluation.vrds_eval import json_safe  # non-finite floats as strings
    from vimpnet_ros.training.config import config_from_dict
    from vimpnet_ros.training.data import prepare_source
    from vimpnet_ros.training.trainer import Trainer

    val_rain, rain_note = rain_preset_or_default("heldout")
    log(rain_note)
    train_rain = RECIPES[args.recipe]["data"].get("rain_config")
    if train_rain is not None:
        train_rain, train_note = rain_preset_or_default(train_rain)
        log(train_note)
    config = config_from_dict(build_config(args, val_rain, data_dir, train_rain))
    heldout = heldout_source(args, val_rain, data_dir)
    # A fresh process (spawn: no inherited locks of OpenCV's or CUDA's threads) renders the held-out set.
    renderer = multiprocessing.get_context("spawn").Process(target=prepare_source, args=(heldout,), daemon=True)
    renderer.start()  # one core renders the held-out set while the others train
    trainer = Trainer(config, log=log)
    summary: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine()}
    try:
        trainer.setup()
        budget = max(5.0, args.budget_s - args.reserve_s - (time.perf_counter() - started))
        log(f"training for {budget:.0f} s")
        summary["train"] = trainer.train(max_seconds=budget)
        renderer.join()
        summary["heldout"] = score_heldout(trainer, args, heldout, log)
    finally:
        trainer.close()
        summary["log"] = log_lines
        summary["seconds"] = time.perf_counter() - started
        (args.out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.out / 'summary.json'}")
    return 0


def heldout_source(args: argparse.Namespace, rain: str | None, data_dir: Path) -> Any:
    """The held-out test set: seed HELDOUT_SEED, the held-out scene preset and rain ranges, 192x128."""
    from vimpnet_ros.training.ship_weights import heldout_source as source

    return source(data_dir / "heldout", args.heldout_videos, args.heldout_frames, (192, 128), HELDOUT_SEED, rain=rain)


def score_heldout(trainer: Any, args: argparse.Namespace, source: Any, log: Any) -> dict[str, Any]:
    """Score the final weights on the held-out set (rendered by then; rendered here if the child failed)."""
    from vimpnet_ros.evaluation.vrds_eval import evaluate_vrds
    from vimpnet_ros.model import load_model
    from vimpnet_ros.training.data import prepare_source

    root = prepare_source(source, log)
    model = load_model(trainer.out_dir / "final.pth").to(trainer.device)
    result = evaluate_vrds(model, root, clip_length=5, stride=1, device=trainer.device, precision="fp32")
    scores = result.to_dict()
    (args.out / "heldout.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    gain = result.gain
    log(
        f"held-out: PSNR {result.restored['psnr']:.2f} dB (gain {gain['psnr']:+.2f}), in drops gain "
        f"{gain.get('psnr_in_mask', float('nan')):+.2f}, mask IoU {result.drop_mask_iou}"
    )
    return {k: scores[k] for k in ("restored", "rainy_input", "gain", "drop_mask", "output_vs_input", "settings")}


if __name__ == "__main__":
    sys.exit(main())
