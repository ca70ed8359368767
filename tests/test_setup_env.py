"""The set-up command (tools/setup_env.py) is idempotent and notices what it must redo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def snapshot(folder: Path) -> dict[str, int]:
    """Modification times (ns) of what the set-up writes: packages, messages, scripts, the stamp."""
    watched = [folder / "lib" / "python3.11" / "site-packages", folder / "lib", folder / "bin"]
    times = {str(folder / ".vimpnet_ros_setup.json"): (folder / ".vimpnet_ros_setup.json").stat().st_mtime_ns}
    for base in watched:
        for path in base.iterdir():
            times[str(path)] = path.stat().st_mtime_ns
    return times


@pytest.mark.skipif(Path(sys.prefix).resolve() != VENV.resolve(), reason="runs inside the project's .venv only")
def test_second_run_changes_nothing() -> None:
    before = snapshot(VENV)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "setup_env.py")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    assert snapshot(VENV) == before


def test_fingerprint_follows_every_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_env = load_tool("setup_env")
    for name in setup_env.FINGERPRINT_INPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    messages = f"{setup_env.MESSAGES_PACKAGE}/msg"
    shutil.copytree(ROOT / messages, tmp_path / messages)
    monkeypatch.setattr(setup_env, "ROOT", tmp_path)
    original = setup_env.fingerprint()
    assert setup_env.fingerprint() == original
    for changed in [*setup_env.FINGERPRINT_INPUTS, f"{messages}/RainStatus.msg"]:
        path = tmp_path / changed
        content = path.read_bytes()
        path.write_bytes(content + b"\n")
        assert setup_env.fingerprint() != original, changed
        path.write_bytes(content)
    (tmp_path / messages / "Extra.msg").write_text("float32 value\n")
    assert setup_env.fingerprint() != original
