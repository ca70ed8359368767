"""On-disk cache of compiled programs (TensorRT, AOTInductor, ONNX), keyed by everything that makes one invalid.

Compiling a program takes from seconds to minutes, so it is done once per (model weights,
step, input shapes, precision, compiler versions, GPU or CPU) and saved; every static-shape
backend starts its key from :class:`ProfileMaterial`. Each entry is two files:
``<name>-<key16>.ep`` (the program; ``.pt2`` for AOTInductor packages, ``.onnx`` for ONNX
models) and ``.json`` beside it (the full key material). An entry whose JSON is missing or disagrees with the
expected material is *stale*; one that fails to load is *corrupt*; both are
rebuilt and overwritten. Files are written to a temporary name and renamed, so a
crash mid-write leaves no half entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from vimpnet_ros.model.config import RULES, RULES_VERSION

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


def cache_key(material: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``material`` (order of keys does not matter)."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameter/buffer names, dtypes, shapes and values: changes when weights change."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


class ProfileMaterial:
    """The key material every static-shape program of one model shares (the weights hash is computed once).

    A backend adds what else invalidates its programs (precision, compiler versions, device).
    """

    def __init__(self, steps: torch.nn.Module) -> None:
        self.steps = steps
        self._fingerprint: str | None = None

    def __call__(self, step: str, shapes: Sequence[Sequence[int]], passes: int, **extra: Any) -> dict[str, Any]:
        """Model name, weights and the rules on them (presence, propagation bound, ...) with what they compute
        (``RULES_VERSION``), the stage-1 passes the program runs (``passes``, the profile key's: the engine sets the
        model's count per frame size, so a build finished later is checked against its own), step (with the
        described frame for the window step), input shapes, ``extra``."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.steps.model)
        return {
            "model": self.steps.model.config.name,
            "weights_sha256": self._fingerprint,
            **{rule: getattr(self.steps.model.config, rule) for rule in RULES},
            "stage1_passes": passes,
            "rules_version": RULES_VERSION,
            "step": step,
            "output_index": self.steps.window.output_index if step == "window" else None,
            "input_shapes": [list(shape) for shape in shapes],
            **extra,
        }


@dataclass(frozen=True)
class CacheEntry:
    """Where one program and its key material live."""

    program: Path
    meta: Path
    key: str


@dataclass
class LoadReport(Generic[T]):
    """A loaded or built program and how it was obtained: ``hit``, ``built``, ``rebuilt-stale``, ``rebuilt-corrupt``."""

    program: T
    status: str
    entry: CacheEntry


class EngineCache:
    """A directory of compiled programs; see the module docstring for the entry format."""

    def __init__(self, directory: str | Path, suffix: str = ".ep") -> None:
        self.directory = Path(directory).expanduser()
        self.suffix = suffix
        self._reported: set[Path] = set()  # entries whose repair was logged (once each, however often polled)

    def entry(self, name: str, material: Mapping[str, Any]) -> CacheEntry:
        """The files for ``name`` (a readable prefix) under key ``material``."""
        key = cache_key(material)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        base = self.directory / f"{safe}-{key[:16]}"
        return CacheEntry(base.with_name(base.name + self.suffix), base.with_name(base.name + ".json"), key)

    def is_fresh(self, name: str, material: Mapping[str, Any]) -> bool:
        """Whether a complete entry for ``material`` is on disk (it may still fail to load).

        An entry that is there but unusable (a missing, unreadable or foreign ``.json``, a missing
        program) is not fresh, and is logged once as being rebuilt.
        """
        return self._is_fresh(self.entry(name, material), material)

    def _is_fresh(self, entry: CacheEntry, material: Mapping[str, Any]) -> bool:
        problem = self._problem(entry, material)
        if problem is None:
            self._reported.discard(entry.program)  # usable again: a later repair is news
        elif problem != "absent":
            self.report_repair(entry.program, problem)
        return problem is None

    @staticmethod
    def _problem(entry: CacheEntry, material: Mapping[str, Any]) -> str | None:
        """Why the entry cannot be used ('absent' when neither file is there), or None when it is fresh."""
        program, meta_file = entry.program.is_file(), entry.meta.is_file()
        if not program and not meta_file:
            return "absent"
        if not program or not meta_file:
            return f"incomplete (no {entry.meta.name if program else entry.program.name})"
        try:
            meta = json.loads(entry.meta.read_text())
        except (OSError, ValueError) as error:
            return f"its {entry.meta.name} is unreadable ({type(error).__name__})"
        if not isinstance(meta, dict):
            return f"its {entry.meta.name} is not a key record"
        if meta.get("key") != entry.key or meta.get("material") != json.loads(json.dumps(material, default=str)):
            return "stale (made for other weights, shapes or versions)"
        return None

    def report_repair(self, program: Path, problem: str) -> None:
        """Log, once per entry, that it is rebuilt and why (corrupt, stale, unreadable key record)."""
        if program in self._reported:
            return
        self._reported.add(program)
        LOGGER.warning("engine cache entry %s is %s; rebuilding it", program, problem)

    def discard(self, name: str, material: Mapping[str, Any]) -> None:
        """Remove the entry for ``material`` (a program that failed to load), so it is built again."""
        entry = self.entry(name, material)
        for path in (entry.meta, entry.program):
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                LOGGER.warning("cannot remove the engine cache entry %s (%s)", path, error)

    def load_or_build(
        self,
        name: str,
        material: Mapping[str, Any],
        build: Callable[[], T],
        save: Callable[[T, Path], None],
        load: Callable[[Path], T],
    ) -> LoadReport[T]:
        """Load the cached program for ``material``, or build, save and return it (rebuilding bad entries)."""
        entry = self.entry(name, material)
        status = "built"
        if self._is_fresh(entry, material):
            try:
                return LoadReport(load(entry.program), "hit", entry)
            except Exception as error:
                self.report_repair(entry.program, f"corrupt ({error})")
                status = "rebuilt-corrupt"
        elif entry.program.exists() or entry.meta.exists():
            status = "rebuilt-stale"  # logged by _is_fresh
        program = build()
        self._store(entry, material, program, save)
        return LoadReport(program, status, entry)

    def _store(self, entry: CacheEntry, material: Mapping[str, Any], program: T,
               save: Callable[[T, Path], None]) -> None:  # fmt: skip
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            entry.meta.unlink(missing_ok=True)  # an entry without meta is never trusted while we write
            handle, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=entry.program.suffix)
            os.close(handle)
            tmp = Path(tmp_name)
            try:
                save(program, tmp)
                tmp.replace(entry.program)
            finally:
                tmp.unlink(missing_ok=True)
            meta = {"key": entry.key, "material": material}
            tmp_meta = entry.meta.with_name(f".tmp-{entry.meta.name}")
            tmp_meta.write_text(json.dumps(meta, sort_keys=True, indent=1, default=str))
            tmp_meta.replace(entry.meta)
        except OSError as error:
            # The program in memory still works; only the next start pays the compilation again.
            LOGGER.warning(
                "cannot write the engine cache in %s (%s); set engine_cache_dir to a writable folder to avoid "
                "recompiling on every start",
                self.directory,
                error,
            )
