"""Model checkpoints for training: write our format, initialise from ours or the reference's.

Thin layer over ``vimpnet_ros.model.checkpoint`` (the one place that knows the file
format) so the trainer, the evaluation CLI and the weight-shipping script share one
way to save and load weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn
from torch.optim.swa_utils import AveragedModel

from vimpnet_ros.errors import CheckpointError


def save_model(path: str | Path, model: nn.Module, half: bool = False) -> Path:
    """Write ``model``'s weights and config in our checkpoint format (atomic; ``half``: fp16 tensors, half size)."""
    from vimpnet_ros.model import checkpoint

    path = Path(path)
    if half:
        model = copy.deepcopy(model).half()
    checkpoint.save_checkpoint(path, model, model.config)
    return path


#: ``init_from: shipped:NAME`` starts from the weights shipped with the package for model config NAME.
SHIPPED_PREFIX = "shipped:"
#: ``init_from: kept:CONFIG`` starts from the newest weights of training config CONFIG kept in the
#: repository (``training_state/CONFIG.pth``, written by ``tools/keep_training_state.sh``): a recipe that
#: continues another run names that run's weights so a new machine starts where the run left off.
KEPT_PREFIX = "kept:"
#: Where ``tools/keep_training_state.sh`` keeps a run's newest weights: the clone's ``training_state/``.
KEPT_STATE_DIR = Path(__file__).resolve().parents[2] / "training_state"


def resolve_init(init_from: str) -> Path:
    """The checkpoint path of an ``init_from`` value: a path, ``shipped:NAME`` or ``kept:CONFIG``.

    ``kept:CONFIG`` exists only in a clone of the repository (an installed package has no
    ``training_state/``); its absence is a CheckpointError naming the file it looked for.
    """
    if init_from.startswith(SHIPPED_PREFIX):
        from vimpnet_ros.model.checkpoint import shipped_checkpoint

        return shipped_checkpoint(init_from[len(SHIPPED_PREFIX) :])
    if init_from.startswith(KEPT_PREFIX):
        path = KEPT_STATE_DIR / f"{init_from[len(KEPT_PREFIX) :]}.pth"
        if not path.is_file():
            raise CheckpointError(
                f"init_from {init_from!r}: no kept weights at {path} (training_state/ exists only in a clone "
                "of the repository; tools/keep_training_state.sh writes it)"
            )
        return path
    return Path(init_from)


def load_weights_into(model: nn.Module, path: str | Path) -> str:
    """Load weights from our checkpoint, a reference MMEditing checkpoint or a bare state dict.

    Fine-tuning may start from a checkpoint of another config (e.g. the full model's
    SPyNet into the lite model): tensors whose name and shape match are loaded, the
    rest keep their initialisation. Returns a one-line report of what was loaded;
    raises CheckpointError when nothing matches.
    """
    from vimpnet_ros.model import checkpoint

    _, state = checkpoint.load_checkpoint(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise CheckpointError(
            f"no tensor of {path} fits model {getattr(model, 'config', None)}; is it a ViMP-Net checkpoint?"
        )
    shape_mismatch = sorted(k for k in state if k in own and k not in matched)
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in matched)
    model.load_state_dict(matched, strict=False)
    return (
        f"loaded {len(matched)}/{len(own)} tensors; {len(missing)} kept their initialisation, "
        f"{len(shape_mismatch)} skipped for shape, {len(unexpected)} unexpected"
    )


def keep_weights(source: str | Path, target: str | Path) -> Path:
    """Write ``source``'s weights to ``target`` in fp16, for ``training_state/`` (atomic).

    A run's newest weights travel with the repository so a new machine continues from them
    (``tools/keep_training_state.sh``); stored as the shipped weights are, in half precision,
    each copy is half the size. The file is our checkpoint format and loads into fp32 as any other.
    """
    from vimpnet_ros.model.checkpoint import load_model

    return save_model(target, load_model(source), half=True)


def average_models(paths: Sequence[str | Path], config_name: str | None = None) -> nn.Module:
    """The uniform average of the weights of several checkpoints of one model (eval mode, CPU, float32).

    Checkpoints of one run a few hundred steps apart sit around the same minimum; their mean
    lies nearer its centre than any one of them (stochastic weight averaging, Izmailov et al.
    2018, eq. 2: ``w = (1/n) sum_i w_i``). Each file is loaded and checked as ``load_model`` does;
    checkpoints of different model configs are a CheckpointError. The averaging itself is
    PyTorch's :class:`~torch.optim.swa_utils.AveragedModel` (buffers included).
    """
    from vimpnet_ros.model.checkpoint import load_model

    if not paths:
        raise CheckpointError("no checkpoint to average")
    first = load_model(paths[0], config_name)
    averaged = AveragedModel(first, use_buffers=True)
    averaged.update_parameters(first)  # the first update copies, each later one folds into the running mean
    for path in paths[1:]:
        model = load_model(path, config_name)
        if model.config != first.config:
            raise CheckpointError(f"cannot average {path} ({model.config.name}) with {paths[0]} ({first.config.name})")
        averaged.update_parameters(model)
    return averaged.module.eval()


def graft_modules(model: nn.Module, sources: Mapping[str, str | Path], config_name: str | None = None) -> nn.Module:
    """``model`` with the weights of each named top-level module taken from another checkpoint, in place.

    ``sources`` maps a module of the network (``drop_remover``: stage 2; ``drop_head``: the raindrop mask head;
    any name of ``model.named_children()``) to the checkpoint whose weights it takes; every other weight stays
    ``model``'s. A run that trains two modules together can improve one and lose on the other; grafting takes each
    from where it is best (docs/training.md, "Stage 2 grafted from the long run").
    Each file is loaded and checked as ``load_model`` does; an unknown module name or a checkpoint of another
    model config is a CheckpointError, before any weight changes.
    """
    from vimpnet_ros.model.checkpoint import load_model

    children = dict(model.named_children())
    unknown = sorted(set(sources) - set(children))
    if unknown:
        raise CheckpointError(f"no module {unknown} in {model.config.name} (its modules: {sorted(children)})")
    donors = {name: load_model(path, config_name) for name, path in sources.items()}
    for name, donor in donors.items():
        if donor.config != model.config:
            raise CheckpointError(
                f"cannot take {name} from {sources[name]} ({donor.config.name}) into {model.config.name}"
            )
    for name, donor in donors.items():
        children[name].load_state_dict(dict(donor.named_children())[name].state_dict())
    return model
