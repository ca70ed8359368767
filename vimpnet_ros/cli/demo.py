"""``vimpnet-ros demo``: the end-to-end main job, live, on this machine.

1. make the sample rainy bag (``<output>/sample_bag``) unless it is already there;
2. start the real node (``python -m vimpnet_ros.node.main``, shipped weights, CPU) in
   namespace ``/camera`` on a private ROS domain, loopback only;
3. record its outputs (derained image, raindrop mask, RainStatus) in this process;
4. play the bag's camera topics into it at the recorded rate, restamped at publish;
5. stop the node, score the recording against the bag's ground truth, write the
   report to ``<output>/report`` and print a short summary (with ``--offline`` also
   bag-eval over every frame of the sample bag, into ``<output>/offline_report``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vimpnet_ros.cli.arguments import size_type
from vimpnet_ros.errors import VimpnetError

if TYPE_CHECKING:
    from vimpnet_ros.engine import EngineConfig

LOGGER = logging.getLogger(__name__)
NAMESPACE = "/camera"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Output folder, fast mode, model/params overrides, timing."""
    parser.add_argument(
        "--output", type=Path, default=Path("demo_output"), help="folder for everything (default demo_output)"
    )
    parser.add_argument("--fast", action="store_true", help="tiny run for tests: 8 frames of 64x48 at 4 Hz")
    parser.add_argument("--frames", type=int, default=None, help="frames in the sample bag (default 24; fast: 8)")
    parser.add_argument(
        "--size", type=size_type(), default=None, help="WIDTHxHEIGHT of the sample bag (default 256x160; fast: 64x48)"
    )
    parser.add_argument("--fps", type=float, default=None, help="camera rate of the sample bag (default 10; fast: 4)")
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor (default 1 = camera rate)")
    parser.add_argument("--checkpoint", default=None, help="weights for the node (default: the shipped weights)")
    parser.add_argument("--params-file", type=Path, default=None, help="node params YAML (default config/vimpnet.yaml)")
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter (repeatable)"
    )
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a random private one)")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds for the node to come up")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="also run bag-eval on the sample bag (every frame, no skipping) into <output>/offline_report",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=180.0, help="seconds to wait for the last frame after playing"
    )


def _sample_config(args: argparse.Namespace) -> Any:
    from vimpnet_ros.bags.sample import SampleBagConfig

    frames, size, fps = (8, (64, 48), 4.0) if args.fast else (24, (256, 160), 10.0)
    return SampleBagConfig(
        num_frames=args.frames or frames,
        size=args.size or size,
        fps=args.fps or fps,
        namespace=NAMESPACE,
    )


def _ensure_sample_bag(path: Path, config: Any) -> None:
    """Reuse ``path`` if it is a sample bag made with ``config``; else (re)make it."""
    import dataclasses

    import yaml

    from vimpnet_ros.bags.sample import SAMPLE_CUSTOM_KEY, write_sample_bag

    metadata = path / "metadata.yaml"
    if metadata.is_file():
        info = (yaml.safe_load(metadata.read_text()) or {}).get("rosbag2_bagfile_information", {})
        made_with = (info.get("custom_data") or {}).get(SAMPLE_CUSTOM_KEY)
        if made_with and json.loads(made_with) == json.loads(json.dumps(dataclasses.asdict(config))):
            print(f"[1/5] sample bag {path} already there")
            return
    started = time.monotonic()
    write_sample_bag(path, config, overwrite=True)
    print(
        f"[1/5] made sample bag {path} ({config.num_frames} frames {config.size[0]}x{config.size[1]} "
        f"at {config.fps:g} fps) in {time.monotonic() - started:.1f} s"
    )


def _node_command(args: argparse.Namespace) -> list[str]:
    from vimpnet_ros.pipeline.settings import default_params_file

    command = [sys.executable, "-m", "vimpnet_ros.node.main", "--ros-args", "-r", f"__ns:={NAMESPACE}"]
    params_file = args.params_file or default_params_file()
    if params_file is not None:
        command += ["--params-file", str(params_file)]
    params = ["backend:=torch", "device:=cpu", *args.param]
    if args.checkpoint:
        params.append(f"checkpoint:={Path(args.checkpoint).resolve()}")
    for item in params:
        command += ["-p", item]
    return command


def _check_weights(engine: EngineConfig) -> None:
    """Fail before starting anything when the node would find no weights."""
    from vimpnet_ros.errors import CheckpointError
    from vimpnet_ros.model.checkpoint import shipped_checkpoint

    path = Path(engine.checkpoint) if engine.checkpoint else shipped_checkpoint(engine.model)
    if not path.is_file():
        what = "checkpoint" if engine.checkpoint else f"shipped weights for {engine.model}"
        raise CheckpointError(
            f"{what} not found at {path}; pass --checkpoint PATH (e.g. one written by vimpnet-ros train)"
        )


