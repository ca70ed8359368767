"""Fleet fixtures: one local Ray cluster for the whole test run, small real bags and their bag-eval references."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.bags.conftest import make_humble_like
from vimpnet_ros.bags.io import BagReader, BagWriter
from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag
from vimpnet_ros.bags.typestore import IMAGE_TYPE, RAIN_STATUS_TYPE
from vimpnet_ros.evaluation.bag_eval import BagEvalOptions, evaluate_bag
from vimpnet_ros.pipeline.settings import NodeSettings, load_node_settings

#: Fields of RainStatus that measure time, so differ between any two runs.
TIMING_FIELDS = ("inference_time", "latency")
#: Work-unit length of the tests [s]: 3-4 frames of the 10 Hz sample bags, so every bag is several units.
SEGMENT_S = 0.35


def fleet_settings(checkpoint: Path) -> NodeSettings:
    """fp32 on the CPU with the random-weight checkpoint."""
    return load_node_settings(
        None, {"checkpoint": str(checkpoint), "backend": "torch", "device": "cpu", "precision": "fp32"}
    )


def copy_without_ground_truth(source: Path, target: Path, storage: str) -> None:
    """A recording as a car makes it: the camera topics only, no ground truth."""
    with BagReader(source) as reader, BagWriter(target, storage) as writer:
        for message in reader.messages():
            if "/gt/" not in message.topic:
                writer.write_passthrough(message.connection, message.timestamp, message.raw)


@dataclasses.dataclass
class FleetBags:
    """Input folder with a ground-truth MCAP bag, a Humble sqlite3 bag without ground truth and a corrupt bag."""

    root: Path
    inputs: Path
    settings: NodeSettings
    references: dict[str, Path]  # bag name -> bag-eval's output bag


@pytest.fixture(scope="session")
def fleet_bags(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> FleetBags:
    """The bags and what single-process bag-eval (one thread, like each worker) writes for the good ones."""
    import torch

    from vimpnet_ros.engine import InferenceEngine

    root = tmp_path_factory.mktemp("fleet")
    inputs = root / "inputs"
    write_sample_bag(inputs / "drive_gt", SampleBagConfig(num_frames=12, size=(64, 48), seed=1))
    write_sample_bag(root / "raw", SampleBagConfig(num_frames=9, size=(64, 48), seed=2, storage="sqlite3"))
    copy_without_ground_truth(root / "raw", inputs / "cars" / "drive_nogt", "sqlite3")
    make_humble_like(inputs / "cars" / "drive_nogt")
    shutil.copytree(inputs / "drive_gt", inputs / "cars" / "drive_corrupt")
    mcap = next((inputs / "cars" / "drive_corrupt").glob("*.mcap"))
    mcap.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 8)  # a recording cut off by a crash, overwritten
    settings = fleet_settings(checkpoint)
    threads = torch.get_num_threads()
    engine = InferenceEngine(dataclasses.replace(settings.engine, cpu_threads=1)).load()
    references = {}
    try:
        for name, bag, storage in (("drive_gt", inputs / "drive_gt", "mcap"),
                                   ("drive_nogt", inputs / "cars" / "drive_nogt", "sqlite3")):  # fmt: skip
            references[name] = root / "reference" / name
            options = BagEvalOptions(output_bag=references[name], storage=storage, progress=False)
            evaluate_bag(bag, root / "reference" / f"{name}_report", settings, options, engine)
    finally:
        torch.set_num_threads(threads)
    return FleetBags(root, inputs, settings, references)


def _messages(bag: Path, ignore: tuple[str, ...] = ()) -> dict[str, list[tuple[int, Any]]]:
    """topic -> [(bag time, content)] with images as arrays and RainStatus as a dict without timing fields."""
    found: dict[str, list[tuple[int, Any]]] = {}
    with BagReader(bag) as reader:
        for message in reader.messages():
            content: Any = message.raw
            if message.msgtype in (IMAGE_TYPE, RAIN_STATUS_TYPE):
                msg = reader.deserialize(message)
                if message.msgtype == RAIN_STATUS_TYPE:
                    content = {
                        f.name: getattr(msg, f.name)
                        for f in dataclasses.fields(msg)
                        if f.name not in (*TIMING_FIELDS, *ignore, "header")
                    }
                    content["stamp"] = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                else:
                    content = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.encoding, np.asarray(msg.data))
            found.setdefault(message.topic, []).append((message.timestamp, content))
    return found


def assert_same_outputs(fleet_bag: Path, reference_bag: Path, ignore: tuple[str, ...] = ()) -> None:
    """Same topics, same messages at the same bag times; images equal in fp32 within 1e-5 of full scale, status
    floats within a relative 1e-5.

    ``ignore``: RainStatus fields left out besides the timing ones.
    """
    got, want = _messages(fleet_bag, ignore), _messages(reference_bag, ignore)
    assert {t: len(m) for t, m in got.items()} == {t: len(m) for t, m in want.items()}
    for topic, messages in want.items():
        for (time_got, content_got), (time_want, content_want) in zip(got[topic], messages, strict=True):
            assert time_got == time_want, topic
            if isinstance(content_want, tuple):
                assert content_got[:3] == content_want[:3], topic
                scale = 255.0 if content_want[3].dtype == np.uint8 else 1.0
                np.testing.assert_allclose(
                    content_got[3].astype(np.float32) / scale, content_want[3].astype(np.float32) / scale, atol=1e-5
                )
            elif isinstance(content_want, dict):  # RainStatus: floats (streak intensity, ...) within a tolerance
                assert content_got.keys() == content_want.keys(), topic
                for key, value in content_want.items():
                    if isinstance(value, float):
                        assert content_got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (topic, key)
                    else:
                        assert content_got[key] == value, (topic, key)
            else:  # other messages byte for byte
                assert content_got == content_want, topic
