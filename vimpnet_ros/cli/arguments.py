"""Argument types shared by the subcommands (parsed once, with one error wording)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def size_type(minimum: int = 1, multiple: int = 1) -> Callable[[str], tuple[int, int]]:
    """An argparse ``type``: ``WIDTHxHEIGHT`` -> ``(width, height)``, each >= minimum and a multiple of ``multiple``."""

    def parse(text: str) -> tuple[int, int]:
        width, sep, height = text.strip().lower().partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise argparse.ArgumentTypeError(f"size must look like 256x192 (WIDTHxHEIGHT), got {text!r}")
        size = int(width), int(height)
        if min(size) < minimum or size[0] % multiple or size[1] % multiple:
            rule = f"at least {minimum}" + (f" and multiples of {multiple}" if multiple > 1 else "")
            raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be {rule}")
        return size

    return parse


def size_list_type(minimum: int = 1, multiple: int = 1) -> Callable[[str], list[tuple[int, int]]]:
    """Like :func:`size_type` for a comma-separated list (``256x256,640x384``)."""
    parse_one = size_type(minimum, multiple)

    def parse(text: str) -> list[tuple[int, int]]:
        return [parse_one(part) for part in text.split(",") if part.strip()]

    return parse


def add_bag_distro_argument(parser: argparse.ArgumentParser) -> None:
    """``--distro``: whose message definitions fill in for a bag that carries none (Humble sqlite3 bags)."""
    parser.add_argument(
        "--distro",
        choices=("auto", "humble", "jazzy", "kilted"),
        default="auto",
        help="message definitions for bags without them (default: from the bag)",
    )


def add_node_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--params-file``, ``-p NAME:=VALUE`` and ``--checkpoint``: the node's parameters, as ``ros2 run`` takes them."""
    from pathlib import Path

    parser.add_argument(
        "--params-file",
        type=Path,
        default=None,
        help="the node's params YAML (default: the package's config/vimpnet.yaml)",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="override a node parameter, e.g. -p backend:=onnxruntime (repeatable)",
    )
    parser.add_argument("--checkpoint", default=None, help="shortcut for -p checkpoint:=PATH")


def node_settings(args: argparse.Namespace) -> object:
    """The node settings :func:`add_node_settings_arguments` describe (ConfigError on a bad parameter)."""
    from vimpnet_ros.pipeline.settings import load_node_settings, parse_param_overrides

    overrides = parse_param_overrides(args.param)
    if args.checkpoint is not None:
        overrides["checkpoint"] = args.checkpoint
    return load_node_settings(args.params_file, overrides)


def topic_pairs(items: list[str], option: str) -> dict[str, str]:
    """``["/cam/image_raw=/cam/clean"]`` -> ``{"/cam/image_raw": "/cam/clean"}``; ConfigError for anything else."""
    from vimpnet_ros.errors import ConfigError

    pairs = {}
    for item in items:
        topic, sep, gt = item.partition("=")
        if not sep or not topic.startswith("/") or not gt.startswith("/"):
            raise ConfigError(f"{option} {item!r} must look like /camera/topic=/ground/truth/topic")
        pairs[topic] = gt
    return pairs
