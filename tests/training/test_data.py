"""Training data helpers: the synthetic cache is reused or re-rendered as its settings say; the sampler resumes;
start-of-stream windows are the engine's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vimpnet_ros.engine import window_indices
from vimpnet_ros.errors import ConfigError, DatasetError
from vimpnet_ros.training.config import DataConfig, DataSource
from vimpnet_ros.training.data import MANIFEST, ResumableSampler, prepare_source, repeat_for, start_of_stream


def test_synthetic_cache_is_reused_and_rerendered_on_change(tmp_path: Path) -> None:
    source = DataSource(type="synthetic", root=str(tmp_path / "c"), num_videos=1, num_frames=3, size=(32, 24), seed=2)
    root = prepare_source(source)
    frame = root / "lq" / next(p.name for p in (root / "lq").iterdir()) / "00000000.png"
    stamp = frame.stat().st_mtime_ns
    assert prepare_source(source) == root and frame.stat().st_mtime_ns == stamp  # reused, not re-rendered
    changed = DataSource(type="synthetic", root=str(root), num_videos=1, num_frames=4, size=(32, 24), seed=2)
    prepare_source(changed)
    assert len(list(frame.parent.glob("*.png"))) == 4
    assert '"num_frames": 4' in (root / MANIFEST).read_text()


def test_foreign_non_empty_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a synthetic cache"):
        prepare_source(DataSource(type="synthetic", root=str(tmp_path)))
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_missing_vrds_folder_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        prepare_source(DataSource(type="vrds", root=str(tmp_path / "none")))


def test_sampler_start_skips_whole_batches_of_the_same_order() -> None:
    data = list(range(20))
    full = ResumableSampler(data, num_replicas=1, rank=0, batch_size=3, seed=4)  # type: ignore[arg-type]
    full.set_epoch(2)
    order = list(full)
    assert len(order) == 18  # 6 full batches; the partial one is dropped
    resumed = ResumableSampler(data, num_replicas=1, rank=0, batch_size=3, seed=4)  # type: ignore[arg-type]
    resumed.set_epoch(2)
    resumed.set_start(4)
    assert list(resumed) == order[12:] and len(resumed) == 6
    resumed.set_epoch(3)  # a new epoch starts from its first batch
    assert len(list(resumed)) == 18


def test_repeat_gives_long_enough_epochs() -> None:
    assert repeat_for(48, 2, 1, min_batches=50) == 3
    assert repeat_for(1000, 1, 4, min_batches=50) == 1


def _numbered_batch(n: int, t: int) -> dict[str, torch.Tensor]:
    """Clips whose frame j of clip i holds 100 i + j (input) and 100 i + j + 0.5 (target), (n, t, c, h, w)."""
    values = (100 * torch.arange(n)[:, None] + torch.arange(t)[None]).float()
    lq = values[:, :, None, None, None].expand(n, t, 3, 4, 4).clone()
    return {"lq": lq, "gt": lq + 0.5, "01drop": lq[:, :, :1] + 0.25}


def test_start_of_stream_windows_are_the_engines_reflected_latest_windows() -> None:
    n, t = 64, 5
    batch = _numbered_batch(n, t)
    out = start_of_stream(batch, 0.5, torch.Generator().manual_seed(3))
    seen = set()
    changed = 0
    for i in range(n):
        frames = (out["lq"][i, :, 0, 0, 0] - 100 * i).long().tolist()
        if frames == list(range(t)):
            continue
        changed += 1
        k = frames[-1] + 1  # the newest frame of the stream so far is the window's last (latest output)
        assert 1 <= k <= t - 1
        assert frames == window_indices(k - 1, k, t, t - 1), (i, frames)
        seen.add(k)
        # every stream is re-indexed alike: targets stay with their inputs
        torch.testing.assert_close(out["gt"][i], out["lq"][i] + 0.5)
        torch.testing.assert_close(out["01drop"][i], out["lq"][i, :, :1] + 0.25)
    assert 16 <= changed <= 48 and seen == {1, 2, 3, 4}
    again = start_of_stream(_numbered_batch(n, t), 0.5, torch.Generator().manual_seed(3))
    assert all(torch.equal(again[name], out[name]) for name in out)  # a seeded generator repeats the windows
    assert start_of_stream(batch, 0.0, torch.Generator()) is batch


def test_start_fraction_outside_zero_to_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="start_fraction"):
        DataConfig(train=DataSource(type="online"), start_fraction=1.5)
