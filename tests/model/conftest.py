"""Fixtures for the model tests: the published state-dict layout and the golden weights.

Everything they read is in ``tests/model/data`` (copied or reduced from the ViMP-Net reference
material, see ``data/README.md``), so a plain clone runs them with nothing beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

DATA_DIR = Path(__file__).resolve().parent / "data"
#: Names and shapes of the published generator's tensors, in state-dict order (a verbatim copy).
OFFICIAL_STATE_DICT_JSON = DATA_DIR / "vimpnet_official_state_dict.json"
GOLDEN_WEIGHTS_SHA256 = "cfe5c8fb1829b5cbe7535a01cbe4e972a91574bf45e4cab2e219017a952c29c8"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@pytest.fixture(scope="session")
def official_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the published generator, in state-dict order."""
    data = json.loads(OFFICIAL_STATE_DICT_JSON.read_text())
    shapes = [(name, tuple(shape)) for name, shape in data["tensors"]]
    assert len(shapes) == data["num_tensors"], f"{OFFICIAL_STATE_DICT_JSON} is truncated"
    return shapes


def golden_state_dict(shapes: list[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """Weights by the golden recipe (``data/README.md``): seeded draws in sorted-name order."""
    gen = torch.Generator().manual_seed(20231024)
    state: dict[str, torch.Tensor] = {}
    shape_of = dict(shapes)
    for name in sorted(shape_of):
        shape = shape_of[name]
        if name == "spynet.mean":
            state[name] = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            continue
        if name == "spynet.std":
            state[name] = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            continue
        t = torch.randn(shape, generator=gen, dtype=torch.float32)
        if len(shape) >= 2:
            t = t * (0.7 / math.sqrt(math.prod(shape[1:])))
        elif "norm" in name and name.endswith(".weight"):
            t = 1 + 0.1 * t
        else:
            t = 0.1 * t
        state[name] = t
    return state


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of name + little-endian float32 bytes, names sorted (the golden README's check)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode("utf-8"))
        digest.update(state[name].detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def golden_weights(official_shapes: list[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """The golden weights, verified against the SHA-256 the golden README states."""
    state = golden_state_dict(official_shapes)
    assert state_dict_sha256(state) == GOLDEN_WEIGHTS_SHA256, "golden weight recipe does not reproduce the README hash"
    return state
