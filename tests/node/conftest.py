"""Fixtures for node tests: probes on the test's rclpy context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.node.rosprobe import Probe


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
