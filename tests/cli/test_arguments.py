"""The shared ``WIDTHxHEIGHT`` argument types."""

from __future__ import annotations

import argparse

import pytest

from vimpnet_ros.cli.arguments import size_list_type, size_type


def test_size_type_parses_and_enforces_minimum_and_multiple() -> None:
    assert size_type()("641X359") == (641, 359)
    assert size_type(minimum=4, multiple=4)("256x192") == (256, 192)
    for text, parser in [
        ("abc", size_type()),
        ("256x", size_type()),
        ("-4x8", size_type()),
        ("4x4", size_type(minimum=8)),
        ("258x256", size_type(multiple=4)),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            parser(text)


def test_size_list_type() -> None:
    assert size_list_type()("256x256, 640x384,") == [(256, 256), (640, 384)]
    with pytest.raises(argparse.ArgumentTypeError):
        size_list_type()("256x256,12")
