"""The training loop: single process or DistributedDataParallel under torchrun, resumable exactly.

Files under ``log.out_dir``::

    config.yaml                       the resolved config of the run
    checkpoints/iter_00001000.pth     model weights in our checkpoint format (loadable by the engine)
    checkpoints/iter_00001000.state.pt  optimizer, scheduler, scaler, step, epoch position, RNG states
    checkpoints/latest.json           which iteration is the newest
    final.pth                         the weights at the end of the run
    log.json                          loss terms, validations and the run summary (rewritten as it goes)
    tb/                               TensorBoard logs (loss terms, lr, validation PSNR/SSIM, it/s)

``train(max_seconds=...)`` stops at a wall-clock budget and ``log.save_every_seconds``
saves on a timer, so a run killed at its budget still leaves recent weights.

Exact resume: the model weights, optimizer moments, schedule, grad scaler, every
RNG and the position inside the epoch are restored, and the data of a step depends
only on (seed, epoch, sample index) (see ``vimpnet_ros.data.vrds``), so a resumed
run computes the same next step as an uninterrupted one.

Weights alone continue a run too (``setup(start_step=N)`` with ``init_from``: a run's kept weights on a new
machine, where its training state did not travel): the schedule, the data order and the per-step draws go on
at step N as the run that saved them would have; only the optimizer's moments start afresh, so the learning
rate is warmed up again over ``schedule.warmup_iters`` steps.

SPyNet is frozen (``requires_grad=False``, so its backward is not even computed)
for ``spynet_freeze_iters`` iterations, then trains in its own parameter group at
``spynet_lr_mult`` x the learning rate, as the reference does. Under DDP the
wrapper is rebuilt when SPyNet thaws, because DDP registers its gradient hooks on
the parameters that require grad when it is built.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from vimpnet_ros.errors import CheckpointError, ConfigError
from vimpnet_ros.evaluation.vrds_eval import json_safe
from vimpnet_ros.training import checkpoints
from vimpnet_ros.training.config import TrainConfig
from vimpnet_ros.training.data import (
    ResumableSampler,
    collate_training,
    online_dataset,
    prepare_source,
    repeat_for,
    start_of_stream,
)
from vimpnet_ros.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    local_rank_from_env,
    resolve_device,
)
from vimpnet_ros.training.losses import VimpNetLoss

LOGGER = logging.getLogger(__name__)
STATE_FORMAT = "vimpnet_ros-train-state"
STATE_VERSION = 1


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on CUDA when supported, else fp16; on CPU bf16 only where it is native (AVX512-BF16/AMX).

    On CPUs without native bf16 the generic kernels are 30-100x slower than fp32, so
    ``auto`` picks fp32 there; with AMX a lite training step ran about 2x faster in bf16.
    """
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise ConfigError("fp16 training needs CUDA; on CPU use precision=bf16 or fp32")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    from vimpnet_ros.engine import cpu_bf16_is_fast  # the one place that knows CPU features

    return "bf16" if cpu_bf16_is_fast() else "fp32"


