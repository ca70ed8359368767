"""Fixtures for the model tests: the published state-dict layout.

Everything they read is in ``tests/model/data`` (copied or reduced from the ViMP-Net reference
material, see ``data/README.md``), so a plain clone runs them with nothing beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"
#: Names and shapes of the published generator's tensors, in state-dict order (a verbatim copy).
OFFICIAL_STATE_DICT_JSON = DATA_DIR / "vimpnet_official_state_dict.json"


@pytest.fixture(scope="session")
def official_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the published generator, in state-dict order."""
    data = json.loads(OFFICIAL_STATE_DICT_JSON.read_text())
    shapes = [(name, tuple(shape)) for name, shape in data["tensors"]]
    assert len(shapes) == data["num_tensors"], f"{OFFICIAL_STATE_DICT_JSON} is truncated"
    return shapes
