"""The parameter table: the sections in order, :class:`NodeSettings` composed of their records, validation.

:data:`PARAMETERS` (every parameter, in the order of ``config/vimpnet.yaml``) is collected
from :data:`SECTIONS`; nothing here names a parameter. Values are type-checked by their spec,
then each section builds its record, whose own rules (``__post_init__``) see the whole record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vimpnet_ros.engine import EngineConfig
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.settings.records import (
    ENGINE_PARAMETERS,
    DiagnosticsSettings,
    InputSettings,
    NodeOptions,
    OutputSettings,
    RainSettings,
    TopicSettings,
)
from vimpnet_ros.pipeline.settings.specs import ParamSpec, ParamValue, record_specs

#: The node's own name; bag evaluation looks for its section in params files.
NODE_NAME = "vimpnet"


@dataclass(frozen=True)
class Section:
    """One concern: its :class:`NodeSettings` attribute, its YAML heading, its record and the parameters filling it.

    ``foreign``: the record is another package's (the engine's), whose messages name fields, not
    parameters; they are prefixed with ``parameters:`` so a user sees where to look.
    """

    key: str
    heading: str
    record: type
    specs: tuple[ParamSpec, ...]
    foreign: bool = False

    @classmethod
    def of(cls, key: str, heading: str, record: type) -> Section:
        """A section whose record declares its parameters itself (:func:`~.specs.param`)."""
        return cls(key, heading, record, record_specs(record))

    def build(self, values: Mapping[str, ParamValue]) -> Any:
        """The record for checked parameter values (raises ConfigError naming the parameter)."""
        fields: dict[str, Any] = {}
        parts: dict[str, list[ParamSpec]] = {}
        for spec in self.specs:
            if spec.part is not None:
                parts.setdefault(spec.target, []).append(spec)
                continue
            value = values[spec.name]
            fields[spec.target] = None if spec.unset is not None and value == spec.unset else value
        for target, specs in parts.items():
            specs.sort(key=lambda s: s.part or 0)
            given = [values[s.name] for s in specs]
            unset = [value == s.unset for s, value in zip(specs, given, strict=True)]
            if any(unset) and not all(unset):
                names = " and ".join(f"'{s.name}'" for s in specs)
                raise ConfigError(
                    f"parameters {names} must all be {specs[0].unset} or all be set; got {', '.join(map(str, given))}"
                )
            fields[target] = None if all(unset) else tuple(given)
        try:
            return self.record(**fields)
        except ConfigError as error:
            if self.foreign:
                raise ConfigError(f"parameters: {error}") from None
            raise

    def read(self, record: Any) -> dict[str, ParamValue]:
        """Parameter name -> value of a record (the inverse of :meth:`build`)."""
        values: dict[str, ParamValue] = {}
        for spec in self.specs:
            value = getattr(record, spec.target)
            if value is None:
                value = spec.unset
            elif spec.part is not None:
                value = value[spec.part]
            values[spec.name] = list(value) if isinstance(value, list | tuple) else value
        return values


#: The sections in the order of config/vimpnet.yaml; each fills the :class:`NodeSettings` attribute of its key.
SECTIONS: tuple[Section, ...] = (
    Section("engine", "model and engine (read-only: restart to change)", EngineConfig, ENGINE_PARAMETERS, foreign=True),
    Section.of("topics", "topics and QoS (read-only)", TopicSettings),
    Section.of(
        "inputs", "input limits (bad input is counted, logged and dropped; good frames keep flowing)", InputSettings
    ),
    Section.of("outputs", "outputs (change at run time with ros2 param set)", OutputSettings),
    Section.of("rain", "rain estimate and gating (run time)", RainSettings),
    Section.of("node", "node (run time)", NodeOptions),
    Section.of("diagnostics", "diagnostics and logging", DiagnosticsSettings),
)

#: Every parameter the node declares, in the order of config/vimpnet.yaml.
PARAMETERS: tuple[ParamSpec, ...] = tuple(spec for section in SECTIONS for spec in section.specs)
PARAMETERS_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values, one record per concern (a test checks the attributes are :data:`SECTIONS`)."""

    engine: EngineConfig
    topics: TopicSettings
    inputs: InputSettings
    outputs: OutputSettings
    rain: RainSettings
    node: NodeOptions
    diagnostics: DiagnosticsSettings

    def values(self) -> dict[str, ParamValue]:
        """Parameter name -> value, in table order (what a params file holds; the reports record it)."""
        return {name: value for s in SECTIONS for name, value in s.read(getattr(self, s.key)).items()}

    def replace(self, **changes: Any) -> NodeSettings:
        """A validated copy with some parameters changed (runtime parameter updates)."""
        return validate_settings({**self.values(), **changes})


def default_values() -> dict[str, ParamValue]:
    """Parameter name -> default value (lists copied)."""
    return {spec.name: spec.fresh_default() for spec in PARAMETERS}


def validate_settings(values: Mapping[str, Any]) -> NodeSettings:
    """Check every value and the rules between them; raise ConfigError with the first problem.

    Missing names take their defaults; unknown names are an error (a typo in a
    params file should not be silently ignored).
    """
    unknown = sorted(set(values) - set(PARAMETERS_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(PARAMETERS_BY_NAME)}")
    merged = default_values()
    merged.update(values)
    checked = {name: PARAMETERS_BY_NAME[name].check(value) for name, value in merged.items()}
    return NodeSettings(**{section.key: section.build(checked) for section in SECTIONS})
