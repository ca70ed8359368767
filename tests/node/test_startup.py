"""The node's start: params-file problems as one line and exit 2, unknown parameter names named with a suggestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.node.rosprobe import START_TIMEOUT
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.node.startup import (
    RosArguments,
    load_params_yaml,
    rcl_error_line,
    read_ros_arguments,
    unknown_parameter_warnings,
)
from vimpnet_ros.pipeline.settings import PARAMETERS_BY_NAME

pytestmark = pytest.mark.ros


def test_ros_arguments_are_read_from_every_ros_args_section() -> None:
    argv = ["vimpnet_node", "--managed", "--ros-args", "--params-file", "a.yaml", "-p", "device:=cpu", "-r",
            "image:=/cam/image_raw", "--", "--other", "--ros-args", "--param", "window_size:=3",
            "--params-file", "b.yaml"]  # fmt: skip
    assert read_ros_arguments(argv) == RosArguments(
        (Path("a.yaml"), Path("b.yaml")), (("device", "cpu"), ("window_size", "3"))
    )
    assert read_ros_arguments(["vimpnet_node", "--params-file", "x.yaml"]) == RosArguments()  # not a ROS argument


def test_params_file_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"params file .*missing\.yaml: no such file"):
        load_params_yaml(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("vimpnet:\n  ros__parameters:\n    cameras: [front, rear\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML at line 4, column 1: expected ','"):
        load_params_yaml(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(ConfigError, match="must map node names"):
        load_params_yaml(scalar)
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="cannot read it"):
        load_params_yaml(tmp_path / "folder.yaml")


def test_rcl_errors_lose_their_source_locations() -> None:
    raw = "Failed to parse ROS arguments: Couldn't parse params file: 'x'. Error: Error opening YAML file, at " \
          "/project/src/parser.c:271, at /project/src/rcl/arguments.c:415"  # fmt: skip
    assert rcl_error_line(RuntimeError(raw)).endswith("Error: Error opening YAML file")


def test_unknown_names_get_the_nearest_known_one() -> None:
    given = ["windowsize", "window_size", "use_sim_time", "qos_overrides./image.subscription.depth", "zzz_qq"]
    warnings = unknown_parameter_warnings(given, PARAMETERS_BY_NAME)
    assert warnings == [
        "unknown parameter 'windowsize' (from -p or a params file) is ignored; did you mean 'window_size'?",
        "unknown parameter 'zzz_qq' (from -p or a params file) is ignored (vimpnet_node has no such parameter)",
    ]


def test_missing_and_malformed_params_files_exit_2_with_one_line(start_node: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("vimpnet:\n  ros__parameters:\n    window_size: 5\n   device: cpu\n")
    cases = [
        (["--params-file", str(tmp_path / "missing.yaml")], "missing.yaml: no such file"),
        (["--params-file", str(broken)], "broken.yaml is not valid YAML at line 4"),
        (["-p", "window_size"], "Couldn't parse parameter override rule: '-p window_size'"),
        (["--no-such-flag"], "unknown ROS argument(s) after --ros-args: ['--no-such-flag']"),
    ]
    nodes = [(start_node(ros_args=args), text) for args, text in cases]
    for node, text in nodes:
        code = node.wait(START_TIMEOUT)
        log = node.log()
        assert code == 2, f"exit code {code}\n{log[-2000:]}"
        assert log.strip().splitlines() == [f"[ERROR] [vimpnet_node]: error: {log.split('error: ', 1)[1].strip()}"]
        assert text in log and "Traceback" not in log and "parser.c" not in log, log


def test_unknown_parameter_names_are_warned_with_a_suggestion(
    start_node: Any, tmp_path: Path, checkpoint: Path
) -> None:
    """A typo in -p and in a params file: the node starts, warns once per name; device auto on a CPU is no warning."""
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    publish_mask: false\n    publish_streak: true\n")
    node = start_node(ros_args=["--params-file", str(params), "-p", "windowsize:=5", "-p", f"checkpoint:={checkpoint}"])
    try:
        assert node.wait_for_log("active:", START_TIMEOUT), node.log()[-3000:]
        log = node.log()
        assert (
            "unknown parameter 'windowsize' (from -p or a params file) is ignored; did you mean 'window_size'?" in log
        )
        assert "unknown parameter 'publish_streak' (from -p or a params file) is ignored; did you mean" in log
        assert "unknown parameter 'publish_mask'" not in log
        warnings = [line for line in log.splitlines() if line.startswith("[WARN]")]
        assert not [line for line in warnings if "GPU" in line], warnings
        assert "no CUDA GPU" not in log, "the CPU fallback is INFO when no GPU was asked for"
    finally:
        node.stop()


def test_dds_profile_off_leaves_the_transport_alone(start_node: Any, tmp_path: Path, checkpoint: Path) -> None:
    """dds_profile from -p or a params file is read before ROS starts; an invalid value is exit 2."""
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    dds_profile: off\n")  # YAML reads off as false: accepted
    common = ["-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"]
    from_file = start_node(ros_args=["--params-file", str(params), *common])
    from_p = start_node(ros_args=["-p", "dds_profile:=off", *common])
    auto = start_node(ros_args=common)
    wrong = start_node(ros_args=["-p", "dds_profile:=udp", *common])
    try:
        for node in (from_file, from_p):
            assert node.wait_for_log("active:", START_TIMEOUT), node.log()[-3000:]
            assert "DDS transport: left as configured (dds_profile: off)" in node.log()
            assert "transport was chosen" not in node.log()
        assert auto.wait_for_log("active:", START_TIMEOUT), auto.log()[-3000:]
        assert "DDS transport: UDPv4" in auto.log()  # auto: the node's profile (this machine allows large buffers)
        assert wrong.wait(START_TIMEOUT) == 2
        assert "parameter 'dds_profile' must be one of auto, off; got 'udp'" in wrong.log()
    finally:
        for node in (from_file, from_p, auto):
            node.stop()


@pytest.mark.parametrize("override", ["depth:=0", "reliability:=sometimes"])
def test_bad_qos_override_exits_2_at_start_before_any_publisher(
    start_node: Any, checkpoint: Path, override: str
) -> None:
    """input_reliability auto subscribes only once a camera appears; its qos_overrides are checked at start anyway."""
    node = start_node(
        ros_args=["-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "backend:=torch",
                  "-p", "input_reliability:=auto", "-p", f"qos_overrides./image.subscription.{override}"]
    )  # fmt: skip
    code = node.wait(START_TIMEOUT)  # no publisher ever appears: without the check the node would wait here
    log = node.log()
    assert code == 2, f"exit code {code}\n{log[-2000:]}"
    errors = [line for line in log.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "invalid qos_overrides./image" in errors[0], log[-2000:]
    assert "Traceback" not in log and "Warning" not in log and "active: subscribed" not in log, log[-2000:]


def test_a_window_beyond_the_shipped_weights_exits_2_naming_the_limit(start_node: Any) -> None:
    """The shipped default weights allow windows up to their record's max_window: a larger one is refused at start."""
    from vimpnet_ros.model.checkpoint import shipped_max_window

    limit = shipped_max_window("vimpnet_lite_gated")
    assert limit is not None and limit < 9
    node = start_node(ros_args=["-p", f"window_size:={limit + 2}", "-p", "device:=cpu"])
    assert node.wait(START_TIMEOUT) == 2, node.log()[-3000:]
    log = node.log()
    assert f"window_size {limit + 2} is larger than the shipped 'vimpnet_lite_gated' weights" in log, log
    assert "Traceback" not in log, log
