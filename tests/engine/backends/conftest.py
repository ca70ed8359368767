"""A cache of compiled ``vimpnet_lite`` programs built once per test session (for the slow compiled-backend tests).

Compiling the three steps of one profile takes about two minutes on a 2-core CI machine, so
the tests that need real programs share these: fp32, window 3, frames of 38x30 (tiles padded
to 40x32), for one and for two cameras (batch 1 and batch 2 profiles).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import CPU_ENV
from vimpnet_ros.engine import EngineConfig, InferenceEngine
from vimpnet_ros.model import VimpNet

#: Frame size (width, height) of the shared compiled profiles.
COMPILED_SIZE = (38, 30)
#: The engine settings the shared programs are compiled for (plus ``engine_cache_dir``).
COMPILED_CONFIG = EngineConfig(backend="compiled", precision="fp32", device="cpu", window_size=3, tile_batch=4)


@pytest.fixture(scope="session")
def compiled_cache(lite_model: VimpNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An engine cache holding the batch-1 and batch-2 programs of :data:`COMPILED_CONFIG` for ``lite_model``."""
    directory = tmp_path_factory.mktemp("compiled-cache")
    engine = InferenceEngine(COMPILED_CONFIG.replace(engine_cache_dir=directory), environment=CPU_ENV).load(lite_model)
    engine.prepare(*COMPILED_SIZE)
    engine.prepare(*COMPILED_SIZE, streams=2)
    status = engine.backend.status()  # type: ignore[union-attr]
    assert len(status["ready"]) == 6 and not status["failed"], status
    return directory
