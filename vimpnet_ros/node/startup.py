"""The node's start: ROS arguments read before ``rclpy.init``, their problems as one line, unknown parameters named.

rcl reads ``--params-file`` while it parses the arguments and reports a missing or malformed file
as an exception with the C source locations of its parser, which ends the process with a
traceback. The files are checked here first (exists, readable, YAML mapping) so that the node
says what is wrong with which file in one line and exits 2, like any other configuration error;
what rcl still refuses is reduced to its first sentence the same way (:func:`rcl_error_line`).

:func:`start_parameter` reads one parameter from the same arguments the way rcl will (params
file sections that match the node's name, then ``-p``), for what must be decided before rclpy
starts (``dds_profile``: the DDS transport is chosen before ``rclpy.init``).

After the node exists, :func:`unknown_parameter_warnings` compares the names given with ``-p``
or in a params file with the declared ones: rclpy ignores an undeclared name silently, so a typo
(``windowsize``) would otherwise run with the default.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.settings import NODE_NAME, PARAMETERS_BY_NAME

#: Parameters rclpy declares itself or reads from overrides (not ours to warn about).
RCLPY_PARAMETERS: frozenset[str] = frozenset({"use_sim_time", "start_type_description_service"})
#: Prefixes of parameter names rclpy handles (REP-2003 QoS overrides).
RCLPY_PREFIXES: tuple[str, ...] = ("qos_overrides.",)
#: How close a name must be to a known one to be suggested (difflib ratio).
SUGGESTION_CUTOFF = 0.6
#: rcl appends the C source location of its parser to each message (", at /path/file.c:123").
_RCL_LOCATION = re.compile(r",? at \S+\.c:\d+")


@dataclass(frozen=True)
class RosArguments:
    """What the command line's ``--ros-args`` sections say about parameters (rcl's syntax)."""

    params_files: tuple[Path, ...] = ()
    #: ``-p name:=value`` in order, the value as written (YAML text).
    overrides: tuple[tuple[str, str], ...] = ()
    #: ``-r __node:=name`` and ``-r __ns:=/ns`` (None: not remapped).
    node_name: str | None = None
    namespace: str | None = None

    def fully_qualified_name(self, default_name: str) -> str:
        """``/ns/name`` of the node these arguments start."""
        namespace = (self.namespace or "").strip("/")
        return f"/{namespace}/{self.node_name or default_name}" if namespace else f"/{self.node_name or default_name}"


def read_ros_arguments(argv: Sequence[str]) -> RosArguments:
    """The params files and ``-p`` overrides of every ``--ros-args`` section of ``argv`` (ends at ``--``)."""
    files: list[Path] = []
    overrides: list[tuple[str, str]] = []
    remaps: dict[str, str] = {}
    inside = False
    tokens = iter(argv)
    for token in tokens:
        if token == "--ros-args":
            inside = True
        elif token == "--":
            inside = False
        elif inside and token == "--params-file":
            files.append(Path(next(tokens, "")))
        elif inside and token in ("-p", "--param"):
            name, _, value = next(tokens, "").partition(":=")
            overrides.append((name, value))
        elif inside and token in ("-r", "--remap"):
            source, _, target = next(tokens, "").partition(":=")
            remaps[source.rpartition(":")[2] if source.endswith(("__node", "__ns")) else source] = target
    return RosArguments(tuple(files), tuple(overrides), remaps.get("__node"), remaps.get("__ns"))


def _section_matches(key: object, fully_qualified_name: str) -> bool:
    """Whether a params file's node key (``/**``, ``vimpnet``, ``/ns/*``) applies to the node (rcl's wildcards)."""
    if not isinstance(key, str):
        return False
    pattern = re.escape(key if key.startswith("/") else f"/{key}")
    pattern = pattern.replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    return re.fullmatch(pattern, fully_qualified_name) is not None


def start_parameter(name: str, arguments: RosArguments, node_name: str) -> object | None:
    """The value ``name`` will get from the command line (None: not given): matching params file sections, then -p."""
    fully_qualified_name = arguments.fully_qualified_name(node_name)
    value: object | None = None
    for path in arguments.params_files:
        for key, section in load_params_yaml(path).items():
            if _section_matches(key, fully_qualified_name) and isinstance(section, dict):
                parameters = section.get("ros__parameters")
                if isinstance(parameters, dict) and name in parameters:
                    value = parameters[name]
    for given, text in arguments.overrides:
        if given == name:
            value = yaml.safe_load(text) if text else ""
    return value


def load_params_yaml(path: Path) -> dict[object, object]:
    """A params file's top-level mapping; ConfigError naming the file and the problem (one line)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"params file {path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"params file {path}: cannot read it ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"params file {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must map node names to {{ros__parameters: ...}}")
    return data


def check_params_files(arguments: RosArguments) -> None:
    """Raise ConfigError for the first params file that is missing, unreadable or not a YAML mapping."""
    for path in arguments.params_files:
        load_params_yaml(path)


def rcl_error_line(error: BaseException) -> str:
    """rcl's argument error as one line, without the C source locations of its parser."""
    text = " ".join(str(error).split())
    return _RCL_LOCATION.sub("", text)


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (None when nothing is close)."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=SUGGESTION_CUTOFF)
    return matches[0] if matches else None


def unknown_parameter_warnings(given: Iterable[str], declared: Iterable[str]) -> list[str]:
    """One warning per name given to the node that it does not declare, naming the nearest declared one."""
    declared = set(declared)
    warnings = []
    for name in sorted(set(given)):
        if name in declared or name in RCLPY_PARAMETERS or name.startswith(RCLPY_PREFIXES):
            continue
        suggestion = nearest(name, declared)
        hint = f"; did you mean '{suggestion}'?" if suggestion else " (vimpnet_node has no such parameter)"
        warnings.append(f"unknown parameter '{name}' (from -p or a params file) is ignored{hint}")
    return warnings


def dds_profile(arguments: RosArguments) -> str:
    """The ``dds_profile`` this start uses (checked like every parameter; ConfigError when invalid)."""
    spec = PARAMETERS_BY_NAME["dds_profile"]
    given = start_parameter(spec.name, arguments, NODE_NAME)
    return str(spec.check(spec.default if given is None else given))