def cosine_factor(step: int, total: int, warmup: int, base_lr: float, eta_min: float) -> float:
    """lr(step) / base_lr: linear warm-up, then cosine from base_lr to eta_min at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = eta_min / base_lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def zero_flow_output(model: nn.Module) -> None:
    """Zero the last conv of every SPyNet level so the untrained flow network predicts exactly 0."""
    levels = model.spynet.basic_module
    for level in levels:
        last = level.basic_module[-1].conv
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)


def _capture_rng(device: torch.device) -> dict[str, Any]:
    """Every RNG a step may touch, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`_capture_rng`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _write_config(out_dir: Path, config: dict[str, Any]) -> Path:
    """``config.yaml`` with PyYAML, or ``config.json`` on machines without it (GPU boxes may lack it)."""
    try:
        import yaml
    except ImportError:
        path = out_dir / "config.json"
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return path
    path = out_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class Trainer:
    """Train a ViMP-Net model as ``config`` says; cheap to build, :meth:`setup` does the heavy work.

    ``log``: where progress lines go (rank 0 only); defaults to the module logger.
    """

    def __init__(self, config: TrainConfig, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.log_fn = log or LOGGER.info
        self.out_dir = Path(config.log.out_dir)
        self.ctx = DistContext()
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.step = 0
        self.epoch = 0
        self.epoch_batch = 0
        self.model: nn.Module | None = None
        self._ddp: nn.Module | None = None
        self._spynet_trainable: bool | None = None
        self.history: list[dict[str, float]] = []
        self.validations: list[dict[str, float]] = []
        self.last_validation: dict[str, float] = {}
        self.summary: dict[str, Any] = {}
        self._saved_step: int | None = None
        self._restart_step: int | None = None  # where weights alone continued the schedule (fresh moments)

    # -- set-up ------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        """Log from rank 0 only."""
        if self.ctx.is_main:
            self.log_fn(message)

    def setup(self, resume: str | Path | None = None, start_step: int = 0) -> None:
        """Join the process group, build model, optimizer, schedule and data; load init/resume files.

        ``start_step``: continue the schedule at that step from the ``init_from`` weights alone (module docstring).
        """
        cfg = self.config
        if start_step:
            if resume is not None:
                raise ConfigError(
                    "a start step continues from weights alone; a resume restores the whole state: pick one"
                )
            if not cfg.init_from:
                raise ConfigError("a start step needs the weights to continue from (--init-from or init_from)")
            if not 0 < start_step <= cfg.schedule.total_iters:
                raise ConfigError(
                    f"start step {start_step} is outside the schedule "
                    f"(1 to schedule.total_iters = {cfg.schedule.total_iters})"
                )
        self.device = resolve_device(cfg.device, local_rank_from_env())
        self.ctx = init_distributed(self.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        if cfg.cpu_threads is not None:
            torch.set_num_threads(cfg.cpu_threads)
        torch.manual_seed(cfg.seed + self.ctx.rank)
        np.random.seed((cfg.seed + self.ctx.rank) % 2**32)
        random.seed(cfg.seed + self.ctx.rank)

        from vimpnet_ros.model import VimpNet, get_config
        from vimpnet_ros.model.arch_util import use_channels_last

        # Same initial weights on every rank (DDP also broadcasts rank 0's, this keeps it explicit).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = VimpNet(get_config(cfg.model))
        model.set_stage1_passes(cfg.stage1_passes)
        if cfg.stage2_prefill is not None:
            model.set_stage2_prefill(cfg.stage2_prefill)
        if cfg.init_from and resume is None:
            report = checkpoints.load_weights_into(model, checkpoints.resolve_init(cfg.init_from))
            self.log(f"initialised from {cfg.init_from}: {report}")
        elif cfg.zero_flow_init:
            zero_flow_output(model)
        if cfg.channels_last:
            use_channels_last(model)  # Module.to(memory_format) rejects the 5-D Conv3d weights
        self.model = model.to(self.device)
        self.criterion = VimpNetLoss(cfg.loss)
        self._build_optimizer(start_step)
        self._build_data()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        if resume is not None:
            self.load_training_state(resume)
        elif start_step:
            self.step = start_step
            self.epoch, self.epoch_batch = divmod(start_step, self.sampler.batches_per_epoch())
            self.log(
                f"continuing the schedule at step {start_step} from {cfg.init_from}: fresh optimizer moments, "
                f"the learning rate warmed up again over {cfg.schedule.warmup_iters} steps"
            )
        self._set_spynet_trainable(self.step >= cfg.optim.spynet_freeze_iters)
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _write_config(self.out_dir, cfg.to_dict())
        self.log(
            f"model {cfg.model} on {self.device} ({self.precision}), world size {self.ctx.world_size}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, starting at step {self.step}"
        )

    def _trains(self, name: str) -> bool:
        """Whether parameter ``name`` trains (``optim.trainable``: its prefixes; empty: all)."""
        prefixes = self.config.optim.trainable
        return not prefixes or any(self._trains_under(name, p) for p in prefixes)

    @staticmethod
    def _trains_under(name: str, prefix: str) -> bool:
        """``name`` is ``prefix`` or inside the module ``prefix``."""
        return name == prefix or name.startswith(prefix.rstrip(".") + ".")

    def _build_optimizer(self, start_step: int = 0) -> None:
        """Two parameter groups: everything but SPyNet at lr, SPyNet at lr x spynet_lr_mult.

        Parameters outside ``optim.trainable`` are frozen (``requires_grad=False``): autograd then
        computes no backward through a frozen part whose inputs need no gradient. ``start_step``: the
        schedule starts there, warmed up again (:meth:`_restart_factor`).
        """
        assert self.model is not None
        opt = self.config.optim
        names = [n for n, _ in self.model.named_parameters()]
        unmatched = [p for p in opt.trainable if not any(self._trains_under(n, p) for n in names)]
        if unmatched:
            raise ConfigError(f"optim.trainable: no parameter of {self.config.model} is named {unmatched}")
        for name, param in self.model.named_parameters():
            param.requires_grad_(self._trains(name))
        spynet = [p for n, p in self.model.named_parameters() if n.startswith("spynet.") and self._trains(n)]
        others = [p for n, p in self.model.named_parameters() if not n.startswith("spynet.") and self._trains(n)]
        groups = [
            {"params": others, "lr": opt.lr, "name": "main"},
            {"params": spynet, "lr": opt.lr * opt.spynet_lr_mult, "name": "spynet"},
        ]
        cls = torch.optim.AdamW if opt.type == "adamw" else torch.optim.Adam
        self.optimizer = cls(groups, lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay)
        sched = self.config.schedule
        lambdas = [
            (
                lambda step, base=g["lr"]: (
                    cosine_factor(step, sched.total_iters, sched.warmup_iters, base, sched.eta_min)
                    * self._restart_factor(step)
                )
            )
            if g["lr"] > 0
            else (lambda step: 1.0)
            for g in groups
        ]
        self._restart_step = start_step or None
        if start_step:
            for group in self.optimizer.param_groups:
                group["initial_lr"] = group["lr"]  # what LambdaLR scales when it starts past step 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambdas, last_epoch=start_step - 1)

    def _restart_factor(self, step: int) -> float:
        """1, or after weights alone continued the schedule, the schedule's warm-up again from that step."""
        warmup = self.config.schedule.warmup_iters
        if self._restart_step is None or not warmup or step >= self._restart_step + warmup:
            return 1.0
        return (step - self._restart_step + 1) / warmup

    def _build_data(self) -> None:
        """Training loader (rank 0 renders the synthetic cache while the others wait) and validation folder."""
        data = self.config.data
        if self.ctx.is_main:
            root = prepare_source(data.train, self.log) if data.train.type != "online" else None
            self.val_root = prepare_source(data.val, self.log) if data.val is not None else None
        barrier(self.ctx)
        if not self.ctx.is_main:
            root = prepare_source(data.train) if data.train.type != "online" else None
            self.val_root = None
        if root is None:
            self._build_online_data()
            return
        from vimpnet_ros.data.vrds import VRDSDataset

        probe = VRDSDataset.from_folder(root, clip_length=data.clip_length, patch_size=data.crop_size)
        repeat = repeat_for(len(probe), data.batch_size, self.ctx.world_size)
        self.dataset = VRDSDataset(
            probe.index,
            clip_length=data.clip_length,
            patch_size=data.crop_size,
            augment=data.augment,
            repeat=repeat,
            seed=self.config.seed,
        )
        self.sampler = ResumableSampler(
            self.dataset, self.ctx.world_size, self.ctx.rank, data.batch_size, seed=self.config.seed
        )
        if self.sampler.batches_per_epoch() < 1:
            raise ConfigError(
                f"the training set gives no full batch per rank ({len(self.dataset)} clips, batch {data.batch_size}, "
                f"{self.ctx.world_size} ranks); lower data.batch_size"
            )
        self.loader = self._loader(data.batch_size, collate_training)
        self.log(
            f"training data {root}: {len(probe)} videos x repeat {repeat}, {self.sampler.batches_per_epoch()} "
            f"batches of {data.batch_size} per rank and epoch, crops {data.crop_size}, clips of {data.clip_length}"
        )

    def _build_online_data(self) -> None:
        """Clips rendered by the loader's workers: a batch holds batch_size / clips_per_item rendered items."""
        from vimpnet_ros.data.online import collate_items

        data = self.config.data
        source = data.train
        self.dataset = online_dataset(source, data.clip_length, data.crop_size, data.augment)
        items = data.batch_size // source.clips_per_item
        self.sampler = ResumableSampler(self.dataset, self.ctx.world_size, self.ctx.rank, items, seed=self.config.seed)
        if self.sampler.batches_per_epoch() < 1:
            raise ConfigError(f"data.train.num_videos ({source.num_videos}) gives no full batch; raise it")
        self.loader = self._loader(items, collate_items)
        self.log(
            f"training data rendered online ({source.clean}, scene {source.scene}, rain "
            f"{source.rain_config or 'default'}): {source.num_videos} items of {source.clips_per_item} clips, "
            f"{data.num_workers} workers, crops {data.crop_size} of {source.size[0]}x{source.size[1]} frames"
        )

    def _loader(self, batch_size: int, collate: Callable[..., Any]) -> DataLoader[Any]:
        """The training DataLoader; workers use one OpenCV/torch thread each (they are the parallelism)."""
        from vimpnet_ros.data.online import worker_init

        data = self.config.data
        workers = data.num_workers
        return DataLoader(
            self.dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            worker_init_fn=worker_init if workers else None,
            prefetch_factor=data.prefetch_factor if workers else None,
            multiprocessing_context=data.worker_start if workers else None,
        )

    def _set_spynet_trainable(self, trainable: bool) -> None:
        """Freeze/thaw SPyNet and (re)build the DDP wrapper when that changes."""
        assert self.model is not None
        if trainable == self._spynet_trainable:
            return
        for name, param in self.model.spynet.named_parameters(prefix="spynet"):
            param.requires_grad_(trainable and self._trains(name))
        self._spynet_trainable = trainable
        if self.ctx.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(self.model, device_ids=device_ids, broadcast_buffers=False)
        else:
            self._ddp = self.model
        if self.config.compile:
            self._ddp = torch.compile(self._ddp)
        if self.step > 0 or trainable:
            self.log(f"SPyNet {'trains' if trainable else 'frozen'} from step {self.step}")

    # -- one step ----------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast as ``precision`` says (bf16 on CPU, bf16/fp16 on CUDA)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step on a batch of (n, t, c, h, w) tensors; returns the loss terms."""
        assert self.model is not None and self._ddp is not None
        self._set_spynet_trainable(self.step >= self.config.optim.spynet_freeze_iters)
        self.model.train()
        if self.config.data.start_fraction > 0.0:
            # Drawn from (seed, rank, step) alone, so a resumed run takes the same windows.
            draw = np.random.SeedSequence([self.config.seed, self.ctx.rank, self.step]).generate_state(1)[0]
            generator = torch.Generator().manual_seed(int(draw))
            batch = start_of_stream(batch, self.config.data.start_fraction, generator)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        targets = {
            "gt": batch["gt"],
            "drop": batch["drop"],
            "mask": batch["01drop"],
            "streak": batch["mstreak"],
            "lq": batch["lq"],
        }
        with self._autocast():
            out, gate = self._ddp(batch["lq"], with_gate=True)
        loss, terms = self.criterion(out.stage1, out.drop_mask, out.streak_map, out.output, targets, gate)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {self.step}; lower optim.lr, set optim.grad_clip or use precision=fp32"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        grad_norm = math.nan
        if self.config.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.optim.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        result = {"loss": float(loss.detach()), **{k: float(v) for k, v in terms.items()}}
        if not math.isnan(grad_norm):
            result["grad_norm"] = grad_norm
        return result

    # -- loop --------------------------------------------------------------------------------------

    def train(self, max_steps: int | None = None, max_seconds: float | None = None) -> dict[str, Any]:
        """Run until ``schedule.total_iters``, ``max_steps`` more steps or ``max_seconds`` of wall time.

        The time budget is checked after every step (one step may overrun it); the final
        save follows. Returns a summary (also written to ``log.json``).
        """
        assert self.model is not None, "call setup() first"
        cfg = self.config
        end = cfg.schedule.total_iters if max_steps is None else min(cfg.schedule.total_iters, self.step + max_steps)
        writer = self._tensorboard()
        bar = self._progress(end)
        started, started_step = time.perf_counter(), self.step
        window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
        last_save = time.perf_counter()
        stop_reason = "schedule" if max_steps is None else "max_steps"
        try:
            while self.step < end:
                self.dataset.set_epoch(self.epoch)
                start_batch = self.epoch_batch
                self.sampler.set_epoch(self.epoch)
                self.sampler.set_start(start_batch)
                out_of_time = False
                fetched = time.perf_counter()
                for batch in self.loader:
                    window_wait += time.perf_counter() - fetched  # time the step waited for its batch
                    terms = self.train_step(batch)
                    self.epoch_batch += 1
                    window_steps += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{terms['loss']:.4f}", refresh=False)
                    if self.step % cfg.log.log_every == 0 or self.step == end:
                        terms = all_reduce_mean(terms, self.ctx, self.device)
                        elapsed_window = max(time.perf_counter() - window_start, 1e-9)
                        rate = window_steps / elapsed_window
                        terms["data_wait"] = window_wait / elapsed_window  # share of the time spent waiting
                        window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
                        self._log_terms(writer, terms, rate)
                    if cfg.log.val_every and self.step % cfg.log.val_every == 0:
                        self.validate(writer)
                    on_step = bool(cfg.log.save_every) and self.step % cfg.log.save_every == 0
                    elapsed = time.perf_counter() - last_save
                    on_timer = bool(cfg.log.save_every_seconds) and elapsed >= cfg.log.save_every_seconds
                    if on_step or on_timer:
                        self.save()
                        last_save = time.perf_counter()
                    out_of_time = max_seconds is not None and time.perf_counter() - started >= max_seconds
                    if self.step >= end or out_of_time:
                        break
                    fetched = time.perf_counter()
                else:
                    self.epoch += 1
                    self.epoch_batch = 0
                if out_of_time:
                    stop_reason = "max_seconds"
                    break
            if self._saved_step != self.step:
                self.save()
            if self.ctx.is_main:
                checkpoints.save_model(self.out_dir / "final.pth", self.model)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        elapsed = time.perf_counter() - started
        steps = self.step - started_step
        self.summary = {
            "steps": self.step,
            "steps_this_run": steps,
            "seconds": elapsed,
            "it_per_s": steps / elapsed if elapsed > 0 else math.nan,
            "stopped_by": stop_reason,
            "device": str(self.device),
            "precision": self.precision,
            "last": self.history[-1] if self.history else {},
            "validation": self.last_validation,
        }
        self.write_log()
        self.log(f"done: step {self.step}, {self.summary['it_per_s']:.3f} it/s ({stop_reason})")
        return dict(self.summary)

    def write_log(self) -> None:
        """Write ``log.json`` (rank 0): config, loss history, validations and the summary so far."""
        if not self.ctx.is_main:
            return
        record = {
            "config": self.config.to_dict(),
            "history": self.history,
            "validations": self.validations,
            "summary": self.summary,
        }
        path = self.out_dir / "log.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(json_safe(record), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    def close(self) -> None:
        """Leave the process group."""
        cleanup(self.ctx)

    def _tensorboard(self) -> Any:
        """A SummaryWriter on rank 0 when enabled."""
        if not (self.ctx.is_main and self.config.log.tensorboard):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.out_dir / "tb"), purge_step=self.step or None)

    def _progress(self, end: int) -> Any:
        """A tqdm bar (loss in the postfix, it/s in the rate) on rank 0 when enabled."""
        if not (self.ctx.is_main and self.config.log.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=end, initial=self.step, desc=self.config.name, unit="it", dynamic_ncols=True)

    def _log_terms(self, writer: Any, terms: dict[str, float], rate: float) -> None:
        """Remember the loss terms and send them to TensorBoard and the log."""
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
        record = {"step": float(self.step), **terms, "it_per_s": rate, "lr": lrs["main"]}
        self.history.append(record)
        if not self.ctx.is_main:
            return
        if writer is not None:
            for name, value in terms.items():
                writer.add_scalar(f"train/{name}", value, self.step)
            for name, lr in lrs.items():
                writer.add_scalar(f"lr/{name}", lr, self.step)
            writer.add_scalar("train/it_per_s", rate, self.step)
        if self.step % (self.config.log.log_every * 10) == 0:
            self.write_log()
        if not self.config.log.progress:
            parts = " ".join(f"{k} {v:.4f}" for k, v in terms.items())
            self.log(f"step {self.step}: {parts} lr {lrs['main']:.2e} {rate:.3f} it/s")

    # -- validation --------------------------------------------------------------------------------

    def validate(self, writer: Any = None) -> dict[str, float]:
        """PSNR/SSIM on the validation folder (rank 0; the others wait). Empty dict without one."""
        if self.config.data.val is None:
            return {}
        result: dict[str, float] = {}
        if self.ctx.is_main and self.val_root is not None:
            from vimpnet_ros.evaluation.vrds_eval import evaluate_vrds

            assert self.model is not None
            data = self.config.data
            evaluation = evaluate_vrds(
                self.model,
                self.val_root,
                clip_length=data.clip_length,
                stride=data.clip_length,
                device=self.device,
                precision=self.precision,
                max_videos=data.val_max_videos,
                max_frames=data.val_max_frames,
            )
            result = {
                "step": float(self.step),
                "psnr": evaluation.restored["psnr"],
                "ssim": evaluation.restored["ssim"],
                "input_psnr": evaluation.rainy_input["psnr"],
                "input_ssim": evaluation.rainy_input["ssim"],
            }
            for name in ("psnr_in_mask", "psnr_outside_mask"):
                if name in evaluation.restored:
                    result[name] = evaluation.restored[name]
                    result[f"input_{name}"] = evaluation.rainy_input[name]
            if evaluation.drop_mask is not None:
                result["drop_mask_iou"] = evaluation.drop_mask["iou"]
                result["drop_mask_precision"] = evaluation.drop_mask["precision"]
                result["drop_mask_recall"] = evaluation.drop_mask["recall"]
            self.last_validation = result
            self.validations.append(result)
            self.write_log()
            if writer is not None:
                for name, value in result.items():
                    writer.add_scalar(f"val/{name}", value, self.step)
            line = (
                f"validation at step {self.step}: PSNR {result['psnr']:.2f} dB (input {result['input_psnr']:.2f}), "
                f"SSIM {result['ssim']:.4f}"
            )
            if "psnr_in_mask" in result:
                line += f", in drops {result['psnr_in_mask']:.2f} dB (input {result['input_psnr_in_mask']:.2f})"
            if "drop_mask_iou" in result:
                line += f", mask IoU {result['drop_mask_iou']:.3f}"
            self.log(line)
        barrier(self.ctx)
        return result

    # -- checkpoints -------------------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "epoch_batch": self.epoch_batch,
            "world_size": self.ctx.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _capture_rng(self.device),
            "restart_step": self._restart_step,
            "model": {k: v.detach().cpu().clone() for k, v in self._model_state().items()},
        }

    def _model_state(self) -> dict[str, torch.Tensor]:
        assert self.model is not None
        return self.model.state_dict()

    def save(self) -> Path | None:
        """Write iter_<step>.pth (our model format) and iter_<step>.state.pt (training state) on rank 0."""
        path = None
        self._saved_step = self.step
        if self.ctx.is_main:
            assert self.model is not None
            folder = self.out_dir / "checkpoints"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"iter_{self.step:08d}.pth"
            checkpoints.save_model(path, self.model)
            state_path = folder / f"iter_{self.step:08d}.state.pt"
            tmp = state_path.with_suffix(".tmp")
            torch.save(self.training_state(), tmp)
            tmp.replace(state_path)
            (folder / "latest.json").write_text(json.dumps({"step": self.step, "state": state_path.name}) + "\n")
            self._prune(folder)
            self.write_log()
            self.log(f"saved {path}")
        barrier(self.ctx)
        return path

    def _prune(self, folder: Path) -> None:
        """Keep the newest ``log.keep_last`` checkpoint pairs, and the weights of every ``log.keep_every``-th step."""
        states = sorted(folder.glob("iter_*.state.pt"))
        every = self.config.log.keep_every
        for old in states[: -self.config.log.keep_last]:
            old.unlink(missing_ok=True)
            step = int(old.name[len("iter_") : -len(".state.pt")])
            if not every or step % every:
                old.with_name(old.name.replace(".state.pt", ".pth")).unlink(missing_ok=True)

    def find_state(self, resume: str | Path) -> Path:
        """``auto`` -> the newest state in ``out_dir``; a ``.pth``/``.state.pt`` path -> its state file."""
        if str(resume) == "auto":
            latest = self.out_dir / "checkpoints" / "latest.json"
            if not latest.is_file():
                raise CheckpointError(f"nothing to resume in {self.out_dir} (no checkpoints/latest.json)")
            return latest.parent / json.loads(latest.read_text())["state"]
        path = Path(resume)
        if path.name.endswith(".pth"):
            path = path.with_name(path.name[: -len(".pth")] + ".state.pt")
        if not path.is_file():
            raise CheckpointError(f"training state {path} not found; pass --resume auto or an iter_*.state.pt file")
        return path

    def load_training_state(self, resume: str | Path) -> None:
        """Restore weights, optimizer, schedule, scaler, RNGs and the epoch position."""
        assert self.model is not None
        path = self.find_state(resume)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(f"cannot read training state {path}: {error}") from error
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{path} is not a vimpnet_ros training state")
        if state["world_size"] != self.ctx.world_size:
            self.log(
                f"warning: resuming a {state['world_size']}-process run with {self.ctx.world_size} processes; "
                "the data order differs from the uninterrupted run"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{path} does not fit model {self.config.model}: {error}") from error
        self._restart_step = state.get("restart_step")  # before the scheduler's next lr is computed
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.epoch_batch = state["step"], state["epoch"], state["epoch_batch"]
        if self.epoch_batch >= self.sampler.batches_per_epoch():
            self.epoch, self.epoch_batch = self.epoch + 1, 0
        _restore_rng(state["rng"], self.device)
        self.log(f"resumed from {path} at step {self.step} (epoch {self.epoch}, batch {self.epoch_batch})")