def _stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """SIGINT, then SIGKILL if it does not end; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(10)
    return process.returncode


def run(args: argparse.Namespace) -> int:
    """Run the five steps; exit 0 when the node restored frames and the report is written."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from vimpnet_ros.bags.play import BagPlayer, PlayOptions
    from vimpnet_ros.bags.record import BagRecorder
    from vimpnet_ros.cli.bag_eval import summary_lines
    from vimpnet_ros.evaluation.bag_eval import LiveRun, evaluate_recording
    from vimpnet_ros.evaluation.report import REPORT_MD
    from vimpnet_ros.pipeline.settings import load_node_settings, parse_param_overrides

    started = time.monotonic()
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    overrides = parse_param_overrides(["backend:=torch", "device:=cpu", *args.param])
    if args.checkpoint:
        overrides["checkpoint"] = str(args.checkpoint)
    settings = load_node_settings(args.params_file, overrides)  # fails here, not in the node, on bad params
    _check_weights(settings.engine)
    config = _sample_config(args)
    bag = output / "sample_bag"
    _ensure_sample_bag(bag, config)

    domain = args.domain_id if args.domain_id is not None else random.randint(1, 101)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
    env["PYTHONUNBUFFERED"] = "1"
    os.environ.update({"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    node_log = output / "node.log"
    recorded = output / "recorded_bag"
    with node_log.open("wb") as log:
        node = subprocess.Popen(
            _node_command(args), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    print(f"[2/5] started the node (pid {node.pid}, ROS_DOMAIN_ID={domain}, log {node_log})")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    ros_node = rclpy.create_node("vimpnet_demo", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(ros_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    topics = {name: f"{NAMESPACE}/{name}" for name in ("derained/image", "raindrop_mask", "rain_status")}
    recorder = BagRecorder(recorded, list(topics.values()), overwrite=True)
    try:
        recorder.attach(ros_node)
        spinner.start()
        deadline = time.monotonic() + args.startup_timeout
        while not recorder.wait_matched(list(topics.values()), 0.5):
            if node.poll() is not None:
                raise VimpnetError(
                    f"the node exited with code {node.returncode} while starting; see {node_log}:\n" + _tail(node_log)
                )
            if time.monotonic() > deadline:
                raise VimpnetError(f"the node did not come up within {args.startup_timeout:.0f} s; see {node_log}")
        print(f"[3/5] recording {', '.join(topics.values())} (node up after {time.monotonic() - started:.1f} s)")
        image_topic = f"{NAMESPACE}/image"
        options = PlayOptions(
            rate=args.rate,
            topics=(image_topic, f"{NAMESPACE}/camera_info"),
            restamp=True,
            wait_for_subscribers=(image_topic,),
            wait_timeout_s=args.startup_timeout,
        )
        play_stats = BagPlayer(bag, options).play(ros_node)
        frames_played = play_stats.messages.get(image_topic, 0)
        print(f"[4/5] played {frames_played} frames in {play_stats.wall_s:.1f} s at {config.fps * args.rate:g} Hz")
        # Latest-wins: the node always restores the newest frame it has, so the last played one comes out last.
        if play_stats.stamp_map and not recorder.wait_for_stamp(
            topics["rain_status"], max(play_stats.stamp_map), args.drain_timeout
        ):
            LOGGER.warning("the last frame did not come out within %.0f s; scoring what arrived", args.drain_timeout)
        recorder.wait_idle(0.5, timeout_s=5.0)
    finally:
        code = _stop(node)
        try:
            stats = recorder.close()
        finally:
            executor.shutdown(timeout_sec=2)
            ros_node.destroy_node()
            rclpy.try_shutdown(context=context)
    LOGGER.info("node exit code %s; recorded %s", code, stats.to_dict()["topics"])
    (output / "record_stats.json").write_text(json.dumps(stats.to_dict(), indent=2))
    (output / "play_stats.json").write_text(json.dumps(play_stats.to_dict(), indent=2))
    run_info = LiveRun(
        input_topic=f"{NAMESPACE}/image",
        output_namespace=NAMESPACE,
        stamp_map=play_stats.stamp_map,
        frames_played=frames_played,
        camera_rate_hz=config.fps * args.rate,
        wall_s=time.monotonic() - started,
    )
    report_dir = output / "report"
    report = evaluate_recording(bag, recorded, run_info, report_dir, settings).to_dict()
    print(f"[5/5] report written to {report_dir / REPORT_MD}")
    print(_summary(report))
    print(summary_lines(report))
    if args.offline:
        from vimpnet_ros.evaluation.bag_eval import BagEvalOptions, evaluate_bag

        offline_dir = output / "offline_report"
        options = BagEvalOptions(
            image_topics=(f"{NAMESPACE}/image",), output_bag=offline_dir / "output_bag", overwrite=True
        )
        offline = evaluate_bag(bag, offline_dir, settings, options).to_dict()
        print(f"offline (every frame, {offline_dir / REPORT_MD}): {summary_lines(offline)}")
    return 0 if report["topics"][0]["frames_out"] > 0 else 1


def _summary(report: dict[str, Any]) -> str:
    topic = report["topics"][0]
    q, lat = topic["quality"], topic["latency_ms"]
    gain = f"{q['psnr_gain']:+.2f} dB" if q.get("psnr_gain") is not None else "n/a"
    return (
        f"summary: frames in {topic['frames_in']}, out {topic['frames_out']} "
        f"({100 * (topic['rate_fraction'] or 0):.0f}% at {topic['input_rate_hz']:.1f} Hz); PSNR gain {gain}; "
        f"end-to-end latency p50 {lat.get('p50') or 0:.0f} ms, p95 {lat.get('p95') or 0:.0f} ms; "
        f"backend {report.get('backend')}/{report.get('precision')}"
    )


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
