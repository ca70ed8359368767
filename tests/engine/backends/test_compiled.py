"""Compiled backend: AOTInductor programs per shape profile, cached on disk, eager PyTorch while they build.

CI has no GPU, so programs are compiled with inductor's C++ backend on the CPU; the CUDA-graph
replay is exercised by ``vimpnet-ros benchmark gpu``. Real compilations take minutes here, so the
tests that need them are slow and share one cache (``conftest.compiled_cache``); the default suite
checks the step modules trace as one graph, the keys, and the fallbacks that need no finished build.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.backends.conftest import COMPILED_CONFIG, COMPILED_SIZE
from tests.engine.conftest import CPU_ENV, moving_frames, random_model
from vimpnet_ros.engine import InferenceEngine
from vimpnet_ros.engine.backends import compiled, static
from vimpnet_ros.engine.backends.base import TorchBackend
from vimpnet_ros.engine.backends.compiled import CompiledBackend, build_parallelism, precise_step, step_dtypes
from vimpnet_ros.engine.backends.registry import REGISTRY
from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.model import VimpNet

TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parents[3]
WIDTH, HEIGHT = COMPILED_SIZE


def _backend(model: VimpNet, cache: Path, background: bool = True, output_index: int = 2) -> CompiledBackend:
    return CompiledBackend(StepModules(model, output_index), torch.device("cpu"), "fp32", cache, background)


def _frames(batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, HEIGHT + 2, WIDTH + 2, generator=torch.Generator().manual_seed(1))


def _wait_idle(backend: CompiledBackend, frames: torch.Tensor, timeout_s: float = 600.0) -> None:
    """Call the frame step (served eagerly meanwhile) until no compilation runs in the background."""
    deadline = time.monotonic() + timeout_s
    backend.frame(frames)
    while backend.building():
        assert time.monotonic() < deadline, "background compilation did not finish"
        time.sleep(0.5)
        backend.frame(frames)


def _network_outputs(engine: InferenceEngine, streams: int, count: int = 4) -> list[list[torch.Tensor]]:
    """Float outputs (5, h, w) per stream and frame; the streams' frames restored in one batch per push."""
    opened = [engine.open_stream(f"cam{i}") for i in range(streams)]
    cameras = [moving_frames(count, HEIGHT, WIDTH, seed=i) for i in range(streams)]
    outputs: list[list[torch.Tensor]] = [[] for _ in range(streams)]
    for k in range(count):
        jobs = [(stream, engine.admit(stream, frames[k], k * 50_000_000)) for stream, frames in zip(opened, cameras,
                                                                                            strict=True)]  # fmt: skip
        ready = [(stream, target) for stream, target in jobs if target is not None]
        for i, output in enumerate(engine.run_network(ready)):
            outputs[i].append(output.clone())
    return outputs


# -- default suite: no finished compilation needed ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vimpnet_lite", "vimpnet"])
def test_steps_trace_as_one_graph(name: str) -> None:
    """What is exported and compiled is one graph per step (``fullgraph=True``: a graph break is an error)."""
    model = random_model(name) if name == "vimpnet_lite" else random_model(name, seed=1)
    steps = StepModules(model, 2)
    backend = CompiledBackend(steps, torch.device("cpu"), "fp32", "/nonexistent", background_build=False)
    precisions = ("fp32", "bf16") if name == "vimpnet_lite" else ("fp32",)
    for precision in precisions:
        for step, shapes in backend.profile_shapes(1, 3, 32, 40).items():
            module = precise_step(steps, step, precision, torch.device("cpu"))
            inputs = [torch.rand(*s).to(d) for s, d in zip(shapes, step_dtypes(step, precision)[0], strict=True)]
            torch._dynamo.reset()
            with torch.no_grad():
                outputs = torch.compile(module, fullgraph=True, backend="eager", dynamic=False)(*inputs)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            assert [o.dtype for o in outputs] == list(step_dtypes(step, precision)[1])


