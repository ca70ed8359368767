"""The node against a hostile or buggy publisher: nothing a message carries stops it, exhausts memory or starves it.

Each test runs the real node process over loopback DDS and keeps checking that good frames
still come back between the attacks. Cases that already held before the hardening work stay
here too, so none regresses: wrong encodings, bad lengths and steps, zero and odd sizes,
Bayer, rgba, resolution changes every frame, stamps backwards/identical/jumping, long
frame_ids, corrupt and mislabelled compressed payloads, invalid parameter updates, and
unusable checkpoints at start.
"""

from __future__ import annotations

import array
import math
import pickle
import signal
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from tests.node.rosprobe import SIZE, Probe, image_msg, make_rgb
from tests.node.test_node import (
    BASE_STAMP,
    FRAME_TIMEOUT,
    PERIOD_NS,
    _assert_ok_shutdown,
    _by_stamp,
    _params,
    _send_and_wait,
    _set_parameters,
    _start,
)

pytestmark = pytest.mark.ros


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def _forged(width: int, height: int, encoding: str = "rgb8", data: bytes = b"\x00" * 64, stamp: int = 0) -> Image:
    """An Image whose header claims ``width`` x ``height`` but carries only ``data``."""
    msg = Image(height=height, width=width, encoding=encoding, step=width * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp or BASE_STAMP, 1_000_000_000)
    msg.data = array.array("B", data)
    return msg


def _stamped(pixels: np.ndarray, sec: int, nanosec: int, frame_id: str = "cam") -> Image:
    msg = image_msg(pixels, "rgb8", 0, frame_id)
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def _status_for(probe: Probe, frame_id: str) -> Any:
    """The newest rain_status whose header carries ``frame_id`` (stamps are not unique in these tests)."""
    assert probe.spin_until(
        lambda: any(m.header.frame_id == frame_id for m in probe.messages("/rain_status")), FRAME_TIMEOUT
    ), f"no output for {frame_id}"
    return [m for m in probe.messages("/rain_status") if m.header.frame_id == frame_id][-1]


