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