def test_key_material_covers_what_invalidates_a_program(lite_model: VimpNet, tmp_path: Path) -> None:
    backend = _backend(lite_model, tmp_path)
    shapes = backend.profile_shapes(1, 3, 32, 40)
    material = backend.key_material(("window", shapes["window"], 1))
    assert material["input_shapes"] == [[1, 3, 3, 32, 40], [1, 3, 32, 8, 10], [1, 2, 2, 8, 10], [1, 2, 2, 8, 10]]
    assert material["precision"] == "fp32" and material["output_index"] == 2 and material["device"] == "cpu"
    assert material["torch"] == torch.__version__ and material["device_name"]  # the CPU model on CPU
    assert {"weights_sha256", "input_dtypes", "format", "model", "rules_version"} <= set(material)
    latest = _backend(lite_model, tmp_path, output_index=4).key_material(("window", shapes["window"], 1))
    assert backend.cache.entry("w", material).program != backend.cache.entry("w", latest).program
    assert material["stage1_passes"] == 1
    twice = random_model()
    twice.set_stage1_passes(2)  # the same weights, another program
    twice_backend = _backend(twice, tmp_path)
    passes = twice_backend.key_material(("window", shapes["window"], 2))
    assert passes["stage1_passes"] == 2 and passes["weights_sha256"] == material["weights_sha256"]
    assert backend.cache.entry("w", material).program != backend.cache.entry("w", passes).program
    # the key's count, not the model's now (the engine switches it per frame size while a build runs)
    assert backend.key_material(("window", shapes["window"], 2)) == passes
    frame = ("frame", shapes["frame"], 0)
    assert backend.key_material(frame) == twice_backend.key_material(frame)  # the frame step runs no stage 1
    bf16 = CompiledBackend(StepModules(lite_model, 2), torch.device("cpu"), "bf16", tmp_path)
    assert bf16.key_material(("frame", shapes["frame"], 0))["output_dtypes"] == ["torch.bfloat16", "torch.float32"]


def test_build_parallelism_leaves_cores_to_the_engine() -> None:
    assert [build_parallelism(n) for n in (1, 2, 4, 8, 16)] == [1, 1, 1, 2, 4]


