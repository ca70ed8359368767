"""bag-eval over segments (what each fleet unit runs) equals one pass, also when outputs lag the input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.fleet.conftest import FleetBags, assert_same_outputs
from vimpnet_ros.bags.io import BagReader, BagWriter
from vimpnet_ros.evaluation.bag_eval import BagEvalOptions, run_bag_eval
from vimpnet_ros.fleet.plan import segments


@pytest.mark.slow
def test_center_output_segments_read_past_their_end_and_equal_one_pass(fleet_bags: FleetBags, tmp_path: Path) -> None:
    import torch

    from vimpnet_ros.engine import InferenceEngine

    settings = fleet_bags.settings.replace(output_frame="center")
    bag = fleet_bags.inputs / "drive_gt"
    with BagReader(bag) as reader:
        stamps = [m.timestamp for m in reader.messages(["/camera/image"])]
        inputs = {t.name for t in reader.topics()}
    cut = segments(stamps, 0.45e9, settings.engine.window_size - 1)
    assert len(cut) == 3
    threads = torch.get_num_threads()
    engine = InferenceEngine(dataclasses.replace(settings.engine, cpu_threads=1)).load()
    try:
        whole = run_bag_eval(bag, None, settings, BagEvalOptions(output_bag=tmp_path / "whole", progress=False), engine)
        parts = []
        for i, segment in enumerate(cut):
            options = BagEvalOptions(
                output_bag=tmp_path / f"part{i}", copy_input=False, progress=False, segment=segment
            )
            parts.append(run_bag_eval(bag, None, settings, options, engine))
    finally:
        torch.set_num_threads(threads)
    assert [r.stamp_ns for p in parts for r in p.records] == [r.stamp_ns for r in whole.records]
    assert [r.psnr_out for p in parts for r in p.records] == [r.psnr_out for r in whole.records]
    # The segments' output bags, put together, hold the whole run's outputs.
    with BagWriter(tmp_path / "joined", "mcap") as joined:
        for i in range(len(cut)):
            with BagReader(tmp_path / f"part{i}") as part:
                for message in part.messages():
                    joined.write_passthrough(message.connection, message.timestamp, message.raw)
    with BagReader(tmp_path / "whole") as reader, BagWriter(tmp_path / "whole_outputs", "mcap") as only:
        for message in reader.messages(sorted({t.name for t in reader.topics()} - inputs)):
            only.write_passthrough(message.connection, message.timestamp, message.raw)
    # RainStatus counters count from each segment's start here; the fleet's merge offsets them (tested there).
    assert_same_outputs(tmp_path / "joined", tmp_path / "whole_outputs", ignore=("processed_frames", "dropped_frames"))
