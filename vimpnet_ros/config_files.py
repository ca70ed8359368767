"""YAML configuration files that extend another: ``extends: BASE`` and then only what differs.

Training configs (:mod:`vimpnet_ros.training.config`) and rain configs (:mod:`vimpnet_ros.data.rain.config`)
share this one rule: the file's sections are merged into the base's key by key, a value replacing the base's and
a section merging with the base's, and a file that extends itself, directly or through others, is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vimpnet_ros.errors import ConfigError

#: The key naming a file's base.
EXTENDS = "extends"


def read_extended(
    name_or_path: str | Path, resolve: Callable[[str | Path], Path], kind: str, _within: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """The mapping a YAML file says, with ``extends: BASE`` resolved (``resolve`` turns a name into a path).

    ``BASE`` is a name ``resolve`` knows or a path; a relative path names a file beside the one extending it.
    ``kind`` names the files in messages (``training config``, ``rain config``). A file holding nothing is an
    empty mapping; one holding anything but a mapping is refused with a :class:`~vimpnet_ros.errors.ConfigError`.
    """
    try:
        import yaml
    except ImportError as error:
        raise ConfigError(f"reading a {kind} file needs PyYAML (pip install pyyaml)") from error

    path = resolve(name_or_path)
    if path in _within:
        raise ConfigError(f"{kind} {path} extends itself ({' -> '.join(map(str, (*_within, path)))})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {kind} {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{kind} {path} is not valid YAML: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{kind} {path} must hold a mapping, got {type(data).__name__}")
    data = dict(data)
    base = data.pop(EXTENDS, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{kind} {path}: {EXTENDS} must name a config, got {base!r}")
    beside = path.parent / base  # a relative path is read beside the file that names it, as includes are
    return merged(read_extended(beside if beside.is_file() else base, resolve, kind, (*_within, path)), data)


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: nested sections merged, every other value replaced."""
    result = copy.deepcopy(dict(base))
    for key, value in changes.items():
        both_sections = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if both_sections else copy.deepcopy(value)
    return result
