"""What one parameter is (:class:`ParamSpec`: type, default, ranges, the record field it fills) and its type check.

A settings record declares its parameters as its own fields with :func:`param`, so a
parameter's name, type (the field's annotation), default and description are written once;
:func:`record_specs` reads them back as specs. Records that belong to another package (the
engine's :class:`~vimpnet_ros.engine.config.EngineConfig`) are described by explicit specs
that say which field each parameter fills (:attr:`ParamSpec.field`, :attr:`ParamSpec.part`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from vimpnet_ros.errors import ConfigError

ParamType = Literal["bool", "int", "double", "string", "string_array"]
ParamValue = bool | int | float | str | list[str]

#: Field metadata key under which :func:`param` keeps a parameter's description and limits.
_PARAM = "vimpnet_param"
#: Python annotation -> parameter type (what a record field may be).
_TYPES: dict[Any, ParamType] = {bool: "bool", int: "int", float: "double", str: "string", list[str]: "string_array"}


#: The choice names YAML 1.1 (PyYAML and rcl's parser) reads as booleans: ``off`` arrives as false.
_YAML_BOOL_WORDS: dict[bool, str] = {False: "off", True: "on"}


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: what the ROS descriptor, the YAML file and the README say about it, and where it goes.

    ``field`` is the record field the value fills ('' = the field of the same name); ``part``
    its position when several parameters fill one tuple field (``inference_width``/``_height`` ->
    ``inference_size``); ``unset`` the value that leaves the field None (``""`` for no checkpoint).
    """

    name: str
    type: ParamType
    default: ParamValue
    description: str
    read_only: bool = False
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int, int] | None = None  # (from, to, step); step 0 = any
    float_range: tuple[float, float] | None = None
    field: str = ""
    part: int | None = None
    unset: ParamValue | None = None

    @property
    def target(self) -> str:
        """The record field this parameter fills."""
        return self.field or self.name

    def check(self, value: Any) -> ParamValue:
        """Return ``value`` coerced to this parameter's type, or raise ConfigError saying why not."""
        name = self.name
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"parameter '{name}' must be true or false, got {value!r}")
            return value
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"parameter '{name}' must be an integer, got {value!r}")
            if self.int_range is not None:
                low, high, step = self.int_range
                if not low <= value <= high or (step > 0 and (value - low) % step != 0):
                    every = f" in steps of {step}" if step > 1 else ""
                    raise ConfigError(f"parameter '{name}' must be in [{low}, {high}]{every}, got {value}")
            return value
        if self.type == "double":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"parameter '{name}' must be a number, got {value!r}")
            value = float(value)
            if self.float_range is not None:
                low_f, high_f = self.float_range
                if not low_f <= value <= high_f:
                    raise ConfigError(f"parameter '{name}' must be in [{low_f}, {high_f}], got {value}")
            return value
        if self.type == "string":
            if isinstance(value, bool) and _YAML_BOOL_WORDS[value] in self.choices:
                value = _YAML_BOOL_WORDS[value]  # `-p x:=off` and `x: off` arrive as false (YAML 1.1, rcl alike)
            if not isinstance(value, str):
                raise ConfigError(f"parameter '{name}' must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ConfigError(f"parameter '{name}' must be one of {', '.join(self.choices)}; got '{value}'")
            return value
        if value is None:  # an empty YAML list arrives as "not set"
            return []
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"parameter '{name}' must be a list of strings, got {value!r}")
        return list(value)

    def fresh_default(self) -> ParamValue:
        """The default value (a list copied, so callers may change it)."""
        return list(self.default) if isinstance(self.default, list) else self.default

    @property
    def allowed(self) -> str:
        """What values are accepted, for error messages and the README."""
        kind = {"bool": "true or false", "int": "an integer", "double": "a number", "string": "a string",
                "string_array": "a list of strings"}[self.type]  # fmt: skip
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.int_range is not None:
            low, high, step = self.int_range
            return f"{kind} in [{low}, {high}]" + (f" in steps of {step}" if step > 1 else "")
        if self.float_range is not None:
            return f"{kind} in [{self.float_range[0]:g}, {self.float_range[1]:g}]"
        return kind

    @property
    def constraints(self) -> str:
        """Human-readable constraint text for the ROS descriptor's additional_constraints."""
        return "one of: " + ", ".join(self.choices) if self.choices else ""


def param(
    default: ParamValue,
    description: str,
    *,
    read_only: bool = False,
    choices: tuple[str, ...] = (),
    int_range: tuple[int, int, int] | None = None,
    float_range: tuple[float, float] | None = None,
) -> Any:
    """A settings-record field that is a node parameter of the same name (its type is the field's annotation)."""
    info = {
        "description": description,
        "read_only": read_only,
        "choices": choices,
        "int_range": int_range,
        "float_range": float_range,
    }
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={_PARAM: info})
    return dataclasses.field(default=default, metadata={_PARAM: info})


def record_specs(record: type) -> tuple[ParamSpec, ...]:
    """The parameters a record declares with :func:`param`, in field order."""
    hints = typing.get_type_hints(record)
    specs = []
    for item in dataclasses.fields(record):
        info = item.metadata.get(_PARAM)
        if info is None:
            continue
        kind = _TYPES.get(hints[item.name])
        if kind is None:
            raise TypeError(f"{record.__name__}.{item.name}: a parameter must be bool, int, float, str or list[str]")
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default  # type: ignore[misc]
        specs.append(ParamSpec(item.name, kind, default, **info))
    return tuple(specs)
