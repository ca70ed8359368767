"""Fixtures for node tests: probes on the test's rclpy context and random-weight checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")
from rosprobe import Probe, write_random_checkpoint


@pytest.fixture
def probe_factory(ros_context: Any) -> Iterator[Callable[..., Probe]]:
    """Make probes on this test's context; destroyed at the end."""
    probes: list[Probe] = []

    def make(prefixes: tuple[str, ...] = ("",), reliable: bool = True) -> Probe:
        probe = Probe(ros_context, prefixes, reliable)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight vimpnet_lite checkpoint shared by the node tests."""
    pytest.importorskip("vimpnet_ros.model.checkpoint")
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "vimpnet_lite_random.pth")


@pytest.fixture(scope="session")
def nan_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint whose weights are NaN (model output NaN)."""
    pytest.importorskip("vimpnet_ros.model.checkpoint")
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "vimpnet_lite_nan.pth", poison=True)
