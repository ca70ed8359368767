"""The engine cache: keys, hits, stale and corrupt entries rebuilt (with real torch.export programs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from vimpnet_ros.engine.backends.cache import EngineCache, cache_key, model_fingerprint


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.tensor(factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _tools(factor: float, counter: dict[str, int]) -> tuple[object, object, object]:
    example = (torch.ones(2, 3),)

    def build() -> torch.export.ExportedProgram:
        counter["builds"] += 1
        return torch.export.export(_Scale(factor), example)

    def save(program: torch.export.ExportedProgram, path: Path) -> None:
        torch.export.save(program, path)

    def load(path: Path) -> torch.export.ExportedProgram:
        return torch.export.load(path)

    return build, save, load


def test_key_is_order_independent_and_sensitive() -> None:
    a = cache_key({"shape": [1, 3], "gpu": "H100", "precision": "fp16"})
    assert a == cache_key({"precision": "fp16", "gpu": "H100", "shape": [1, 3]})
    assert a != cache_key({"shape": [1, 3], "gpu": "A100", "precision": "fp16"})
    assert a != cache_key({"shape": [1, 4], "gpu": "H100", "precision": "fp16"})


def test_model_fingerprint_follows_weights() -> None:
    first, second = _Scale(2.0), _Scale(2.0)
    assert model_fingerprint(first) == model_fingerprint(second)
    with torch.no_grad():
        second.factor.add_(1e-6)
    assert model_fingerprint(first) != model_fingerprint(second)


def test_build_then_hit(tmp_path: Path) -> None:
    counter = {"builds": 0}
    cache = EngineCache(tmp_path / "engines")
    material = {"step": "window", "shape": [1, 5, 3, 64, 64], "torch_tensorrt": "2.13.0"}
    first = cache.load_or_build("lite-window", material, *_tools(3.0, counter))  # type: ignore[arg-type]
    assert first.status == "built" and first.entry.program.is_file() and first.entry.meta.is_file()
    second = cache.load_or_build("lite-window", material, *_tools(3.0, counter))  # type: ignore[arg-type]
    assert second.status == "hit" and counter["builds"] == 1
    assert torch.equal(second.program.module()(torch.ones(2, 3)), torch.full((2, 3), 3.0))
    other = cache.load_or_build("lite-window", {**material, "torch_tensorrt": "2.14.0"}, *_tools(3.0, counter))  # type: ignore[arg-type]
    assert other.status == "built" and other.entry.program != first.entry.program


def test_corrupt_entry_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counter = {"builds": 0}
    cache = EngineCache(tmp_path)
    material = {"step": "frame"}
    report = cache.load_or_build("x", material, *_tools(2.0, counter))  # type: ignore[arg-type]
    report.entry.program.write_bytes(b"not a program")
    with caplog.at_level(logging.WARNING):
        again = cache.load_or_build("x", material, *_tools(2.0, counter))  # type: ignore[arg-type]
    assert again.status == "rebuilt-corrupt" and counter["builds"] == 2 and "corrupt" in caplog.text
    assert cache.load_or_build("x", material, *_tools(2.0, counter)).status == "hit"  # type: ignore[arg-type]


def test_stale_entry_is_rebuilt(tmp_path: Path) -> None:
    counter = {"builds": 0}
    cache = EngineCache(tmp_path)
    material = {"step": "flow"}
    report = cache.load_or_build("x", material, *_tools(2.0, counter))  # type: ignore[arg-type]
    meta = json.loads(report.entry.meta.read_text())
    meta["material"] = {"step": "something else"}
    report.entry.meta.write_text(json.dumps(meta))
    assert cache.load_or_build("x", material, *_tools(2.0, counter)).status == "rebuilt-stale"  # type: ignore[arg-type]
    report.entry.meta.unlink()
    assert cache.load_or_build("x", material, *_tools(2.0, counter)).status == "rebuilt-stale"  # type: ignore[arg-type]
    assert counter["builds"] == 3


def test_unwritable_cache_still_returns_the_program(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = EngineCache(blocker / "engines")  # a directory below a file cannot be created
    counter = {"builds": 0}
    with caplog.at_level(logging.WARNING):
        report = cache.load_or_build("x", {"a": 1}, *_tools(2.0, counter))  # type: ignore[arg-type]
    assert report.status == "built" and "cannot write the engine cache" in caplog.text


@pytest.mark.parametrize("sidecar", [b"\x00garbage{", b"[1, 2]", b'{"key": "0000", "material": {}}'])
def test_unusable_sidecar_is_rebuilt_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sidecar: bytes
) -> None:
    """A garbage, foreign or stale ``.json`` beside a good program: rebuilt, and said once however often it is asked."""
    counter = {"builds": 0}
    cache = EngineCache(tmp_path)
    material = {"step": "frame"}
    report = cache.load_or_build("x", material, *_tools(2.0, counter))  # type: ignore[arg-type]
    report.entry.meta.write_bytes(sidecar)
    with caplog.at_level(logging.WARNING):
        assert not cache.is_fresh("x", material) and not cache.is_fresh("x", material)  # polled twice
        again = cache.load_or_build("x", material, *_tools(2.0, counter))  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records if "rebuilding it" in r.getMessage()]
    assert len(lines) == 1 and str(report.entry.program) in lines[0], lines
    assert again.status == "rebuilt-stale" and counter["builds"] == 2
    assert cache.is_fresh("x", material) and json.loads(report.entry.meta.read_text())["key"] == report.entry.key
