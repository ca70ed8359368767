"""Training configuration: YAML files as data, ``--set key=value`` overrides, strict validation.

A config is a nested mapping (see ``configs/vimpnet_reference.yaml`` for every field
with comments). Packaged configs are addressed by name (``vimpnet_lite_synthetic``);
anything else is a path. Unknown keys are errors so a typo never trains silently
with a default. PyYAML is imported only to read files and overrides:
:func:`config_from_dict` builds a config from a plain dict on machines without it.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vimpnet_ros.config_files import read_extended
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.model.config import check_stage1_passes, check_stage2_prefill
from vimpnet_ros.training.losses import LossWeights

#: Folder of the packaged training configs.
CONFIG_PACKAGE = "vimpnet_ros.training.configs"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw")
DATA_TYPES = ("vrds", "synthetic", "online")
#: How DataLoader workers start. ``fork`` deadlocks when the main process has used OpenCV's thread
#: pool before (it does when it renders the validation set), so ``spawn`` is the default.
WORKER_STARTS = ("spawn", "forkserver", "fork")
#: Clean sources of rendered data (synthetic and online types).
CLEAN_SOURCES = ("road", "bundled")


@dataclass(frozen=True)
class DataSource:
    """Where clips come from: a VRDS-layout folder, synthetic videos rendered into a cache folder,
    or clips rendered on the fly.

    ``synthetic``: ``num_videos`` clips of ``num_frames`` frames at ``size`` (width,
    height) from the ``clean`` source (``road``: procedural road scenes of preset
    ``scene``; ``bundled``: the bundled photographs), rain drawn with ``seed`` and the
    renderer config ``rain_config`` (None = the packaged default, or a preset name such
    as ``heldout``, or a YAML path); rendered once into ``root`` (a VRDS-layout folder)
    and reused while its manifest matches.

    ``online``: no folder; DataLoader workers render item i (one clean clip of
    ``num_frames`` frames at ``size``, ``clips_per_item`` rainy training clips from it)
    from (``seed``, i) whenever it is drawn; ``num_videos`` is the number of distinct
    items (the epoch length); ``clear_fraction`` of the clips have no rain (targets =
    input), and ``clean: mixed`` mixes road scenes and photographs; ``footage`` (image
    folders, video files of rain-free driving) supplies the clean clip of a share
    ``footage_fraction`` of the items. See :mod:`vimpnet_ros.data.online`.
    """

    type: str = "vrds"
    root: str | None = None
    num_videos: int = 16
    num_frames: int = 20
    size: tuple[int, int] = (192, 128)
    seed: int = 0
    rain_config: str | None = None
    clean: str = "bundled"
    scene: str = "default"
    clips_per_item: int = 1
    clear_fraction: float = 0.0
    footage: tuple[str, ...] = ()
    footage_fraction: float = 0.0

    def __post_init__(self) -> None:
        """Check the combination early (before any rendering or training)."""
        if self.type not in DATA_TYPES:
            raise ConfigError(f"data type must be one of {DATA_TYPES}, got {self.type!r}")
        if self.root is None and self.type != "online":
            raise ConfigError(
                f"data source of type {self.type!r} needs 'root' (the VRDS folder, or the cache folder to render into)"
            )
        if self.num_videos < 1 or self.num_frames < 1 or self.clips_per_item < 1:
            raise ConfigError("synthetic data needs num_videos, num_frames and clips_per_item >= 1")
        if len(self.size) != 2 or min(self.size) < 16:
            raise ConfigError(f"synthetic size must be [width, height] >= 16, got {self.size}")
        clean_sources = CLEAN_SOURCES + (("mixed",) if self.type == "online" else ())
        if self.clean not in clean_sources:
            raise ConfigError(f"data clean source must be one of {clean_sources}, got {self.clean!r}")
        if self.clear_fraction and self.type != "online":
            raise ConfigError("data clear_fraction (rain-free clips) needs an online source")
        if (self.footage or self.footage_fraction) and self.type != "online":
            raise ConfigError(
                "data footage is read by online sources; render it into a VRDS folder for the others "
                "(vimpnet-ros render --source folder|video|bag --input PATH)"
            )


@dataclass(frozen=True)
class DataConfig:
    """Training and validation data plus the clip sampling of the reference (5 frames, 256 crops).

    ``num_workers`` DataLoader processes started with ``worker_start`` (see
    :data:`WORKER_STARTS`), each keeping ``prefetch_factor`` batches ready. ``start_fraction`` of the training
    clips become the windows of a stream's first frames (reflected, as the engine pads them;
    :func:`~vimpnet_ros.training.data.start_of_stream`).
    """

    train: DataSource = field(default_factory=DataSource)
    val: DataSource | None = None
    clip_length: int = 5
    crop_size: int = 256
    batch_size: int = 1
    num_workers: int = 2
    prefetch_factor: int = 2
    worker_start: str = "spawn"
    augment: bool = True
    val_max_videos: int = 4
    val_max_frames: int = 10
    start_fraction: float = 0.0

    def __post_init__(self) -> None:
        """Sizes the model can take: crops must be multiples of 4, clips at least 2 frames."""
        if not 0.0 <= self.start_fraction <= 1.0:
            raise ConfigError(f"data.start_fraction must be in [0, 1], got {self.start_fraction}")
        if self.clip_length < 2:
            raise ConfigError(f"clip_length must be >= 2 (the model aligns neighbours), got {self.clip_length}")
        if self.crop_size < 16 or self.crop_size % 4:
            raise ConfigError(f"crop_size must be a multiple of 4 and >= 16, got {self.crop_size}")
        if self.batch_size < 1 or self.num_workers < 0 or self.prefetch_factor < 1:
            raise ConfigError("batch_size and prefetch_factor must be >= 1, num_workers >= 0")
        if self.worker_start not in WORKER_STARTS:
            raise ConfigError(f"data.worker_start must be one of {WORKER_STARTS}, got {self.worker_start!r}")
        if self.train.type == "online" and self.batch_size % self.train.clips_per_item:
            raise ConfigError(
                f"data.batch_size ({self.batch_size}) must be a multiple of data.train.clips_per_item "
                f"({self.train.clips_per_item}): a batch holds whole rendered items"
            )


@dataclass(frozen=True)
class OptimConfig:
    """Adam/AdamW with SPyNet in its own parameter group (frozen, then at ``spynet_lr_mult`` x lr).

    ``trainable``: parameter-name prefixes (``change_gate``, ``drop_remover.blocks``) of the only parameters
    that train; every other one stays as initialised (no gradient, no optimizer state). Empty: all train.
    """

    type: str = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    spynet_lr_mult: float = 0.25
    spynet_freeze_iters: int = 5000
    grad_clip: float | None = None
    trainable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Reject values that cannot train."""
        if self.type not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.type!r}")
        if self.lr <= 0 or self.spynet_lr_mult < 0 or self.weight_decay < 0:
            raise ConfigError("lr must be > 0; spynet_lr_mult and weight_decay >= 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0 or null, got {self.grad_clip}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Cosine decay from the base lr to ``eta_min`` over ``total_iters`` after ``warmup_iters`` linear warm-up."""

    total_iters: int = 500_000
    eta_min: float = 1e-9
    warmup_iters: int = 0

    def __post_init__(self) -> None:
        """At least one step; warm-up shorter than the run."""
        if self.total_iters < 1 or not 0 <= self.warmup_iters < self.total_iters:
            raise ConfigError("schedule needs total_iters >= 1 and 0 <= warmup_iters < total_iters")


@dataclass(frozen=True)
class LogConfig:
    """Output folder and the cadence of logging, validation and checkpoints (in iterations)."""

    out_dir: str = "runs/vimpnet"
    log_every: int = 20
    val_every: int = 5000
    save_every: int = 5000
    save_every_seconds: float = 0.0
    keep_last: int = 2
    #: Also keep the weights (not the training state) of every checkpoint whose step is a multiple of this
    #: (0: none), so the weights of a long run can be averaged when shipped (``ship_weights --checkpoint ...``).
    keep_every: int = 0
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        """Cadences are positive; 0 for val/save means never (except the final save)."""
        if self.log_every < 1 or self.val_every < 0 or self.save_every < 0 or self.keep_last < 1 or self.keep_every < 0:
            raise ConfigError("log_every >= 1, keep_last >= 1, val_every, save_every and keep_every >= 0 (0 = off)")
        if self.save_every_seconds < 0:
            raise ConfigError("save_every_seconds must be >= 0 (0 = off)")


@dataclass(frozen=True)
class TrainConfig:
    """The whole training run.

    ``zero_flow_init``: when training from scratch (no ``init_from``), zero SPyNet's
    output convs so flows start at exactly 0 (identity alignment) instead of the
    random flows of an untrained SPyNet; no pretrained SPyNet is available offline.
    ``cpu_threads``: torch intra-op threads on CPU (1 is fastest on a busy 2-core machine).
    ``compile``: run the model through ``torch.compile`` (forward and backward; the
    first steps pay the compile time). ``channels_last``: run every convolution with NHWC
    weights (``arch_util.use_channels_last``; faster on recent GPUs and on CPUs).
    ``stage1_passes``: train the model with stage 1 run that many times, unrolled (the losses see the
    last pass's frames; :class:`~vimpnet_ros.model.VimpNet`), so later passes learn to finish what the
    first leaves. ``stage2_prefill``: train with the drops filled that much before stage 2
    (:meth:`~vimpnet_ros.model.VimpNet.prefill_drops`); null: the model's own rule. Saved weights load as the same
    network: the rule they ship with is the registered model's.
    """

    name: str = "vimpnet"
    seed: int = 0
    model: str = "vimpnet"
    stage1_passes: int = 1
    stage2_prefill: float | None = None
    init_from: str | None = None
    zero_flow_init: bool = True
    device: str = "auto"
    precision: str = "auto"
    cpu_threads: int | None = None
    compile: bool = False
    channels_last: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        """Precision names are a closed set."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"cpu_threads must be >= 1 or null (= torch's default), got {self.cpu_threads}")
        check_stage1_passes(self.stage1_passes)
        if self.stage2_prefill is not None:
            check_stage2_prefill(self.stage2_prefill)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), written next to the checkpoints for provenance."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples -> lists recursively, so YAML/JSON dumps stay readable."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, recursively and strictly (unknown keys are errors)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section {where or 'root'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[f'{where}{k}' for k in unknown]}; known in this section: {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for name, raw in data.items():
        hint = hints[name]
        target = _dataclass_in(hint)
        if target is not None and raw is not None:
            values[name] = _build(target, raw, f"{where}{name}.")
        else:
            values[name] = _coerce(hint, raw, f"{where}{name}")
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"bad config section {where or 'root'}: {error}") from error


def _coerce(hint: Any, raw: Any, key: str) -> Any:
    """Convert a YAML scalar/list to the field's type (YAML reads ``1e-4`` as a string, for example)."""
    args = typing.get_args(hint)
    if raw is None:
        if type(None) in args or hint is Any:
            return None
        raise ConfigError(f"config key {key} must not be null")
    if type(None) in args:
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    try:
        if hint is float:
            return float(raw)
        if hint is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(f"{raw} is not an integer")
            return int(raw)
        if hint is bool:
            if not isinstance(raw, bool):
                raise ValueError(f"{raw!r} is not true/false")
            return raw
        if hint is str:
            return str(raw)
        if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
            if not isinstance(raw, (list, tuple)):
                raise ValueError(f"expected a list, got {raw!r}")
            return tuple(_coerce(args[0], v, key) for v in raw)
        if typing.get_origin(hint) is tuple:
            if not isinstance(raw, (list, tuple)) or len(raw) != len(args):
                raise ValueError(f"expected a list of {len(args)} values, got {raw!r}")
            return tuple(_coerce(a, v, key) for a, v in zip(args, raw, strict=True))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config key {key}: {error}") from error
    return raw


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type inside ``hint`` (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def packaged_configs() -> list[str]:
    """Names of the training configs shipped in the package."""
    folder = resources.files(CONFIG_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A packaged config name (``vimpnet_lite_synthetic``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = resources.files(CONFIG_PACKAGE) / f"{name_or_path}.yaml"
    if candidate.is_file():
        return Path(str(candidate))
    raise ConfigError(
        f"training config {str(name_or_path)!r} is neither a file nor a packaged config {packaged_configs()}"
    )


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML: ``3``, ``1e-4``, ``null``, ``[64, 64]``)."""
    result = copy.deepcopy(data)
    if overrides:
        import yaml
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({error})") from error
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def load_train_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML training config, apply overrides and validate it.

    Relative ``root``/``out_dir``/``init_from`` paths stay relative to the working directory
    (where the command runs), as users expect from a command line.
    """
    return config_from_dict(apply_overrides(read_config_data(name_or_path), overrides))


def read_config_data(name_or_path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file says, with ``extends: BASE`` resolved (:mod:`vimpnet_ros.config_files`).

    ``BASE`` is a packaged config name or a path; the file then lists only what differs.
    """
    return read_extended(name_or_path, resolve_config_path, "training config")


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Validate a nested mapping into a :class:`TrainConfig`."""
    return _build(TrainConfig, data, "")