def test_failed_compile_falls_back_to_eager_with_one_log_line(
    lite_model: VimpNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A compilation that fails (here: in-process, the compiler raising) leaves that shape on eager PyTorch for good."""

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("C++ compile error: g++ exited with code 1")

    monkeypatch.setattr(compiled, "compile_package", broken)
    config = COMPILED_CONFIG.replace(engine_cache_dir=tmp_path, background_build=False)
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    eager = InferenceEngine(config.replace(backend="torch"), environment=CPU_ENV).load(lite_model)
    stream, reference = engine.open_stream("cam"), eager.open_stream("cam")
    with caplog.at_level(logging.ERROR, logger="vimpnet_ros"):
        for k, frame in enumerate(moving_frames(4, HEIGHT, WIDTH)):
            result, expected = engine.push(stream, frame, k), eager.push(reference, frame, k)
            assert result is not None and expected is not None and result.valid
            assert np.array_equal(result.image, expected.image) and result.backend == "compiled"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3, errors  # one line per program (frame, flow, window), never repeated per frame
    assert all("g++ exited with code 1" in e and "eager PyTorch keeps serving" in e for e in errors)
    status = engine.backend.status()  # type: ignore[union-attr]
    assert len(status["failed"]) == 3 and status["compiled_calls"] == 0 and status["eager_calls"] > 3


def test_corrupt_entry_is_rebuilt_in_the_background_while_eager_serves(
    lite_model: VimpNet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = _backend(lite_model, tmp_path)
    frames = _frames()
    key = ("frame", tuple(tuple(s) for s in backend.profile_shapes(1, 3, *frames.shape[2:])["frame"]), 0)
    name, material = backend.program_name(key), backend.key_material(key)
    backend.cache.load_or_build(name, material, lambda: b"not a package", lambda d, p: p.write_bytes(d), lambda p: p)
    assert backend.cache.is_fresh(name, material)
    with caplog.at_level(logging.INFO, logger="vimpnet_ros"):
        feats, _ = backend.frame(frames)
    try:
        with torch.inference_mode():
            assert torch.equal(feats, StepModules(lite_model, 2).frame(frames)[0])  # eager, bit for bit
        assert "is corrupt" in caplog.text and backend.building() == [name]
        assert not backend.cache.is_fresh(name, material)  # discarded, not trusted again
    finally:
        backend.close()
    assert backend.building() == [] and not list(backend.cache.directory.glob(".job-*"))


def test_stale_entry_is_rebuilt(lite_model: VimpNet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = _backend(lite_model, tmp_path)
    frames = _frames()
    key = ("frame", tuple(tuple(s) for s in backend.profile_shapes(1, 3, *frames.shape[2:])["frame"]), 0)
    name, material = backend.program_name(key), backend.key_material(key)
    entry = backend.cache.entry(name, material)
    entry.program.parent.mkdir(parents=True)
    entry.program.write_bytes(b"old")
    entry.meta.write_text(json.dumps({"key": entry.key, "material": {**material, "torch": "2.0.0"}}))
    try:
        backend.frame(frames)
        assert backend.building() == [name]
    finally:
        backend.close()


def test_engine_reports_background_builds(lite_model: VimpNet, tmp_path: Path) -> None:
    """What the node's diagnostics show: the program being compiled; the first frame is served, not held."""
    config = COMPILED_CONFIG.replace(engine_cache_dir=tmp_path)
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    try:
        started = time.monotonic()
        result = engine.push(engine.open_stream("cam"), moving_frames(1, HEIGHT, WIDTH)[0], 0)
        assert time.monotonic() - started < 10.0  # far less than a compilation
        assert result is not None and result.valid and result.backend == "compiled"
        assert engine.building() == ["vimpnet_lite-frame-1x3x32x40-fp32"]
    finally:
        engine.close()
    assert engine.building() == []


# -- slow: real compilations ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("output_frame", ["latest", "center"])
def test_compiled_stream_equals_eager(lite_model: VimpNet, compiled_cache: Path, output_frame: str) -> None:
    """fp32 compiled vs eager over a whole stream: network outputs within 1e-4 (center mode compiles its own window)."""
    config = COMPILED_CONFIG.replace(engine_cache_dir=compiled_cache, output_frame=output_frame)
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    engine.prepare(WIDTH, HEIGHT)
    eager = InferenceEngine(config.replace(backend="torch"), environment=CPU_ENV).load(lite_model)
    ours, theirs = _network_outputs(engine, 1)[0], _network_outputs(eager, 1)[0]
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert (a - b).abs().max().item() < TOLERANCE
    status = engine.backend.status()  # type: ignore[union-attr]
    assert status["eager_calls"] == 0 and status["compiled_calls"] > 0


@pytest.mark.slow
def test_batched_cameras_equal_single_cameras(lite_model: VimpNet, compiled_cache: Path) -> None:
    """Two cameras in one batch (batch-2 programs) give what each camera alone gives (batch-1 programs)."""
    config = COMPILED_CONFIG.replace(engine_cache_dir=compiled_cache)
    batched = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    batched.prepare(WIDTH, HEIGHT, streams=2)
    together = _network_outputs(batched, 2)
    assert batched.backend.status()["eager_calls"] == 0  # type: ignore[union-attr]
    for camera in range(2):
        single = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
        single.prepare(WIDTH, HEIGHT)
        stream = single.open_stream("alone")
        frames = moving_frames(4, HEIGHT, WIDTH, seed=camera)
        for k, frame in enumerate(frames):
            alone = single.run_network([(stream, single.admit(stream, frame, k * 50_000_000))])[0]
            assert (alone - together[camera][k]).abs().max().item() < TOLERANCE
        assert single.backend.status()["eager_calls"] == 0  # type: ignore[union-attr]


_SECOND_PROCESS = """
import json, sys, time
start = time.perf_counter()
from tests.engine.backends.conftest import COMPILED_CONFIG, COMPILED_SIZE
from tests.engine.conftest import CPU_ENV, moving_frames, random_model
from vimpnet_ros.engine import InferenceEngine
engine = InferenceEngine(COMPILED_CONFIG.replace(engine_cache_dir=sys.argv[1]), environment=CPU_ENV)
engine.load(random_model())
engine.prepare(*COMPILED_SIZE)
result = engine.push(engine.open_stream("cam"), moving_frames(1, COMPILED_SIZE[1], COMPILED_SIZE[0])[0], 0)
print(json.dumps({"status": engine.backend.status(), "valid": result.valid, "seconds": time.perf_counter() - start}))
"""


@pytest.mark.slow
def test_second_process_loads_the_cache_without_compiling(compiled_cache: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in compiled_cache.rglob("*")}
    done = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, str(compiled_cache)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["valid"] and report["status"]["eager_calls"] == 0 and len(report["status"]["ready"]) == 3
    assert "compiling" not in done.stderr
    assert report["seconds"] < 60.0  # imports, model, 3 packages loaded, one frame: no compilation
    assert {p.name: p.stat().st_mtime_ns for p in compiled_cache.rglob("*")} == before  # nothing rewritten


@pytest.mark.slow
def test_corrupt_and_stale_entries_are_rebuilt_and_work(
    lite_model: VimpNet, compiled_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(compiled_cache, cache)
    (frame_entry,) = (cache / "aoti").glob("vimpnet_lite-frame-1x*.pt2")
    frame_entry.write_bytes(b"truncated")
    (flow_meta,) = (cache / "aoti").glob("vimpnet_lite-flow-1x*.json")
    meta = json.loads(flow_meta.read_text())
    meta["material"]["torch"] = "2.0.0"
    flow_meta.write_text(json.dumps(meta))
    config = COMPILED_CONFIG.replace(engine_cache_dir=cache)
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    with caplog.at_level(logging.INFO, logger="vimpnet_ros"):
        engine.prepare(WIDTH, HEIGHT)
    assert "is corrupt" in caplog.text
    status = engine.backend.status()  # type: ignore[union-attr]
    assert len(status["ready"]) == 3 and not status["failed"], status
    rebuilt = [r.getMessage() for r in caplog.records if "ready after" in r.getMessage()]
    assert len(rebuilt) == 2 and any("frame" in m for m in rebuilt) and any("flow" in m for m in rebuilt)
    eager = InferenceEngine(config.replace(backend="torch"), environment=CPU_ENV).load(lite_model)
    for a, b in zip(_network_outputs(engine, 1)[0], _network_outputs(eager, 1)[0], strict=True):
        assert (a - b).abs().max().item() < TOLERANCE


@pytest.mark.slow
def test_failing_background_compiler_keeps_eager_serving(
    lite_model: VimpNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The child's C++ compiler fails for real (``CXX=false``): logged with the child's error, eager keeps serving."""
    monkeypatch.setenv("CXX", shutil.which("false") or "/bin/false")
    backend = _backend(lite_model, tmp_path)
    frames = _frames()
    with caplog.at_level(logging.ERROR, logger="vimpnet_ros"):
        _wait_idle(backend, frames)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "background compilation failed" in errors[0], errors
    with torch.inference_mode():
        assert torch.equal(backend.frame(frames)[0], StepModules(lite_model, 2).frame(frames)[0])
    assert backend.building() == [] and len(errors) == 1  # not retried


@pytest.mark.slow
def test_full_vimpnet_compiles_and_matches_eager(tmp_path: Path) -> None:
    """The published-size model through all three compiled steps (fp32, small profile) equals eager within 1e-4."""
    model = random_model("vimpnet", seed=1)
    backend = CompiledBackend(StepModules(model, 2), torch.device("cpu"), "fp32", tmp_path, background_build=True)
    started = time.monotonic()
    backend.prepare(1, 3, 32, 40)
    print(f"vimpnet: 3 programs compiled in {time.monotonic() - started:.0f} s", file=sys.stderr)
    assert len(backend.status()["ready"]) == 3, backend.status()
    eager = TorchBackend(StepModules(model, 2), torch.device("cpu"), "fp32")
    inputs = {
        step: [torch.rand(*s).to(d) for s, d in zip(shapes, step_dtypes(step, "fp32")[0], strict=True)]
        for step, shapes in backend.profile_shapes(1, 3, 32, 40).items()
    }
    for step, args in inputs.items():
        ours, theirs = getattr(backend, step)(*args), getattr(eager, step)(*args)
        ours, theirs = (ours, theirs) if isinstance(ours, tuple) else ((ours,), (theirs,))
        for a, b in zip(ours, theirs, strict=True):
            assert (a.float() - b.float()).abs().max().item() < TOLERANCE, step
    assert backend.status()["eager_calls"] == 0


def test_environment_variable_for_child_compile_threads_is_respected(
    lite_model: VimpNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's TORCHINDUCTOR_COMPILE_THREADS reaches the child unchanged (the backend only sets a default)."""
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "3")
    started: dict[str, object] = {}

    def record(*args: object, **kwargs: object) -> None:
        started.update(kwargs)
        raise OSError("not started in this test")

    monkeypatch.setattr(static.BackgroundExport, "start", record)
    backend = _backend(lite_model, tmp_path)
    backend.frame(_frames())
    assert (
        started["environment"] == {"TORCHINDUCTOR_COMPILE_THREADS": "3"}
        and started["builder"] == REGISTRY["compiled"].child_builder
    )
    assert "cannot start the background compilation" in next(iter(backend.status()["failed"].values()))
    assert os.environ["TORCHINDUCTOR_COMPILE_THREADS"] == "3"


def test_compiler_probe_follows_cxx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether programs can be built here is read from the compiler inductor would call (``$CXX``, default g++)."""
    from vimpnet_ros.engine.hardware import cxx_compiler_available

    monkeypatch.setenv("CXX", "no-such-compiler-anywhere")
    assert cxx_compiler_available() is False
    monkeypatch.setenv("CXX", "true")
    assert cxx_compiler_available() is True


def test_config_takes_the_backend_and_checks_cuda_graphs() -> None:
    from vimpnet_ros.engine import EngineConfig
    from vimpnet_ros.errors import ConfigError

    assert EngineConfig(backend="compiled", cuda_graphs=False).cuda_graphs is False
    with pytest.raises(ConfigError, match="cuda_graphs must be true or false"):
        EngineConfig(backend="compiled", cuda_graphs="yes")  # type: ignore[arg-type]
