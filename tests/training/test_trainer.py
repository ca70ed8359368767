"""The trainer on a tiny rendered set: it learns, resumes exactly, and writes loadable checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vimpnet_ros.errors import CheckpointError, ConfigError
from vimpnet_ros.model.checkpoint import load_model
from vimpnet_ros.training.config import config_from_dict
from vimpnet_ros.training.trainer import Trainer, cosine_factor, resolve_precision


def _trainer(config: dict[str, Any], resume: str | Path | None = None, start_step: int = 0) -> Trainer:
    trainer = Trainer(config_from_dict(config), log=lambda message: None)
    trainer.setup(resume=resume, start_step=start_step)
    return trainer


def test_steps_on_a_fixed_64x64_clip_reduce_the_loss(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    # The tiny set is 48x40; a 64x64 clip is built from it by tiling so the model sees the size the brief asks.
    trainer = _trainer(make_config(tiny_train_root, tmp_path, **{"optim.lr": 2e-3}))
    batch = next(iter(trainer.loader))
    batch = {k: v.repeat(1, 1, 1, 2, 2)[..., :64, :64] for k, v in batch.items() if v.is_floating_point()}
    assert batch["lq"].shape == (1, 5, 3, 64, 64)
    losses = [trainer.train_step(batch)["loss"] for _ in range(6)]
    assert losses[-1] < 0.9 * losses[0], losses
    assert trainer.step == 6


@pytest.mark.parametrize("start_fraction", [0.0, 0.6])
def test_resume_gives_the_same_next_step_as_uninterrupted(
    tiny_train_root: Path, tmp_path: Path, make_config: Any, start_fraction: float
) -> None:
    # Interrupted at step 3 (SPyNet thaws at step 2, so the thawed state is resumed too), run on to step 4; with
    # start-of-stream windows, the resumed step draws the same windows.
    config = make_config(
        tiny_train_root, tmp_path / "a", **{"log.save_every": 3, "data.start_fraction": start_fraction}
    )
    straight = _trainer(config)
    straight.train(max_steps=4)
    expected_loss = straight.history[-1]["loss"]
    expected_params = {k: v.clone() for k, v in straight.model.state_dict().items()}

    resumed = _trainer(config, resume=tmp_path / "a" / "checkpoints" / "iter_00000003.state.pt")
    assert resumed.step == 3 and resumed.epoch_batch == 3
    resumed.train(max_steps=1)
    assert resumed.history[-1]["step"] == 4
    assert resumed.history[-1]["loss"] == expected_loss
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected_params[name], rtol=0, atol=0, msg=name)


def test_weights_alone_continue_the_schedule_and_data_at_their_step(
    tiny_train_root: Path, tmp_path: Path, make_config: Any
) -> None:
    # What a new machine has of a run: its weights at step 3 (training_state/), not its optimizer state.
    changes = {"log.save_every": 3, "schedule.warmup_iters": 2}
    straight = _trainer(make_config(tiny_train_root, tmp_path / "a", **changes))
    straight.train(max_steps=4)
    weights = tmp_path / "a" / "checkpoints" / "iter_00000003.pth"
    config = make_config(tiny_train_root, tmp_path / "b", init_from=str(weights), **{"log.save_every": 1, **changes})

    continued = _trainer(config, start_step=3)
    assert (continued.step, continued.epoch_batch) == (3, 3)
    cosine = [cosine_factor(step, 20, 2, 1e-3, 1e-6) * 1e-3 for step in range(5)]
    assert continued.optimizer.param_groups[0]["lr"] == pytest.approx(cosine[3] / 2)  # warmed up again: 1 of 2
    continued.train(max_steps=1)
    # The same weights on the same batch: the step's loss is the uninterrupted run's.
    assert continued.history[-1]["step"] == 4
    assert continued.history[-1]["loss"] == straight.history[-1]["loss"]
    assert continued.optimizer.param_groups[0]["lr"] == pytest.approx(cosine[4])

    # The continued run resumes exactly too: its restart travels in its training state.
    resumed = _trainer(config, resume="auto")
    assert resumed.step == 4
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(cosine[4])
    resumed.scheduler.step()
    continued.scheduler.step()
    assert resumed.optimizer.param_groups[0]["lr"] == continued.optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize(
    ("init_from", "resume", "start_step", "message"),
    [
        (None, None, 2, "needs the weights"),
        ("weights", "auto", 2, "pick one"),
        ("weights", None, 21, "outside the schedule"),
    ],
)
def test_a_start_step_without_weights_or_with_a_resume_is_a_config_error(
    tiny_train_root: Path,
    tmp_path: Path,
    make_config: Any,
    init_from: str | None,
    resume: str | None,
    start_step: int,
    message: str,
) -> None:
    config = make_config(tiny_train_root, tmp_path, **({"init_from": str(tmp_path / "w.pth")} if init_from else {}))
    with pytest.raises(ConfigError, match=message):
        _trainer(config, resume=resume, start_step=start_step)


def test_checkpoints_load_with_the_model_loader_and_auto_resume(
    tiny_train_root: Path, tmp_path: Path, make_config: Any
) -> None:
    config = make_config(tiny_train_root, tmp_path, **{"log.save_every": 2, "log.keep_last": 1})
    trainer = _trainer(config)
    trainer.train(max_steps=4)
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.glob("iter_*")) == ["iter_00000004.pth", "iter_00000004.state.pt"]
    model = load_model(tmp_path / "final.pth", "vimpnet_lite")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, trainer.model.state_dict()[name], msg=name)
    again = _trainer(config, resume="auto")
    assert again.step == 4


def test_keep_every_keeps_the_weights_of_those_steps(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    """The newest pair stays whole; older checkpoints at multiples of keep_every keep their weights only."""
    config = make_config(tiny_train_root, tmp_path, **{"log.save_every": 1, "log.keep_last": 1, "log.keep_every": 2})
    _trainer(config).train(max_steps=5)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("iter_*"))
    assert names == ["iter_00000002.pth", "iter_00000004.pth", "iter_00000005.pth", "iter_00000005.state.pt"]
    load_model(tmp_path / "checkpoints" / "iter_00000002.pth", "vimpnet_lite")


def test_missing_resume_state_is_a_checkpoint_error(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        _trainer(make_config(tiny_train_root, tmp_path), resume="auto")


def test_init_from_loads_matching_tensors(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    first = _trainer(make_config(tiny_train_root, tmp_path / "a"))
    first.train(max_steps=1)
    second = _trainer(make_config(tiny_train_root, tmp_path / "b", init_from=str(tmp_path / "a" / "final.pth")))
    for name, value in second.model.state_dict().items():
        torch.testing.assert_close(value, first.model.state_dict()[name], msg=name)


def test_two_stage1_passes_train_unrolled(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    """``stage1_passes: 2`` trains the model with stage 1 twice: the loss sees the second pass's frames, and the
    weights it saves load as the same network."""
    once = _trainer(make_config(tiny_train_root, tmp_path / "a"))
    twice = _trainer(make_config(tiny_train_root, tmp_path / "b", stage1_passes=2))
    assert (once.model.stage1_passes, twice.model.stage1_passes) == (1, 2)
    twice.model.load_state_dict(once.model.state_dict())
    batch = next(iter(once.loader))
    losses = once.train_step(batch)["loss"], twice.train_step(batch)["loss"]
    assert losses[0] != losses[1]  # the same weights and clip, another forward
    twice.train(max_steps=1)
    assert load_model(tmp_path / "b" / "final.pth", twice.config.model).stage1_passes == 1


def test_stage2_prefill_trains_stage_2_behind_the_rule(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    """``stage2_prefill`` trains with the drops filled that much before stage 2 (the model's rule otherwise); the
    weights it saves load as the registered network, with the registered rule."""
    plain = _trainer(make_config(tiny_train_root, tmp_path / "a"))
    filled = _trainer(make_config(tiny_train_root, tmp_path / "b", stage2_prefill=1.0))
    assert (plain.model.config.stage2_prefill, filled.model.config.stage2_prefill) == (0.0, 1.0)
    filled.train(max_steps=1)
    assert load_model(tmp_path / "b" / "final.pth", filled.config.model).config.stage2_prefill == 0.0


def test_channels_last_trains_the_same_network(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    """``channels_last: true`` trains with NHWC convolution weights (Conv3d ones included) and the same loss; the
    weights it saves load as the registered network."""
    plain = _trainer(make_config(tiny_train_root, tmp_path / "a"))
    last = _trainer(make_config(tiny_train_root, tmp_path / "b", channels_last=True))
    last.model.load_state_dict(plain.model.state_dict())
    assert last.model.feat_extract[0].weight.is_contiguous(memory_format=torch.channels_last)
    batch = next(iter(plain.loader))
    torch.testing.assert_close(last.train_step(batch)["loss"], plain.train_step(batch)["loss"], atol=1e-4, rtol=1e-4)
    last.train(max_steps=1)
    assert load_model(tmp_path / "b" / "final.pth", last.config.model).config.name == last.config.model


def test_zero_flow_init_gives_zero_flows(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    trainer = _trainer(make_config(tiny_train_root, tmp_path, zero_flow_init=True))
    frames = torch.rand(1, 3, 3, 32, 32)
    backward, forward = trainer.model.compute_flows(frames)
    assert backward.abs().max() == 0 and forward.abs().max() == 0


def test_spynet_group_and_schedule() -> None:
    # Cosine from the base lr to eta_min, linear warm-up first.
    assert cosine_factor(0, 100, 0, 1e-3, 1e-6) == pytest.approx(1.0)
    assert cosine_factor(50, 100, 0, 1e-3, 1e-6) == pytest.approx(0.5 + 0.5e-3, rel=1e-6)
    assert cosine_factor(100, 100, 0, 1e-3, 1e-6) == pytest.approx(1e-3)
    assert cosine_factor(4, 100, 10, 1e-3, 1e-6) == pytest.approx(0.5)
    # auto on CPU: bf16 only where the CPU runs it natively (AMX / AVX512-BF16), else fp32.
    from vimpnet_ros.engine.hardware import cpu_bf16_is_fast

    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_bf16_is_fast() else "fp32")
    with pytest.raises(ConfigError, match="fp16 training needs CUDA"):
        resolve_precision("fp16", torch.device("cpu"))


def test_spynet_is_frozen_then_trains_at_reduced_lr(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    trainer = _trainer(make_config(tiny_train_root, tmp_path, **{"optim.spynet_lr_mult": 0.25}))
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["spynet"]["lr"] == pytest.approx(0.25 * groups["main"]["lr"])
    before = {k: v.clone() for k, v in trainer.model.spynet.state_dict().items()}
    trainer.train(max_steps=2)
    assert all(torch.equal(v, trainer.model.spynet.state_dict()[k]) for k, v in before.items())
    assert not any(p.requires_grad for p in trainer.model.spynet.parameters())
    trainer.train(max_steps=1)
    assert all(p.requires_grad for p in trainer.model.spynet.parameters())
    assert any(not torch.equal(v, trainer.model.spynet.state_dict()[k]) for k, v in before.items())


@pytest.mark.slow  # the first bf16 step JIT-compiles oneDNN kernels: minutes on a busy 2-core CPU
def test_bf16_autocast_step_on_cpu(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    trainer = _trainer(make_config(tiny_train_root, tmp_path, precision="bf16"))
    assert trainer.precision == "bf16"
    terms = trainer.train_step(next(iter(trainer.loader)))
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32


def test_only_the_trainable_parameters_change(tiny_train_root: Path, tmp_path: Path, make_config: Any) -> None:
    # The gate alone on a frozen network (vimpnet_lite_gate_only.yaml): nothing else moves, SPyNet included after
    # its thaw step, and nothing frozen gets a gradient or optimizer state.
    config = make_config(
        tiny_train_root,
        tmp_path,
        model="vimpnet_lite_gated",
        **{"optim.trainable": ["change_gate"], "loss.gate": 4.0, "loss.identity": 5.0},
    )
    trainer = _trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(max_steps=3)  # SPyNet's thaw (spynet_freeze_iters 2) must not unfreeze it
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("change_gate.") for k in changed), changed
    frozen = [p for n, p in trainer.model.named_parameters() if not n.startswith("change_gate.")]
    assert not any(p.requires_grad or p.grad is not None for p in frozen)
    assert all(p not in trainer.optimizer.state for p in frozen)


def test_a_trainable_prefix_naming_no_parameter_is_a_config_error(
    tiny_train_root: Path, tmp_path: Path, make_config: Any
) -> None:
    config = make_config(tiny_train_root, tmp_path, **{"optim.trainable": ["change_gate"]})  # ungated model
    with pytest.raises(ConfigError, match=r"optim.trainable: no parameter of vimpnet_lite is named \['change_gate'\]"):
        _trainer(config)
