"""Run by ``torchrun`` from test_distributed.py: train a few steps, dump this rank's weights and losses."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from vimpnet_ros.training.config import config_from_dict
from vimpnet_ros.training.trainer import Trainer


def main(config_path: str, out_dir: str, steps: int) -> None:
    """Train ``steps`` steps under the process group torchrun set up; write rank<r>.pt."""
    config = config_from_dict(json.loads(Path(config_path).read_text()))
    trainer = Trainer(config, log=lambda message: print(message, flush=True))
    try:
        trainer.setup()
        trainer.train(max_steps=steps)
        rank = int(os.environ["RANK"])
        torch.save(
            {
                "world_size": trainer.ctx.world_size,
                "backend": trainer.ctx.backend,
                "state": trainer.model.state_dict(),
                "history": trainer.history,
                "indices": list(trainer.sampler),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        trainer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
