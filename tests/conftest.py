"""Shared fixtures for tests that talk ROS 2 (DDS over loopback).

Every ROS test gets its own ``ROS_DOMAIN_ID`` (so parallel tests, pytest workers
and other people's test runs on the same machine do not hear each other) and
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (nothing leaves the machine). Nodes
under test run in subprocesses started by :func:`start_node`; the test process
talks to them through an rclpy context of its own (:func:`ros_context`).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_DOMAIN_COUNTER = itertools.count()
#: ROS_DOMAIN_ID values tests draw from (1..101: safe port range for every RMW on Linux).
DOMAIN_MIN, DOMAIN_MAX = 1, 101


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers used across the suite (harmless if pyproject registers them too)."""
    config.addinivalue_line("markers", "slow: long-running test (make test-slow)")
    config.addinivalue_line("markers", "ros: needs rclpy and DDS")


def next_domain_id() -> int:
    """A domain id unlikely to be used by another test running at the same time on this machine."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    worker_index = int(worker[2:]) if worker[2:].isdigit() else 0
    span = DOMAIN_MAX - DOMAIN_MIN + 1
    return DOMAIN_MIN + (os.getpid() * 7 + worker_index * 13 + next(_DOMAIN_COUNTER)) % span


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for this test's ROS processes (also applied to the test process itself)."""
    domain = str(next_domain_id())
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


@pytest.fixture
def ros_context(ros_env: dict[str, str]) -> Iterator[object]:
    """An initialised rclpy Context on this test's domain; shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


class NodeProcess:
    """A node running in a subprocess, its output captured in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        self.process = subprocess.Popen(
            args, env=env, cwd=REPO_ROOT, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Everything the process has written so far."""
        self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for_log(self, text: str, timeout: float = 60.0) -> bool:
        """Wait until ``text`` appears in the output (False on timeout or if the process ended first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if not self.alive():
                return text in self.log()
            time.sleep(0.1)
        return False

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 5.0) -> tuple[int | None, float]:
        """Send ``sig``; return (exit code or None if it did not end in ``timeout``, seconds it took)."""
        started = time.monotonic()
        if self.alive():
            self.process.send_signal(sig)
        code = self.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        """Make sure the process (group) is gone."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log_file.close()


@pytest.fixture
def start_node(ros_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Factory: ``start_node("vimpnet_ros.node.main", ros_args=[...], args=[...])`` runs ``python -m`` it.

    ``ros_args`` go after ``--ros-args``. Processes still running at the end of the
    test are killed; their logs stay in ``tmp_path``.
    """
    started: list[NodeProcess] = []

    def start(
        module: str = "vimpnet_ros.node.main",
        ros_args: list[str] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> NodeProcess:
        command = [sys.executable, "-m", module, *(args or [])]
        if ros_args:
            command += ["--ros-args", *ros_args]
        log_path = tmp_path / f"node{len(started)}.log"
        node = NodeProcess(command, {**ros_env, **(env or {})}, log_path)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def write_random_checkpoint(path: Path, poison: bool = False) -> Path:
    """Save a randomly initialised model of the engine's default config with the package's checkpoint writer.

    ``poison`` fills every weight with NaN so the model's output is NaN (the node must
    then publish the input and flag it).
    """
    import torch

    from vimpnet_ros.engine import EngineConfig
    from vimpnet_ros.model import VimpNet, get_config
    from vimpnet_ros.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = get_config(EngineConfig().model)
    model = VimpNet(config)
    if poison:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float("nan"))
    save_checkpoint(path, model, config)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight checkpoint of the default model (real model, meaningless quality) shared by the suite."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "default_model_random.pth")


@pytest.fixture(scope="session")
def nan_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint whose weights are NaN (model output NaN)."""
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "default_model_nan.pth", poison=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """ONE local Ray (2 CPUs, no dashboard) for the whole test run: its start-up (seconds) is paid once."""
    import ray

    from vimpnet_ros.fleet.run import start_local_ray

    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()
