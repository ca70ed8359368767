"""Measuring helpers shared by the engine benchmark and the GPU check: machine record, frames, timing, launches.

Only torch and numpy, imported inside the functions (the command line imports this module
to build its help), so the GPU check runs on a machine with nothing else installed.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vimpnet_ros.engine import InferenceEngine, Stream

#: CUDA runtime/driver calls that start work on the GPU from the CPU (what the profiler counts as launches).
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch", "cudaLaunchCooperativeKernel")
#: Nanoseconds between synthetic frames (20 Hz, well inside the engine's max_gap_s).
FRAME_NS = 50_000_000


def _nvidia_smi() -> str | None:
    """``name, driver_version, memory.total`` of the first GPU from nvidia-smi (None where it is absent)."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def machine_record(device: str) -> dict[str, Any]:
    """GPU name and memory, torch/CUDA/cuDNN/Triton versions, CPU: what a timing needs beside it to mean anything."""
    import torch

    from vimpnet_ros.engine import cpu_description, installed_version

    record: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": installed_version("triton"),
        "cpu": cpu_description(),
        "logical_cpus": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        record.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(),
            nvidia_smi=_nvidia_smi(),
        )
    return record


def synthetic_frames(count: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` (height, width, 3) uint8 noise frames panning one pixel per frame (content does not change timing)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height + count, width + count, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[k : k + height, k : k + width]) for k in range(count)]


def percentiles(times_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean of per-frame times and the frame rate they give."""
    import numpy as np

    values = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "mean_ms": float(values.mean()),
        "fps": float(1000.0 / values.mean()),
    }


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU), so a wall-clock time covers it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_launches(run: Callable[[], object], device: torch.device) -> dict[str, int]:
    """What one call of ``run`` starts, from ``torch.profiler``.

    CUDA: ``launch_calls`` (CPU-side launch API calls, CUDA graph launches included),
    ``graph_launches`` and ``gpu_kernels`` (kernels the GPU ran, those inside graphs too).
    CPU: ``aten_ops`` (operator calls, nested ones included).
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    synchronize(device)
    with profile(activities=activities) as prof:
        run()
        synchronize(device)
    events = list(prof.events())
    if device.type != "cuda":
        return {"aten_ops": sum(1 for e in events if e.name.startswith("aten::"))}
    return {
        "launch_calls": sum(1 for e in events if e.name.startswith(LAUNCH_CALLS)),
        "graph_launches": sum(1 for e in events if e.name.startswith("cudaGraphLaunch")),
        "gpu_kernels": sum(1 for e in events if e.device_type == DeviceType.CUDA and not _is_copy(e.name)),
    }


def _is_copy(name: str) -> bool:
    """Memory copies and fills the profiler lists among GPU activities (not kernels the model launched)."""
    return "memcpy" in name.lower() or "memset" in name.lower()


def admit_all(
    engine: InferenceEngine, streams: Sequence[Stream], frames: Sequence[np.ndarray], k: int
) -> list[tuple[Stream, Any]]:
    """One frame per stream (stamp ``k`` frames in): the (stream, target) jobs ready to restore."""
    jobs = [(s, engine.admit(s, frame, k * FRAME_NS)) for s, frame in zip(streams, frames, strict=True)]
    return [(stream, target) for stream, target in jobs if target is not None]


def push_all(engine: InferenceEngine, streams: Sequence[Stream], frames: Sequence[np.ndarray], k: int,
             restore: bool = True) -> list[Any]:  # fmt: skip
    """One frame per stream (stamp ``k`` frames in), restored in one batch as the node does for cameras of one size."""
    ready = admit_all(engine, streams, frames, k)
    return engine.restore(ready) if restore and ready else []


def launches(record: dict[str, Any]) -> int | None:
    """Kernel launches per push (CPU-side launch calls on CUDA, operator calls on CPU) of a record, if measured."""
    counts = record.get("launches_per_push") or {}
    return counts.get("launch_calls", counts.get("aten_ops"))


class StreamBench:
    """``cameras`` streams of (width, height) frames through one engine, as the node runs them.

    The constructor prepares the engine (compiles or loads static-shape programs; timed as
    ``prepare_s``) and fills every window (T pushes: context, then one restore), so each
    later push is steady state: one new frame per camera, restored in one batch.
    """

    def __init__(self, engine: InferenceEngine, width: int, height: int, cameras: int, pushes: int) -> None:
        start = time.perf_counter()
        engine.prepare(width, height, streams=cameras)
        self.prepare_s = time.perf_counter() - start
        self.engine = engine
        self.streams = [engine.open_stream(f"cam{i}") for i in range(cameras)]
        total = engine.config.window_size + pushes
        self.frames = [synthetic_frames(total, width, height, seed=i) for i in range(cameras)]
        window = engine.config.window_size
        for k in range(window):
            push_all(engine, self.streams, [camera[k] for camera in self.frames], k, restore=k == window - 1)
        self.next = window

    def push(self) -> None:
        """One steady-state push (a frame of every camera)."""
        push_all(self.engine, self.streams, [camera[self.next] for camera in self.frames], self.next)
        self.next += 1

    def time(self, count: int) -> list[float]:
        """Wall milliseconds of ``count`` pushes, results back on the host."""
        times = []
        for _ in range(count):
            begin = time.perf_counter()
            self.push()
            times.append((time.perf_counter() - begin) * 1000.0)
        return times

    def launches(self) -> dict[str, int]:
        """What one push launches (:func:`count_launches`)."""
        return count_launches(self.push, self.engine.device)

    def record(self, count: int) -> dict[str, Any]:
        """Timing of ``count`` pushes (:func:`percentiles`), the per-camera rate, and one push's launches."""
        record: dict[str, Any] = percentiles(self.time(count))
        record["camera_hz"] = record["fps"]  # each push restores one frame of every camera
        record["launches_per_push"] = self.launches()
        return record


def device_memory(device: torch.device) -> dict[str, float]:
    """Peak allocated and reserved GPU memory of this process in MiB (empty on CPU)."""
    import torch

    if device.type != "cuda":
        return {}
    return {
        "peak_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
        "peak_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20,
    }
