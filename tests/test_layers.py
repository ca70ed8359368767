"""The import table of DEVELOPERS.md is what the code does (tools/check_layers.py, run by make lint)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]


def test_the_code_follows_the_table() -> None:
    assert load_tool("check_layers").violations() == []


def test_a_forbidden_import_is_reported(tmp_path: Path) -> None:
    """A lazy import of the node from the engine (inside a function) breaks the table and is named."""
    shutil.copy(REPO / "DEVELOPERS.md", tmp_path / "DEVELOPERS.md")
    engine = tmp_path / "vimpnet_ros" / "engine"
    engine.mkdir(parents=True)
    (engine / "bad.py").write_text("def f():\n    from vimpnet_ros.node import node\n    return node\n")
    good = "from vimpnet_ros.model import VimpNet\nfrom vimpnet_ros.errors import InputError\n"
    (engine / "good.py").write_text(good)
    problems = load_tool("check_layers").violations(tmp_path)
    assert len(problems) == 1 and "bad.py:2: 'engine' imports 'node'" in problems[0]


def test_a_lazy_import_circle_is_found(tmp_path: Path) -> None:
    """Two modules importing each other, one of them inside a function, are one circle; a chain is not."""
    engine = tmp_path / "vimpnet_ros" / "engine"
    engine.mkdir(parents=True)
    (engine / "__init__.py").write_text("")
    (engine / "a.py").write_text("from vimpnet_ros.engine import b\n")
    (engine / "b.py").write_text("def f():\n    from vimpnet_ros.engine.a import g\n    return g\n")
    (engine / "c.py").write_text("from . import a\n")  # relative import, no way back: not part of the circle
    assert load_tool("check_layers").import_circles(tmp_path) == [["vimpnet_ros.engine.a", "vimpnet_ros.engine.b"]]


def test_the_package_has_no_import_circle() -> None:
    assert load_tool("check_layers").import_circles() == []


def test_code_outside_the_engine_uses_only_its_exported_names(tmp_path: Path) -> None:
    """The engine's surface is what its __init__ exports: a module inside it, or a name it does not export, fails."""
    assert load_tool("check_layers").surface_violations() == []
    engine = tmp_path / "vimpnet_ros" / "engine"
    engine.mkdir(parents=True)
    (engine / "__init__.py").write_text('_EXPORTS = {"Stream": "stream"}\n')
    pipeline = tmp_path / "vimpnet_ros" / "pipeline"
    pipeline.mkdir()
    (pipeline / "ok.py").write_text("from vimpnet_ros.engine import Stream\n")
    (pipeline / "deep.py").write_text("def f():\n    from vimpnet_ros.engine.stream import FrameSlot\n")
    (pipeline / "hidden.py").write_text("from vimpnet_ros.engine import FeatureCache\n")
    problems = load_tool("check_layers").surface_violations(tmp_path)
    assert len(problems) == 2, problems
    assert "deep.py:2: imports from vimpnet_ros.engine.stream" in problems[0]
    assert "hidden.py:1: vimpnet_ros.engine does not export 'FeatureCache'" in problems[1]
