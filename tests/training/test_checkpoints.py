"""Where a run starts (``init_from``); averaging checkpoints and grafting a module into one (``ship_weights``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vimpnet_ros.errors import CheckpointError
from vimpnet_ros.model.checkpoint import build_model, load_model, shipped_checkpoint
from vimpnet_ros.training import checkpoints
from vimpnet_ros.training.checkpoints import average_models, graft_modules, keep_weights, resolve_init, save_model
from vimpnet_ros.training.config import load_train_config, packaged_configs


def _saved(tmp_path: Path, name: str, config: str, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_model(tmp_path / f"{name}.pth", build_model(config))


@pytest.mark.parametrize("name", packaged_configs())
def test_a_packaged_recipe_names_weights_a_clone_has(name: str) -> None:
    # A recipe that continues shipped or kept weights must find them in a plain clone: a missing file would
    # only show on a new machine, hours into a background run's set-up.
    init_from = load_train_config(name).init_from
    if init_from and init_from.startswith((checkpoints.SHIPPED_PREFIX, checkpoints.KEPT_PREFIX)):
        assert resolve_init(init_from).is_file(), init_from


def test_init_from_names_shipped_kept_or_a_path(tmp_path: Path) -> None:
    assert resolve_init("shipped:vimpnet_lite_gated") == shipped_checkpoint("vimpnet_lite_gated")
    kept = resolve_init("kept:vimpnet_lite_gated_heavy")
    assert kept == Path(__file__).resolve().parents[2] / "training_state" / "vimpnet_lite_gated_heavy.pth"
    assert load_model(kept).config.name == "vimpnet_lite_gated"
    assert resolve_init(str(tmp_path / "w.pth")) == tmp_path / "w.pth"
    with pytest.raises(CheckpointError, match=r"no kept weights.*keep_training_state"):
        resolve_init("kept:no_such_run")


def test_kept_weights_are_the_runs_in_half_precision(tmp_path: Path) -> None:
    # training_state/ travels with every clone: each run's newest weights at half the size, loading into fp32.
    source = _saved(tmp_path, "run", "vimpnet_lite_gated", 0)
    kept = keep_weights(source, tmp_path / "training_state" / "run.pth")
    stored = torch.load(kept, weights_only=True)["state_dict"]
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    assert kept.stat().st_size < 0.6 * source.stat().st_size
    original, continued = load_model(source).state_dict(), load_model(kept).state_dict()
    for name, tensor in continued.items():
        assert tensor.dtype == original[name].dtype, name
        torch.testing.assert_close(tensor, original[name].half().to(tensor.dtype), rtol=0, atol=0, msg=name)
    assert any(not torch.equal(continued[name], original[name]) for name in original)  # rounded, not copied


def test_the_average_is_the_mean_of_every_tensor(tmp_path: Path) -> None:
    paths = [_saved(tmp_path, f"w{seed}", "vimpnet_lite_gated", seed) for seed in range(3)]
    states = [load_model(path).state_dict() for path in paths]
    averaged = average_models(paths).state_dict()
    assert averaged.keys() == states[0].keys()
    for name, tensor in averaged.items():
        expected = sum(state[name] for state in states) / 3
        torch.testing.assert_close(tensor, expected, rtol=1e-6, atol=1e-6)
    changed = [name for name in averaged if not torch.equal(averaged[name], states[0][name])]
    assert len(changed) > len(averaged) // 2  # the seeds give different weights: the mean is none of them


def test_one_checkpoint_comes_back_unchanged(tmp_path: Path) -> None:
    path = _saved(tmp_path, "one", "vimpnet_lite", 0)
    for name, tensor in average_models([path], "vimpnet_lite").state_dict().items():
        assert torch.equal(tensor, load_model(path).state_dict()[name]), name


def test_checkpoints_of_different_models_are_refused(tmp_path: Path) -> None:
    lite, gated = _saved(tmp_path, "lite", "vimpnet_lite", 0), _saved(tmp_path, "gated", "vimpnet_lite_gated", 0)
    with pytest.raises(CheckpointError, match="cannot average"):
        average_models([lite, gated])
    with pytest.raises(CheckpointError, match="no checkpoint"):
        average_models([])


def test_a_grafted_module_takes_the_donors_weights_and_nothing_else(tmp_path: Path) -> None:
    base, donor = (_saved(tmp_path, f"w{seed}", "vimpnet_lite_gated", seed) for seed in (0, 1))
    before, given = load_model(base).state_dict(), load_model(donor).state_dict()
    grafted = graft_modules(load_model(base), {"drop_remover": donor}).state_dict()
    assert grafted.keys() == before.keys()
    for name, tensor in grafted.items():
        assert torch.equal(tensor, (given if name.startswith("drop_remover.") else before)[name]), name
    assert any(not torch.equal(before[name], given[name]) for name in before if name.startswith("drop_remover."))


def test_a_graft_of_an_unknown_module_or_another_model_changes_nothing(tmp_path: Path) -> None:
    base, lite = _saved(tmp_path, "gated", "vimpnet_lite_gated", 0), _saved(tmp_path, "lite", "vimpnet_lite", 1)
    model = load_model(base)
    with pytest.raises(CheckpointError, match=r"no module \['stage2'\].*drop_remover"):
        graft_modules(model, {"stage2": base})
    with pytest.raises(CheckpointError, match="cannot take drop_remover"):
        graft_modules(model, {"drop_remover": lite})
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, load_model(base).state_dict()[name]), name
