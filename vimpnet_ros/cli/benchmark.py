"""``vimpnet-ros benchmark {model,engine}``: timing tables and JSON.

Each target is a module with ``add_arguments(parser)`` and ``run(args) -> int``:
``vimpnet_ros.benchmark.model`` and ``vimpnet_ros.benchmark.engine``.
"""

from __future__ import annotations

import argparse
import importlib

TARGETS: dict[str, tuple[str, str]] = {
    "model": ("vimpnet_ros.benchmark.model", "whole-clip forward time, memory and FLOPs per config and precision"),
    "engine": ("vimpnet_ros.benchmark.engine", "streaming per-frame latency per backend, precision and resolution"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One nested subcommand per benchmark target."""
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, (module_name, help_text) in TARGETS.items():
        module = importlib.import_module(module_name)
        sub = targets.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_target_run=module.run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen target."""
    return int(args._target_run(args) or 0)
