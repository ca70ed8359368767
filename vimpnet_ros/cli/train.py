"""``vimpnet-ros train``: train or fine-tune ViMP-Net from a YAML config (single process or torchrun DDP).

Examples::

    vimpnet-ros train --config vimpnet_lite_synthetic
    vimpnet-ros train --config my.yaml --set data.batch_size=2 --set optim.lr=2e-4
    vimpnet-ros train --config my.yaml --resume auto
    torchrun --nproc_per_node 4 -m vimpnet_ros train --config vimpnet_reference --set data.train.root=VRDS/train
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Config selection, overrides, resume and fine-tuning options."""
    parser.add_argument(
        "--config",
        help="a packaged config name (vimpnet_reference, vimpnet_lite_synthetic, ...) or a YAML file",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=2e-4 --set data.train.root=/data/VRDS (repeatable)",
    )
    parser.add_argument("--out-dir", help="output folder (overrides log.out_dir)")
    parser.add_argument(
        "--init-from",
        help="fine-tune from this checkpoint (ours, the published MMEditing .pth, or a bare state dict)",
    )
    parser.add_argument(
        "--resume",
        help="continue a run exactly: 'auto' (newest checkpoint in the output folder) or an iter_*.state.pt file",
    )
    parser.add_argument(
        "--start-step",
        type=int,
        default=0,
        help="continue a run from its weights alone (--init-from or the config's init_from; kept weights on a new "
        "machine): schedule, data order and per-step draws go on at this step, the optimizer's moments start afresh",
    )
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (the schedule stays as configured)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        help="stop after this much wall time (then save); with log.save_every_seconds a kill loses little",
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the config)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="overrides the config")
    parser.add_argument("--list-configs", action="store_true", help="print the packaged configs and exit")


def run(args: argparse.Namespace) -> int:
    """Load the config, train, print a JSON summary (rank 0)."""
    from vimpnet_ros.errors import ConfigError
    from vimpnet_ros.training.config import load_train_config, packaged_configs
    from vimpnet_ros.training.trainer import Trainer

    if args.list_configs:
        print("\n".join(packaged_configs()))
        return 0
    if args.config is None:
        raise ConfigError("--config is required (see --list-configs for the packaged ones)")
    overrides = list(args.overrides)
    for key, value in (
        ("log.out_dir", args.out_dir),
        ("init_from", args.init_from),
        ("device", args.device),
        ("precision", args.precision),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_train_config(args.config, overrides)
    trainer = Trainer(config)
    try:
        trainer.setup(resume=args.resume, start_step=args.start_step)
        summary = trainer.train(max_steps=args.max_steps, max_seconds=args.max_seconds)
        if trainer.ctx.is_main:
            print(json.dumps({"out_dir": str(trainer.out_dir), **summary}, indent=2, default=str))
    finally:
        trainer.close()
    return 0
