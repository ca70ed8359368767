"""Two-process DistributedDataParallel training on CPU (gloo) through torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow  # ~20 s of CPU; minutes of wall time on a busy 2-core machine
def test_two_gloo_ranks_stay_in_sync(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    # SPyNet thaws at step 2, so the DDP wrapper is rebuilt mid-run; 3 steps cover both phases.
    config = make_config(tiny_train_root, tmp_path / "run", **{"optim.spynet_freeze_iters": 2})
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(WORKER),
        str(config_path),
        str(tmp_path),
        "3",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in ranks)
    # The ranks trained on different clips (DistributedSampler split) ...
    assert set(ranks[0]["indices"]).isdisjoint(ranks[1]["indices"])
    # ... yet hold identical weights after the all-reduced steps.
    for name, value in ranks[0]["state"].items():
        torch.testing.assert_close(value, ranks[1]["state"][name], rtol=0, atol=0, msg=name)
    assert ranks[0]["history"][-1]["step"] == 3
    # Only rank 0 wrote files, and what it wrote is what every rank holds.
    saved = torch.load(tmp_path / "run" / "final.pth", weights_only=True)["state_dict"]
    for name, value in ranks[1]["state"].items():
        torch.testing.assert_close(saved[name], value, rtol=0, atol=0, msg=name)
