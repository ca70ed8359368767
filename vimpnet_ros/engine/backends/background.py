"""Build a step program (ONNX export, AOTInductor package) in a child process while the engine keeps serving frames.

Exporting or compiling a shape profile takes tens of seconds (minutes for ``vimpnet``).
Done in the engine's own process it would hold the first frame at every new size for that
long, so :class:`BackgroundExport` runs it in a separate interpreter
(``python -m vimpnet_ros.engine.backends.background JOB``; a plain subprocess, so the
caller's ``__main__`` is never re-imported as multiprocessing's spawn would). The job
file carries the model config and weights (read back with ``weights_only=True``) and
what to build (``builder``: the backend's ``child_builder`` from
:mod:`~vimpnet_ros.engine.backends.registry`, a ``module:function`` this module imports only
by name, so it never imports the backends that use it); the child rebuilds the model, builds the
one step and stores the result in the engine cache, where the parent opens it once the
child has exited cleanly. A separate process also keeps the exporter's and compiler's
global state and memory peak out of the engine.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vimpnet_ros.engine.backends.registry import resolve
from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.model import VimpNet
from vimpnet_ros.model.config import VimpNetConfig

LOGGER = logging.getLogger(__name__)
#: Lines of the child's stderr quoted when it fails.
ERROR_TAIL_LINES = 5


def run_job(job_path: Path) -> None:
    """Child process: rebuild the model of ``job_path``, build its step, write the program to the engine cache."""
    job = torch.load(job_path, weights_only=True)
    torch.set_num_threads(1)  # leave the cores to the engine that keeps serving frames
    model = VimpNet(VimpNetConfig.from_dict(job["model_config"]))
    model.load_state_dict(job["weights"])
    resolve(job["builder"])(StepModules(model, job["output_index"]), job)


class BackgroundExport:
    """One export or compilation running in a child interpreter; see the module docstring."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], job: Path, stderr: Any) -> None:
        self.name = name
        self.process = process
        self.job = job
        self.stderr = stderr
        self.started = time.monotonic()
        self._error_tail = ""

    @classmethod
    def start(cls, cache_dir: Path, name: str, material: Mapping[str, Any], steps: StepModules, step: str,
              shapes: list[list[int]], builder: str, options: Mapping[str, Any] | None = None,
              environment: Mapping[str, str] | None = None) -> BackgroundExport:  # fmt: skip
        """Write the job file and start the child that builds ``step`` for input ``shapes`` into ``cache_dir``.

        ``builder`` is the ``module:function`` the child runs as ``builder(steps, job)``; ``options``
        are extra job fields for it (plain types); ``environment`` extra variables for the child.
        """
        cache_dir.mkdir(parents=True, exist_ok=True)
        handle, job_name = tempfile.mkstemp(dir=cache_dir, prefix=".job-", suffix=".pt")
        os.close(handle)
        job = Path(job_name)
        torch.save(
            {
                "cache_dir": str(cache_dir),
                "name": name,
                "material": json.loads(json.dumps(material, default=str)),  # plain types for weights_only
                "model_config": steps.model.config.to_dict(),
                "weights": {k: v.detach().cpu() for k, v in steps.model.state_dict().items()},
                "output_index": steps.window.output_index,
                "step": step,
                "shapes": shapes,
                "builder": builder,
                **dict(options or {}),
            },
            job,
        )
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this call; closed in _finish
        command = [sys.executable, "-m", "vimpnet_ros.engine.backends.background", str(job)]
        env = {**os.environ, **environment} if environment else None
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                   env=env)  # fmt: skip
        return cls(name, process, job, stderr)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the export started."""
        return time.monotonic() - self.started

    @property
    def exit_code(self) -> int | None:
        """The child's exit status (None while it runs)."""
        return self.process.returncode

    def poll(self) -> bool | None:
        """None while the child runs, True when it stored the program, False when it failed."""
        if self.process.poll() is None:
            return None
        self._finish()
        return self.process.returncode == 0

    def wait(self) -> bool:
        """Block until the child exits; True when it stored the program."""
        self.process.wait()
        self._finish()
        return self.process.returncode == 0

    def error_tail(self) -> str:
        """The last lines the child wrote to stderr (why it failed); empty until it exited."""
        return self._error_tail

    def cancel(self) -> None:
        """Stop the child (the cache never holds a half-written entry)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._finish()

    def _finish(self) -> None:
        """Remove the job file (it holds the weights) and keep the end of the child's stderr."""
        self.job.unlink(missing_ok=True)
        if self.stderr.closed:
            return
        try:
            self.stderr.seek(0)
            lines = self.stderr.read().decode(errors="replace").strip().splitlines()
            self._error_tail = " | ".join(line.strip() for line in lines[-ERROR_TAIL_LINES:])
        except OSError:
            pass
        finally:
            self.stderr.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run_job(Path(sys.argv[1]))
