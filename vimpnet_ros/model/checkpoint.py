"""Checkpoint I/O: the published MMEditing format, bare state dicts and our own format.

Our format is a dict ``{format_version, config, sha256, state_dict}``: the config
rebuilds the model without guessing, the content hash catches corrupted copies.
Foreign names (the published checkpoint's ``S_mask_streak``,
``Dual_Raindrop_gnostic_Transformer.downdrop1`` ..., also used by our format 1) are
mapped to this package's module names at this boundary by :func:`checkpoint_filter_fn`,
as timm's checkpoint filters do, so the module tree and the engine use names that
explain themselves.
Everything is read with ``torch.load(..., weights_only=True)``, so a file cannot
run code while loading. Loading is strict: a mismatch raises :class:`CheckpointError`
naming the missing, unexpected and wrongly shaped tensors.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vimpnet_ros.errors import CheckpointError, ConfigError
from vimpnet_ros.model.config import CONFIGS, VimpNetConfig, get_config

#: Format 2 stores this package's module names; format 1 stored the reference's (mapped when read).
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
#: Prefix of generator tensors in MMEditing checkpoints.
MMEDIT_PREFIX = "generator."
#: Folder of the weights shipped inside the package: ``vimpnet_ros/weights/<config name>.pth``.
SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_LIST_LIMIT = 5
#: Larger files are refused before reading: the published checkpoint with optimizer state is ~0.45 GB.
MAX_CHECKPOINT_BYTES = 4 * 2**30
#: How every file ``torch.save`` writes begins: a zip archive (torch >= 1.6) or a pickle (older torch).
_TORCH_FILE_MAGIC = (b"PK\x03\x04", b"\x80")


#: Prefix renames from the reference's checkpoint names to ours (first match wins; transformer sets below).
REFERENCE_RENAMES: tuple[tuple[str, str], ...] = (
    ("S_mask_streak.", "streak_head."),
    ("S_mask_drop.", "drop_head."),
    ("Dual_Raindrop_gnostic_Transformer.downdrop1.", "drop_remover.rainy_encoder."),
    ("Dual_Raindrop_gnostic_Transformer.downdropbg.", "drop_remover.guided_encoder."),
    ("Dual_Raindrop_gnostic_Transformer.downdrop2.", "drop_remover.background_encoder."),
    ("Dual_Raindrop_gnostic_Transformer.ss.", "drop_remover.soft_split."),
    ("Dual_Raindrop_gnostic_Transformer.sc.", "drop_remover.soft_comp."),
    ("Dual_Raindrop_gnostic_Transformer.TokenLearner.", "drop_remover.token_learner."),
    ("Dual_Raindrop_gnostic_Transformer.Fusion_Transformer.", "drop_remover.fusion."),
    ("Dual_Raindrop_gnostic_Transformer.", "drop_remover."),
)
#: The reference's dual-transformer weight sets ``transformer``, ``transformer1``, ... -> ``blocks.0``, ``blocks.1``.
_REFERENCE_BLOCK = re.compile(r"^Dual_Raindrop_gnostic_Transformer\.transformer(\d*)\.")


def reference_name_to_ours(name: str) -> str:
    """One tensor name of the published checkpoint (without ``generator.``) -> this package's name."""
    block = _REFERENCE_BLOCK.match(name)
    if block:
        return f"drop_remover.blocks.{int(block.group(1) or 0)}.{name[block.end() :]}"
    for old, new in REFERENCE_RENAMES:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def checkpoint_filter_fn(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map a state dict with the reference's names to ours; names that are already ours pass unchanged."""
    return {reference_name_to_ours(str(name)): tensor for name, tensor in state.items()}


def _is_tensor_dict(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, Tensor) for v in value.values())


