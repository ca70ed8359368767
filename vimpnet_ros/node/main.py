"""Executable ``vimpnet_node``: run the deraining node until Ctrl-C or SIGTERM.

    vimpnet_node [--managed] --ros-args --params-file config/vimpnet.yaml -r image:=/cam/image_raw

``--managed`` starts a lifecycle node (configure loads the model, activate starts
processing; with the ``autostart`` parameter it does both at once); without it the node
loads and starts at once. Bad parameters, a missing or malformed params file, ROS arguments
rcl refuses, or a missing/corrupt checkpoint end the process with exit code 2 and one error
line (:mod:`vimpnet_ros.node.startup`); an unknown parameter name is a warning naming the
nearest known one.
rclpy's signal handlers turn SIGINT and SIGTERM into a context shutdown, after
which the worker is stopped and the process exits 0 within seconds, even mid-inference:
an inference still running after the worker's stop timeout is abandoned and the process
exits without interpreter teardown. The CPU allocator is tuned
(:mod:`vimpnet_ros.engine.allocator`) before rclpy starts any thread, so every
thread, the inference worker included, shares the arena that keeps freed memory.
The DDS transport is chosen before ``rclpy.init`` too (:mod:`vimpnet_ros.node.transport`:
with ``dds_profile: auto`` UDP with large socket buffers so camera-sized frames arrive, unless
Fast DDS is configured by the user; ``off`` leaves it alone); the choice is logged once rclpy
is up, and a ``dds_profile`` the node ends up with that differs from the one read before start
is warned about.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

#: Exit code for a configuration error at start (same as the vimpnet-ros CLI).
EXIT_CONFIG_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Arguments before ``--ros-args``."""
    parser = argparse.ArgumentParser(
        prog="vimpnet_node",
        description="ViMP-Net rain removal node. ROS arguments go after --ros-args "
        "(-p name:=value, --params-file FILE, -r from:=to, -r __ns:=/ns).",
    )
    parser.add_argument(
        "--managed", action="store_true", help="run as a lifecycle node (load in configure, process in activate)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node; return the process exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from rclpy.utilities import remove_ros_args

    from vimpnet_ros.engine import keep_freed_memory
    from vimpnet_ros.errors import VimpnetError
    from vimpnet_ros.node.startup import check_params_files, dds_profile, rcl_error_line, read_ros_arguments
    from vimpnet_ros.node.transport import configure_transport

    keep_freed_memory()
    args_in = list(sys.argv if argv is None else ["vimpnet_node", *argv])
    try:
        arguments = read_ros_arguments(args_in)
        check_params_files(arguments)
        options = build_parser().parse_args(remove_ros_args(args_in)[1:])
        profile = dds_profile(arguments)
        transport = configure_transport(profile=profile)
        rclpy.init(args=args_in)
    except VimpnetError as error:
        return _start_error(str(error))
    except rclpy_implementation.UnknownROSArgsError as error:  # its text is the list of arguments
        return _start_error(f"unknown ROS argument(s) after --ros-args: {error}")
    except rclpy_implementation.RCLError as error:  # what rcl still refuses in the arguments
        return _start_error(rcl_error_line(error))
    logger = rclpy.logging.get_logger("vimpnet_node")
    (logger.warning if transport.warn else logger.info)(transport.summary)
    node = None
    code = 0
    try:
        from vimpnet_ros.node.node import VimpnetLifecycleNode, VimpnetNode
        from vimpnet_ros.pipeline.settings import PARAMETERS_BY_NAME

        node = VimpnetLifecycleNode() if options.managed else VimpnetNode()
        declared = PARAMETERS_BY_NAME["dds_profile"].check(node.get_parameter("dds_profile").value)
        if declared != profile:  # rcl matched a params file section differently from start_parameter
            logger.warning(
                f"dds_profile is '{declared}' on the node, but the transport was chosen with '{profile}' before "
                "ROS started; give dds_profile with -p or in a '/**' or 'vimpnet' section"
            )
        node.start()  # the lifecycle node configures and activates itself only with autostart
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except VimpnetError as error:
        logger.error(f"error: {error}")
        code = EXIT_CONFIG_ERROR
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # A signal shut the context down while the executor was building its wait set: a normal exit.
    finally:
        if node is not None:
            try:
                node.stop()
                node.destroy_node()
            except Exception as error:  # shutting down: report, still exit
                logger.warning(f"while shutting down: {error}")
        rclpy.try_shutdown()
    if node is not None and node.core.abandoned_inference:
        # An inference is still running in the worker thread (it never touches ROS again). Tearing the
        # interpreter down under it can abort inside torch's thread pool, so leave without teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _start_error(line: str) -> int:
    """A problem found before rclpy runs: one line on stderr (no logger exists yet), exit code 2."""
    print(f"[ERROR] [vimpnet_node]: error: {line}", file=sys.stderr, flush=True)
    return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    sys.exit(main())
