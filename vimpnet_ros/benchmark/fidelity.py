"""The golden clip outside pytest: its weights and input from their recipes, the stored reference on a grid.

The model tests (``tests/model/test_golden.py``) check the CPU against the reference's
outputs kept reduced in ``tests/model/data`` (see its README for the recipes). The GPU
check runs the same comparison on CUDA, in a process that has no pytest, so the recipes
are written here too: weights drawn from ``torch.Generator().manual_seed(20231024)`` in
sorted-name order, the input ``torch.rand`` with seed 7, every array compared on every
16th row and column (every 4th at quarter resolution) plus the last two and index 1.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vimpnet_ros.model import VimpNet

#: Where a source checkout keeps the golden files (absent from an installed wheel).
GOLDEN_DIR = Path(__file__).resolve().parents[2] / "tests" / "model" / "data"
GOLDEN_FILE = "golden_vimpnet_seed20231024_5x256x256_grid16.npz"
STATE_DICT_JSON = "vimpnet_official_state_dict.json"
WEIGHTS_SEED, INPUT_SEED = 20231024, 7
INPUT_SHAPE = (1, 5, 3, 256, 256)
#: SHA-256 of the recipe's weights (names sorted, each followed by its little-endian float32 bytes).
WEIGHTS_SHA256 = "cfe5c8fb1829b5cbe7535a01cbe4e972a91574bf45e4cab2e219017a952c29c8"
#: The reference's tolerance for float32 (max and mean absolute error per array).
MAX_ABS, MEAN_ABS = 2e-4, 1e-5
GRID_STEP = 16
#: Arrays of ``VimpNet.forward`` compared with the reference (full resolution, (n, t, c, 256, 256)).
ARRAYS = ("stage1", "drop_mask", "streak_map", "output")
IMAGENET = {"spynet.mean": [0.485, 0.456, 0.406], "spynet.std": [0.229, 0.224, 0.225]}


def missing(directory: Path = GOLDEN_DIR) -> str | None:
    """Why the golden check cannot run here (a file it needs is absent), or None."""
    for name in (GOLDEN_FILE, STATE_DICT_JSON):
        if not (directory / name).is_file():
            return f"{directory / name} is missing (the golden data ships with a source checkout)"
    return None


def golden_state_dict(directory: Path = GOLDEN_DIR) -> dict[str, torch.Tensor]:
    """The golden weights (reference names) by the recipe of ``tests/model/data/README.md``, hash-checked."""
    import torch

    data = json.loads((directory / STATE_DICT_JSON).read_text())
    shapes = {name: tuple(shape) for name, shape in data["tensors"]}
    gen = torch.Generator().manual_seed(WEIGHTS_SEED)
    state: dict[str, torch.Tensor] = {}
    for name in sorted(shapes):
        if name in IMAGENET:
            state[name] = torch.tensor(IMAGENET[name]).view(1, 3, 1, 1)
            continue
        shape = shapes[name]
        t = torch.randn(shape, generator=gen, dtype=torch.float32)
        if len(shape) >= 2:
            t = t * (0.7 / math.sqrt(math.prod(shape[1:])))
        elif "norm" in name and name.endswith(".weight"):
            t = 1 + 0.1 * t
        else:
            t = 0.1 * t
        state[name] = t
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode("utf-8"))
        digest.update(state[name].contiguous().numpy().astype("<f4").tobytes())
    if digest.hexdigest() != WEIGHTS_SHA256:
        raise RuntimeError("the golden weight recipe no longer reproduces its hash (another torch RNG?)")
    return state


def golden_model(directory: Path = GOLDEN_DIR) -> VimpNet:
    """A full ``vimpnet`` with the golden weights, eval mode, CPU."""
    from vimpnet_ros.model import VimpNet, get_config
    from vimpnet_ros.model.checkpoint import load_state_dict_strict

    model = VimpNet(get_config("vimpnet")).eval()
    load_state_dict_strict(model, golden_state_dict(directory), "golden weights")
    return model


def golden_input() -> torch.Tensor:
    """The golden clip ``(1, 5, 3, 256, 256)`` in [0, 1]."""
    import torch

    return torch.rand(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED), dtype=torch.float32)


def reference(directory: Path = GOLDEN_DIR) -> dict[str, np.ndarray]:
    """The stored reference arrays, already on the grid."""
    import numpy as np

    with np.load(directory / GOLDEN_FILE) as data:
        return {name: data[name] for name in data.files}


def reduce_to_grid(array: np.ndarray) -> np.ndarray:
    """``(..., s, s)`` -> ``(..., k, k)``: the grid rows and columns the reference was reduced to."""
    import numpy as np

    size = array.shape[-1]
    step = GRID_STEP * size // INPUT_SHAPE[-1]
    index = np.array(sorted({*range(0, size, step), 1, size - 2, size - 1}))
    return array[..., index[:, None], index[None, :]]


def errors(ours: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """Max and mean absolute error of ``ours`` (full resolution) on the grid against ``expected`` (on the grid)."""
    import numpy as np

    diff = np.abs(reduce_to_grid(ours).astype(np.float64) - expected.astype(np.float64))
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}


def within_tolerance(report: dict[str, Any]) -> bool:
    """Whether every array of ``report`` (name -> errors) meets the reference's float32 tolerance."""
    return all(e["max_abs"] < MAX_ABS and e["mean_abs"] < MEAN_ABS for e in report.values())