def convert_state_dict(raw: object) -> tuple[dict[str, Tensor], VimpNetConfig | None]:
    """Map a loaded checkpoint object to our tensor names; returns (state_dict, stored config or None).

    Accepts (a) MMEditing ``{"state_dict": {"generator.*": ...}, "meta": ..., ...}`` (other
    top-level keys such as ``optimizer`` or ``step_counter`` and non-generator tensors such
    as a discriminator are ignored), (b) a bare state dict, with or without the
    ``generator.`` prefix, (c) our format.
    """
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(raw).__name__}, expected a dict of tensors")
    if "format_version" in raw:
        return _convert_ours(raw)
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        tensors = raw["state_dict"]
    elif "params" in raw and isinstance(raw["params"], Mapping):  # BasicSR-style wrapper
        tensors = raw["params"]
    else:
        tensors = raw
    if not _is_tensor_dict(tensors):
        keys = sorted(str(k) for k in raw)[:10]
        raise CheckpointError(
            f"checkpoint is not a ViMP-Net state dict: top-level keys {keys}; expected an MMEditing file "
            "('state_dict' with 'generator.*' tensors), a bare state dict or a vimpnet_ros checkpoint"
        )
    if any(str(k).startswith(MMEDIT_PREFIX) for k in tensors):
        tensors = {k[len(MMEDIT_PREFIX) :]: v for k, v in tensors.items() if str(k).startswith(MMEDIT_PREFIX)}
    return checkpoint_filter_fn(tensors), None


def _convert_ours(raw: Mapping[str, Any]) -> tuple[dict[str, Tensor], VimpNetConfig]:
    version = raw.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        raise CheckpointError(
            f"checkpoint format version {version!r} is not supported by this vimpnet_ros "
            f"(it reads versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}); upgrade vimpnet_ros or re-export "
            "the checkpoint"
        )
    state = raw.get("state_dict")
    if not _is_tensor_dict(state):
        raise CheckpointError("vimpnet_ros checkpoint has no 'state_dict' of tensors")
    try:
        config = VimpNetConfig.from_dict(dict(raw.get("config") or {}))
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"vimpnet_ros checkpoint stores an invalid config: {error}") from None
    digest = state_dict_sha256(state)
    if digest != raw.get("sha256"):
        raise CheckpointError(
            f"checkpoint content hash {digest[:12]}... does not match the stored {str(raw.get('sha256'))[:12]}...: "
            "the file is corrupted or was edited; re-copy or re-export it"
        )
    return checkpoint_filter_fn(state), config