def test_absurd_stamps_are_processed_flagged_and_kept_out_of_latency(
    start_node: Any, probe_factory: Any, checkpoint: Path
) -> None:
    """Negative, far-future, unnormalised, ahead, zero, identical and backwards stamps: all restored, none fatal.

    Every stamp that cannot give a latency (out of the skew, unnormalised, ahead of the clock) is flagged:
    latency NaN, counted, never a negative latency.
    """
    node = _start(start_node, checkpoint, log_throttle_s=0.0, window_size=3)
    probe = probe_factory()
    assert probe.wait_connected(), node.log()
    now = probe.node.get_clock().now().nanoseconds
    cases = [
        ("negative", -5, 0),
        ("far_future", 2**31 - 1, 999_999_999),
        ("unnormalised", 100, 4_000_000_000),  # nanosec beyond one second
        ("epoch", 0, 0),
        ("unnormalised_near", now // 1_000_000_000 - 2, 1_999_999_999),  # under 1 s old once normalised
        ("ahead", *divmod(now + 3 * 10**9, 1_000_000_000)),  # clocks disagree: a negative latency
        ("now", *divmod(now, 1_000_000_000)),
        ("identical", *divmod(now, 1_000_000_000)),
        ("backwards", *divmod(now - 10**9, 1_000_000_000)),
    ]
    for index, (name, sec, nanosec) in enumerate(cases):
        probe.send(_stamped(make_rgb(index), sec, nanosec, frame_id=name))
        status = _status_for(probe, name)
        assert status.processing == status.PROCESSING_RESTORED, name
        plausible = name in ("now", "identical", "backwards")
        assert math.isfinite(status.latency) == plausible, (name, status.latency)
    assert node.alive()
    assert node.wait_for_log("off the node clock", FRAME_TIMEOUT)
    arrays = probe.messages("/diagnostics")
    assert probe.spin_until(lambda: len(probe.messages("/diagnostics")) > len(arrays), FRAME_TIMEOUT)
    camera = [s for a in probe.messages("/diagnostics") for s in a.status if s.name.endswith("camera")][-1]
    values = {kv.key: kv.value for kv in camera.values}
    assert int(values["frames_stamp_suspect"]) == 6
    assert float(values["latency_ms_p95"]) < 60_000  # the absurd ones did not poison the percentiles
    _assert_ok_shutdown(node)


def test_declared_sizes_are_bounded_before_decoding_and_good_frames_keep_flowing(
    start_node: Any, probe_factory: Any, checkpoint: Path
) -> None:
    """Headers claiming 30000x30000 or 6000x4000, a tiny JPEG declaring 30000x30000, an oversize real frame."""
    node = _start(start_node, checkpoint, log_throttle_s=0.0, window_size=3, max_inference_pixels=64 * 48)
    probe = probe_factory()
    assert probe.wait_connected(), node.log()
    _send_and_wait(probe, image_msg(make_rgb(0), "rgb8", BASE_STAMP))
    rss_before = _rss_mb(node.pid)
    tiny = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    marker = tiny.index(b"\xff\xc0")
    bomb = tiny[: marker + 5] + (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big") + tiny[marker + 9 :]
    attacks = [_forged(30000, 30000), _forged(6000, 4000), _forged(65535, 1), _forged(1, 65535, "mono16")]
    for msg in attacks:
        probe.send(msg)
    assert node.wait_for_log("exceeds the input limits", FRAME_TIMEOUT), node.log()[-2000:]
    stamp = BASE_STAMP + PERIOD_NS
    status = _send_and_wait(probe, image_msg(make_rgb(1), "rgb8", stamp))
    assert status.dropped_frames >= len(attacks) and node.alive()
    # A real frame over max_inference_pixels is restored at a reduced size and mapped back to its own.
    big = make_rgb(2, (320, 240))
    stamp += PERIOD_NS
    _send_and_wait(probe, image_msg(big, "rgb8", stamp))
    out = _by_stamp(probe, "/derained/image", stamp)
    assert (out.width, out.height) == (320, 240)
    assert _rss_mb(node.pid) - rss_before < 200, "memory grew on rejected frames"
    # The compressed path: a 600-byte JPEG declaring 30000x30000 costs nothing either (separate node: transport).
    _assert_ok_shutdown(node)
    node = _start(start_node, checkpoint, log_throttle_s=0.0, window_size=3, input_transport="compressed")
    probe = probe_factory()
    assert probe.wait_connected(compressed=True), node.log()
    forged = CompressedImage(format="jpeg", data=array.array("B", bomb))
    forged.header.stamp.sec = 1
    probe.send(forged)
    assert node.wait_for_log("cannot decode compressed image", FRAME_TIMEOUT), node.log()[-2000:]
    png = cv2.imencode(".png", cv2.cvtColor(make_rgb(3), cv2.COLOR_RGB2BGR))[1].tobytes()
    mislabelled = CompressedImage(format="jpeg", data=array.array("B", png))  # PNG bytes, labelled jpeg
    mislabelled.header.stamp.sec, mislabelled.header.stamp.nanosec = divmod(BASE_STAMP, 1_000_000_000)
    mislabelled.header.frame_id = "png"
    probe.send(mislabelled)
    assert _status_for(probe, "png").processing == 0 and node.alive()
    _assert_ok_shutdown(node)


def test_malformed_frames_of_every_kind_are_dropped_one_by_one(
    start_node: Any, probe_factory: Any, checkpoint: Path
) -> None:
    """Bad steps, odd and tiny sizes, long frame_ids, a new resolution every frame."""
    node = _start(start_node, checkpoint, log_throttle_s=0.0, window_size=3)
    probe = probe_factory()
    assert probe.wait_connected(), node.log()
    rgb = make_rgb(0)
    narrow = image_msg(rgb, "rgb8", BASE_STAMP)
    narrow.step = 10
    padded = image_msg(rgb, "rgb8", BASE_STAMP)
    padded.step = rgb.shape[1] * 3 + 4
    bad = [narrow, padded, _forged(0, 48), _forged(64, 0), _forged(4, 4, "rgb8", b"")]
    for msg in bad:  # paced: a burst could overflow the input history (keep last 5) before the node reads it
        probe.send(msg)
        probe.spin_for(0.2)
    stamp = BASE_STAMP
    for size in ((1, 1), (7, 5), (3, 97), (64, 48), (33, 17)):  # a new (odd) resolution every frame
        stamp += PERIOD_NS
        frame = make_rgb(1, size)
        status = _send_and_wait(probe, image_msg(frame, "rgb8", stamp, frame_id="x" * 10_000))
        out = _by_stamp(probe, "/derained/image", stamp)
        assert (out.width, out.height) == size and len(out.header.frame_id) == 10_000
        assert status.window_frames == 1
    assert status.dropped_frames == len(bad) and node.alive()
    _assert_ok_shutdown(node)


def test_invalid_parameter_updates_are_refused_with_reasons(
    start_node: Any, probe_factory: Any, checkpoint: Path
) -> None:
    node = _start(start_node, checkpoint)
    probe = probe_factory()
    assert probe.wait_connected(), node.log()
    refusals = {
        "jpeg_quality": ("high", "parameter 'jpeg_quality' must be an integer"),
        "mask_threshold": ("0.5", "parameter 'mask_threshold' must be a number"),
        "publish_mask": (1, "parameter 'publish_mask' must be true or false"),
        "gating_frames": (0, "gating_frames"),
        "window_size": (7, "read-only"),
    }
    for name, (value, reason) in refusals.items():
        [result] = _set_parameters(probe, **{name: value})
        assert not result.successful and reason in result.reason, (name, result.reason)
    [result] = _set_parameters(probe, enabled=False)
    assert result.successful
    status = _send_and_wait(probe, image_msg(make_rgb(0), "rgb8", BASE_STAMP))
    assert status.processing == status.PROCESSING_GATED  # paused: passed through
    assert node.alive()
    _assert_ok_shutdown(node)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_unusable_checkpoints_and_models_fail_at_start_with_the_real_cause(start_node: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pth"
    empty.touch()
    exploit = tmp_path / "exploit.pth"
    marker = tmp_path / "pwned"
    exploit.write_bytes(pickle.dumps({"state_dict": _Exploit(marker)}))
    cases = [
        (_params(checkpoint=str(empty), device="cpu"), "is empty (0 bytes)"),
        (_params(checkpoint=str(tmp_path), device="cpu"), "is a directory"),
        (_params(model="vimpnet_xl", device="cpu"), "unknown model config 'vimpnet_xl'"),
        (_params(checkpoint=str(exploit), device="cpu"), "refused by the safe loader"),
    ]
    nodes = [(start_node(ros_args=args), text) for args, text in cases]
    for node, text in nodes:
        assert node.wait(FRAME_TIMEOUT) == 2, node.log()
        assert text in node.log() and "Traceback" not in node.log(), node.log()
    assert not marker.exists()


@pytest.mark.slow
def test_sigint_mid_inference_at_camera_size_exits_cleanly(
    start_node: Any, probe_factory: Any, checkpoint: Path
) -> None:
    """SIGINT/SIGTERM while a 1280x720 inference runs (~10 s on a CPU at the frame's own size): exit 0 within
    seconds, no traceback."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        node = _start(start_node, checkpoint, max_inference_pixels=0, working_scale="native")
        probe = probe_factory()
        assert probe.wait_connected(), node.log()
        probe.send(image_msg(make_rgb(0, (1280, 720)), "rgb8", BASE_STAMP))
        assert probe.spin_until(lambda: False, 3.0) is False  # let the inference start
        started = time.monotonic()
        code, _ = node.stop(sig, timeout=15.0)
        log = node.log()
        assert code == 0, log[-3000:]
        assert time.monotonic() - started < 8.0
        assert "Traceback" not in log and "terminate called" not in log and "RCLError" not in log, log[-3000:]
        assert "is abandoned" in log, log[-3000:]  # the signal did arrive mid-inference


def test_frames_keep_their_size_after_attacks(start_node: Any, probe_factory: Any, checkpoint: Path) -> None:
    """After every attack above, the standard size still restores (the node is not stuck on a reset)."""
    node = _start(start_node, checkpoint, window_size=3)
    probe = probe_factory()
    assert probe.wait_connected(), node.log()
    probe.send(_forged(30000, 30000))
    status = _send_and_wait(probe, image_msg(make_rgb(0), "rgb8", BASE_STAMP))
    out = _by_stamp(probe, "/derained/image", BASE_STAMP)
    assert (out.width, out.height) == SIZE and status.processing == status.PROCESSING_RESTORED
    _assert_ok_shutdown(node)


@pytest.mark.slow
@pytest.mark.parametrize(("size", "working_scale"), [((640, 480), "native"), ((1280, 720), "native"),
                                                     ((1280, 720), "weights")])  # fmt: skip
def test_a_tiny_jpeg_declaring_3500x3500_buys_no_more_than_a_usual_frame(
    start_node: Any, probe_factory: Any, checkpoint: Path, size: tuple[int, int], working_scale: str
) -> None:
    """629 bytes declaring 3500x3500 among a camera's JPEG frames: decoded at the cost budget, good frames flow.

    Without the budget it was decoded and restored at 1920x1080 (max_inference_pixels): 28 s of
    inference on a CPU and +3.6 GB, while the camera's frames waited. At the weights' scale (the default)
    the network infers it at that scale like any frame; what is done at its own size is still priced.
    """
    node = _start(start_node, checkpoint, log_throttle_s=0.0, window_size=3, input_transport="compressed",
                  precision="auto", working_scale=working_scale)  # fmt: skip
    probe = probe_factory()
    assert probe.wait_connected(compressed=True), node.log()
    tiny = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    marker = tiny.index(b"\xff\xc0")
    bomb = tiny[: marker + 5] + (3500).to_bytes(2, "big") + (3500).to_bytes(2, "big") + tiny[marker + 9 :]
    peak = [0.0]

    def jpeg(index: int, data: bytes | None = None) -> CompressedImage:
        if data is None:
            data = cv2.imencode(".jpg", cv2.cvtColor(make_rgb(index, size), cv2.COLOR_RGB2BGR))[1].tobytes()
        msg = CompressedImage(format="jpeg", data=array.array("B", data))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(BASE_STAMP + index * PERIOD_NS, 1_000_000_000)
        return msg

    def send_and_wait(msg: CompressedImage) -> Any:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        probe.send(msg)
        deadline = time.monotonic() + 120.0
        while not probe.has_stamp("/rain_status", stamp) and time.monotonic() < deadline:
            peak[0] = max(peak[0], _rss_mb(node.pid))
            probe.spin_for(0.1)
        assert probe.has_stamp("/rain_status", stamp), node.log()[-3000:]
        return next(m for m in probe.messages("/rain_status") if m.header.stamp.sec == msg.header.stamp.sec
                    and m.header.stamp.nanosec == msg.header.stamp.nanosec)  # fmt: skip

    before = [send_and_wait(jpeg(i)) for i in range(4)]  # the running size, period and speed are known now
    usual = float(np.median([s.inference_time for s in before[1:]]))
    usual_peak = peak[0]
    assert len(bomb) < 700
    started = time.monotonic()
    attacked = send_and_wait(jpeg(4, bomb))
    bomb_s = time.monotonic() - started
    after = [send_and_wait(jpeg(i)) for i in range(5, 8)]
    log = node.log()
    out = _by_stamp(probe, "/derained/image", BASE_STAMP + 4 * PERIOD_NS)
    print(
        f"{size} {working_scale}: usual inference {usual:.2f} s, the 3500x3500 JPEG {attacked.inference_time:.2f} s "
        f"({bomb_s:.2f} s from send to status) at {out.width}x{out.height}, peak RSS {usual_peak:.0f} MB before, "
        f"{peak[0]:.0f} MB in all"
    )
    assert "frame declares 3500x3500" in log and "running size" in log, log[-3000:]
    assert attacked.processing == attacked.PROCESSING_RESTORED
    # At most 2 s or half a usual frame of extra work (a 1280x720 frame varies by more than 2 s on a busy
    # 2-core CPU); without the budget the 3500x3500 frame cost three times a usual one.
    assert attacked.inference_time < max(usual + 2.0, 1.5 * usual), (attacked.inference_time, usual)
    assert all(s.processing == s.PROCESSING_RESTORED for s in after)  # good frames keep flowing
    # The budgeted frame is restored at its own size, so its buffers come on top of the usual ones, which the
    # allocator keeps for reuse: +160 to +650 MB measured (the faster the CPU, the larger the budgeted size);
    # without the budget +3.6 GB.
    assert peak[0] < usual_peak + 1000, (usual_peak, peak[0])
    if size == (640, 480):
        assert peak[0] < 1500, peak[0]
    assert out.width == out.height
    if working_scale == "native":  # the network's work bounds it: the usual + 3 periods
        assert out.width * out.height < 1.25 * size[0] * size[1], (out.width, size)
    else:  # the full-size work bounds it (pipeline/budget.py; how far depends on the CPU's measured speed)
        assert out.width < 3500, out.width
    _assert_ok_shutdown(node)