def state_dict_sha256(state: Mapping[str, Tensor]) -> str:
    """SHA-256 over sorted names, each followed by its dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _summarise(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    more = f", ... ({len(names) - _LIST_LIMIT} more)" if len(names) > _LIST_LIMIT else ""
    return f"{len(names)} {kind} ({shown}{more})"


def check_compatible(expected: Mapping[str, Tensor | torch.Size], state: Mapping[str, Tensor], what: str) -> None:
    """Raise CheckpointError naming missing, unexpected and wrongly shaped tensors (first few + counts)."""
    shapes = {k: tuple(v.shape) if isinstance(v, Tensor) else tuple(v) for k, v in expected.items()}
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {shapes[k]}"
        for k in shapes
        if k in state and tuple(state[k].shape) != shapes[k]
    ]
    if missing or unexpected or wrong:
        parts = [
            _summarise(kind, names)
            for kind, names in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong))
            if names
        ]
        raise CheckpointError(
            f"{what} does not fit the model: " + "; ".join(parts) + ". Check that --model names the config the "
            "checkpoint was trained with"
        )


def expected_shapes(config: VimpNetConfig) -> dict[str, torch.Size]:
    """Names and shapes of a config's state dict, without allocating weights (meta device)."""
    from vimpnet_ros.model.vimpnet_arch import VimpNet

    with torch.device("meta"):
        model = VimpNet(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def infer_config(state: Mapping[str, Tensor]) -> VimpNetConfig | None:
    """The registered config whose names and shapes the state dict matches exactly, if any."""
    for config in CONFIGS.values():
        shapes = expected_shapes(config)
        if set(shapes) == set(state) and all(tuple(state[k].shape) == tuple(s) for k, s in shapes.items()):
            return config
    return None


def read_checkpoint_file(path: str | os.PathLike[str]) -> object:
    """``torch.load(weights_only=True)`` with the failure modes turned into CheckpointError."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; give the path of the .pth file inside it")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file (a device or a pipe?); give a .pth file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted download or copy; copy it again")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"checkpoint {path} is {size / 2**30:.1f} GiB, more than any ViMP-Net checkpoint "
            f"({MAX_CHECKPOINT_BYTES / 2**30:.0f} GiB at most, optimizer state included); refusing to load it"
        )
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head.startswith(_TORCH_FILE_MAGIC):
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch checkpoint (torch.save writes a zip archive or a pickle; this file "
            f"starts with {head!r}); give the .pth file, not a log, config or JSON file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path} was refused by the safe loader (weights_only=True): it contains Python objects "
            f"other than tensors and plain containers, which could run code. Only load files from sources you "
            f"trust, re-saved as a plain state dict. Detail: {str(error).splitlines()[0]}"
        ) from None
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "the file is truncated or not a PyTorch checkpoint, download or copy it again"
        ) from None


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[VimpNetConfig | None, dict[str, Tensor]]:
    """Read a checkpoint in any supported format -> (config, state_dict with our names).

    The config is the stored one for our format; for foreign formats it is the
    registered config whose shapes the tensors match, or None.
    """
    state, config = convert_state_dict(read_checkpoint_file(path))
    if config is None:
        config = infer_config(state)
    return config, state


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, config: VimpNetConfig) -> str:
    """Write our format (config, version, content hash, weights); returns the content hash."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = state_dict_sha256(state)
    payload = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "sha256": digest, "state_dict": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return digest


def load_state_dict_strict(model: nn.Module, state: Mapping[str, Tensor], what: str = "checkpoint") -> None:
    """Copy ``state`` (reference or our names) into ``model`` after the strict name/shape check (clear errors)."""
    state = checkpoint_filter_fn(state)
    check_compatible(model.state_dict(), state, what)
    model.load_state_dict(state, strict=True)


def shipped_checkpoint(config_name: str) -> Path:
    """Where the package's own weights for ``config_name`` would be."""
    return SHIPPED_WEIGHTS_DIR / f"{config_name}.pth"


def shipped_record(config_name: str) -> Path:
    """Where the record (provenance, scores, limits; written by ``ship_weights``) of those weights would be."""
    return SHIPPED_WEIGHTS_DIR / f"{config_name}.json"


def shipped_max_window(config_name: str) -> int | None:
    """The largest window the package's weights for ``config_name`` may run with (``max_window`` in their
    :func:`shipped_record`); None when no record or no limit ships."""
    import json

    record = shipped_record(config_name)
    if not record.is_file():
        return None
    try:
        limit = json.loads(record.read_text(encoding="utf-8")).get("max_window")
    except (OSError, ValueError) as error:
        message = f"cannot read the record of the shipped {config_name!r} weights, {record}: {error}"
        raise CheckpointError(message) from error
    return int(limit) if limit is not None else None


def build_model(config: str | VimpNetConfig) -> nn.Module:
    """A randomly initialised generator (training from scratch, tests, benchmarks), in eval mode."""
    from vimpnet_ros.model.vimpnet_arch import VimpNet

    config = get_config(config) if isinstance(config, str) else config
    return VimpNet(config).eval()


def load_model(checkpoint: str | os.PathLike[str] | None, config_name: str | None = None) -> nn.Module:
    """Build the generator and load weights strictly; eval mode, CPU, float32.

    ``checkpoint`` None means the weights shipped with the package for ``config_name``.
    The config comes from our checkpoint format, else ``config_name``, else is inferred
    from the tensor shapes. A checkpoint whose stored config differs from an explicit
    ``config_name`` is an error, so a wrong ``--model`` does not go unnoticed.
    """
    from vimpnet_ros.model.vimpnet_arch import VimpNet

    if checkpoint is None:
        if config_name is None:
            raise CheckpointError("no checkpoint given and no model config named to pick the shipped weights")
        get_config(config_name)
        checkpoint = shipped_checkpoint(config_name)
        if not checkpoint.is_file():
            raise CheckpointError(
                f"no weights for {config_name!r} ship with this install (looked for {checkpoint}); pass a checkpoint "
                "path (the published ViMP-Net .pth for 'vimpnet', or one trained with vimpnet-ros train)"
            )
    stored, state = load_checkpoint(checkpoint)
    if config_name is not None:
        wanted = get_config(config_name)
        if stored is not None and not stored.same_network(wanted):
            renamed = next((c.name for c in CONFIGS.values() if stored.same_network(c)), None)
            hint = f"; its sizes are those of {renamed!r}: use model {renamed!r}" if renamed else ""
            raise CheckpointError(
                f"checkpoint {checkpoint} holds a {stored.name!r} model whose sizes differ from {config_name!r} in "
                f"this version{hint}, or load it with its stored config (config_name=None)"
            )
        config = wanted  # a bare file, or a stored config with the same sizes (under this or an older name)
    elif stored is not None:
        config = stored
    else:
        raise CheckpointError(
            f"checkpoint {checkpoint} matches no registered config ({sorted(CONFIGS)}); name the config explicitly"
        )
    model = VimpNet(config)
    load_state_dict_strict(model, state, f"checkpoint {checkpoint}")
    return model.eval()
