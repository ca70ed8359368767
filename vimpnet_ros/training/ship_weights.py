"""Package trained weights as the package default and measure them on held-out synthetic rain.

    python -m vimpnet_ros.training.ship_weights --checkpoint runs/gated_drops/final.pth \
        --config vimpnet_lite_gated --config vimpnet_lite_gated_drops

1. Loads the checkpoint (several ``--checkpoint``: the uniform average of their weights, see
   :func:`~vimpnet_ros.training.checkpoints.average_models`; ``--module-from drop_remover=CKPT``: one module's
   weights from another checkpoint, :func:`~vimpnet_ros.training.checkpoints.graft_modules`), writes it in our format to
   ``vimpnet_ros/weights/<model>.pth`` (fp16 tensors by default: half the size; the engine loads them into fp32).
2. Renders the held-out test set (:func:`heldout_source`): procedural road scenes
   of the ``heldout`` preset with the shifted ``heldout`` rain ranges and seed 1000,
   which no training config uses (``--held-out-clean bundled --held-out-rain default``
   renders the set of earlier releases instead).
3. Evaluates the *shipped file* (not the in-memory model) as the reference tests:
   5-frame clips, temporal stride 1, RGB PSNR/SSIM on uint8, per video then mean;
   plus drop-mask IoU (threshold 0.5) against the rendered masks; and the same sets
   streamed, each frame as the node restores it, with the default window (``test_sets_streamed``) and
   the largest the engine accepts (``test_sets_streamed_widest``).
4. Writes ``vimpnet_ros/weights/<model>.json``: provenance, the measured scores, ``max_window``
   (``--max-window``), the largest window the engine lets these weights run with, and the model config's
   rules on the weights they were measured with (:data:`~vimpnet_ros.model.config.RECORDED_RULES`:
   ``stage1_presence``, ``propagation_bound``, ``working_pixels``, ``stage2_prefill``, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vimpnet_ros.engine import MAX_WINDOW, MIN_WINDOW, EngineConfig
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.model.checkpoint import SHIPPED_WEIGHTS_DIR
from vimpnet_ros.model.config import RECORDED_RULES
from vimpnet_ros.training.checkpoints import average_models, graft_modules, save_model

if TYPE_CHECKING:
    from vimpnet_ros.training.config import TrainConfig

WEIGHTS_DIR = SHIPPED_WEIGHTS_DIR  # where the engine looks for the package's weights
HELD_OUT_SEED = 1000
#: The held-out test set: 8 road videos of 12 frames at 192x128, held-out scene and rain presets.
HELD_OUT_VIDEOS, HELD_OUT_FRAMES, HELD_OUT_SIZE = 8, 12, (192, 128)


@dataclass(frozen=True)
class QualitySet:
    """A named test set no training run sees: road scenes of the ``heldout`` style with the ``rain`` preset.

    ``no_rain`` sets are scored by how little the model changes its input (``output_vs_input``), rain sets by
    the PSNR gain against the clean frames, inside and outside the drops, and the drop mask's IoU.
    """

    name: str
    description: str
    rain: str
    seed: int
    no_rain: bool = False


#: The test sets of the model card and the floor test, each rendered with a seed no training config uses.
QUALITY_SETS: dict[str, QualitySet] = {
    "heldout": QualitySet("heldout", "heavy rain, shifted ranges (rain_heldout.yaml)", "heldout", HELD_OUT_SEED),
    "light": QualitySet("light", "light rain, mostly streak-free (rain_light.yaml)", "light", 1001),
    "clean": QualitySet("clean", "no rain: camera noise and JPEG only (rain_none.yaml)", "none", 1002, no_rain=True),
}


def quality_set(name: str) -> QualitySet:
    """The registered quality set ``name``; a ConfigError lists the valid names."""
    try:
        return QUALITY_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown quality set {name!r}; choose one of {sorted(QUALITY_SETS)}") from None


def heldout_source(
    root: str | Path,
    videos: int = HELD_OUT_VIDEOS,
    frames: int = HELD_OUT_FRAMES,
    size: tuple[int, int] = HELD_OUT_SIZE,
    seed: int = HELD_OUT_SEED,
    clean: str = "road",
    rain: str | None = "heldout",
) -> Any:
    """The :class:`~vimpnet_ros.training.config.DataSource` of a held-out test set (rendered into ``root``).

    Road scenes use the ``heldout`` scene preset (more dusk and night, wider lenses,
    denser traffic) and ``rain`` the shifted ``heldout`` rain ranges by default; the seed is
    one no training config uses, so scores on it measure generalisation.
    """
    from vimpnet_ros.training.config import DataSource

    return DataSource(
        type="synthetic",
        root=str(root),
        num_videos=videos,
        num_frames=frames,
        size=size,
        seed=seed,
        clean=clean,
        scene="heldout" if clean == "road" else "default",
        rain_config=rain,
    )


def quality_set_source(
    name: str, root: str | Path, videos: int = HELD_OUT_VIDEOS, frames: int = HELD_OUT_FRAMES
) -> Any:
    """The DataSource of test set ``name`` (see :data:`QUALITY_SETS`), rendered into ``root``."""
    spec = quality_set(name)
    return heldout_source(root, videos, frames, seed=spec.seed, rain=spec.rain)


def render_held_out(
    root: Path,
    videos: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    clean: str = "road",
    rain: str | None = "heldout",
) -> Path:
    """Render (or reuse) the held-out videos with all five streams into ``root``."""
    from vimpnet_ros.training.data import prepare_source

    return prepare_source(heldout_source(root, videos, frames, size, seed, clean, rain))


def set_summary(spec: QualitySet, scores: dict[str, Any]) -> dict[str, Any]:
    """The model card's figures of one test set from an evaluate result dict."""
    summary: dict[str, Any] = {"description": spec.description, "seed": spec.seed}
    summary["output_vs_input_psnr"] = scores["output_vs_input"]["psnr"]
    if not spec.no_rain:
        summary["psnr_input"] = scores["rainy_input"]["psnr"]
        summary["psnr_restored"] = scores["restored"]["psnr"]
        for key in ("psnr", "psnr_in_mask", "psnr_outside_mask"):
            summary[f"gain_{key}"] = scores["gain"].get(key)
        summary["drop_mask_iou"] = scores["drop_mask_iou"]
        worse = scores.get("frames_worse") or {}  # results written before it was counted have none
        summary["frames_worse"] = worse.get("count")
        summary["worst_psnr_gain"] = worse.get("worst_psnr_gain")
    return summary


def measure(
    checkpoint: Path,
    model_name: str,
    data: Path,
    stride: int = 1,
    max_videos: int | None = None,
    streamed: EngineConfig | None = None,
) -> dict[str, Any]:
    """Scores of a checkpoint file on a VRDS folder: restored, rainy input, gain, drop-mask IoU.

    The reference test (5-frame clips averaged), or ``streamed``: each frame as a node with these engine
    settings restores it (the ``output_frame`` of a ``window_size`` window).
    """
    from vimpnet_ros.evaluation.vrds_eval import evaluate_vrds
    from vimpnet_ros.model.checkpoint import load_model

    model = load_model(checkpoint, model_name)
    if streamed is not None:
        return evaluate_vrds(
            model, data, clip_length=streamed.window_size, output_frame=streamed.output_frame, max_videos=max_videos
        ).to_dict()
    return evaluate_vrds(model, data, clip_length=5, stride=stride, max_videos=max_videos).to_dict()


def trained_window(configs: Sequence[TrainConfig]) -> int:
    """The largest window weights trained with ``configs`` are trusted with: their longest clip, as an odd window
    the engine accepts (a recurrent propagation trained on 5-frame clips drifts on longer ones)."""
    longest = max(config.data.clip_length for config in configs)
    odd = longest if longest % 2 else longest - 1
    return max(MIN_WINDOW, min(MAX_WINDOW, odd))


def file_record(path: Path) -> dict[str, str]:
    """A weights file as the record names it (the shipped file, each it came from): its file name and SHA-256."""
    return {"file": path.name, "sha256_file": hashlib.sha256(path.read_bytes()).hexdigest()}


def module_source(value: str) -> tuple[str, Path]:
    """``--module-from MODULE=CHECKPOINT`` -> (module, path)."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected MODULE=CHECKPOINT, got {value!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    """Ship a checkpoint and write its provenance and held-out scores."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        action="append",
        help="trained checkpoint (e.g. <run>/final.pth); repeated: ship the uniform average of their weights",
    )
    parser.add_argument(
        "--module-from",
        action="append",
        default=[],
        type=module_source,
        metavar="MODULE=CHECKPOINT",
        help="take this top-level module's weights (drop_remover: stage 2; drop_head: the mask head) from another "
        "checkpoint instead, after averaging; repeated for several modules",
    )
    parser.add_argument("--model", default=EngineConfig().model)
    parser.add_argument(
        "--config",
        action="append",
        help="the training config(s) it came from, in order (default: the packaged recipe named like --model)",
    )
    parser.add_argument("--command", action="append", help="the exact training command(s), in order (for the record)")
    parser.add_argument("--steps", type=int, help="training steps done (for the record)")
    parser.add_argument("--train-seconds", type=float, help="wall time of the training (for the record)")
    parser.add_argument(
        "--max-window",
        type=int,
        help="the largest window_size the weights restore well with, which a node on the shipped file enforces "
        "(default: the longest training clip of the --config(s), as an odd window; check it against "
        "test_sets_streamed_widest in the record)",
    )
    parser.add_argument("--fp32", action="store_true", help="store fp32 tensors (default: fp16, half the size)")
    parser.add_argument("--held-out", type=Path, default=Path("data/heldout_road_seed1000"))
    parser.add_argument("--held-out-videos", type=int, default=HELD_OUT_VIDEOS)
    parser.add_argument("--held-out-frames", type=int, default=HELD_OUT_FRAMES)
    parser.add_argument("--held-out-size", type=int, nargs=2, default=list(HELD_OUT_SIZE), metavar=("W", "H"))
    parser.add_argument("--held-out-clean", default="road", choices=["road", "bundled"])
    parser.add_argument("--held-out-rain", default="heldout", help="rain preset or YAML of the held-out set")
    parser.add_argument("--machine", help="what trained the weights (for the record; default: this machine)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--output-dir", type=Path, default=WEIGHTS_DIR)
    arguments = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(arguments)

    from vimpnet_ros.training.config import load_train_config

    config_names = args.config or [args.model]
    train_configs = [load_train_config(name) for name in config_names]
    used_seeds = {c.data.train.seed for c in train_configs} | {c.data.val.seed for c in train_configs if c.data.val}
    clash = used_seeds & {args.seed, *(spec.seed for spec in QUALITY_SETS.values())}
    if clash:
        print(f"test-set seed(s) {sorted(clash)} were used by {config_names}; pick others", file=sys.stderr)
        return 2
    max_window = trained_window(train_configs) if args.max_window is None else args.max_window
    EngineConfig(window_size=max_window)  # a window the engine accepts, or a ConfigError naming the range
    model = graft_modules(average_models(args.checkpoint, args.model), dict(args.module_from), args.model)
    target = args.output_dir / f"{args.model}.pth"
    save_model(target, model, half=not args.fp32)
    started = time.perf_counter()
    size = (int(args.held_out_size[0]), int(args.held_out_size[1]))
    data = render_held_out(
        args.held_out, args.held_out_videos, args.held_out_frames, size, args.seed, args.held_out_clean,
        args.held_out_rain,
    )  # fmt: skip
    scores = measure(target, args.model, data)
    folders = {"heldout": data}
    for name in ("light", "clean"):
        spec = QUALITY_SETS[name]
        folder = args.held_out.parent / f"{args.held_out.name}_{name}_seed{spec.seed}"
        folders[name] = render_held_out(
            folder, args.held_out_videos, args.held_out_frames, size, spec.seed, rain=spec.rain
        )
    sets = {
        name: set_summary(QUALITY_SETS[name], scores if name == "heldout" else measure(target, args.model, folder))
        for name, folder in folders.items()
    }
    engine = EngineConfig()  # the node's defaults: what the streamed scores restore with
    widest = engine.replace(window_size=MAX_WINDOW)  # the largest window a node accepts

    def streamed_sets(config: EngineConfig) -> dict[str, Any]:
        scores = {
            name: set_summary(QUALITY_SETS[name], measure(target, args.model, folder, streamed=config))
            for name, folder in folders.items()
        }
        return {"window_size": config.window_size, "output_frame": config.output_frame, **scores}

    record = {
        "model": args.model,
        **file_record(target),
        "size_bytes": target.stat().st_size,
        "tensor_dtype": "float32" if args.fp32 else "float16",
        "max_window": max_window,
        # The rules on the weights the figures below were measured with (the model's config).
        **{rule: value for rule, value in model.config.to_dict().items() if rule in RECORDED_RULES},
        "training": {
            "commands": args.command or [f"vimpnet-ros train --config {name}" for name in config_names],
            "configs": [f"vimpnet_ros/training/configs/{name}.yaml" for name in config_names],
            "seeds": [c.seed for c in train_configs],
            "data_seeds": sorted(used_seeds),
            "steps": args.steps,
            "wall_seconds": args.train_seconds,
            "machine": args.machine or f"{platform.machine()} CPU, torch {torch.__version__}",
            "ship_command": shlex.join(["python", "-m", "vimpnet_ros.training.ship_weights", *arguments]),
            "averaged_from": [file_record(path) for path in args.checkpoint],
            "modules_from": [{"module": name, **file_record(path)} for name, path in args.module_from],
        },
        "held_out": {
            "seed": args.seed,
            "videos": args.held_out_videos,
            "frames_per_video": args.held_out_frames,
            "size": list(args.held_out_size),
            "source": f"{args.held_out_clean} clean clips (scene preset heldout for road), rain {args.held_out_rain}",
            "evaluation_seconds": round(time.perf_counter() - started, 1),
        },
        "scores": {
            k: scores[k]
            for k in ("restored", "rainy_input", "gain", "drop_mask_iou", "drop_mask", "output_vs_input", "settings")
        },
        "test_sets": sets,
        # The same sets as the node restores them (newest frame, no clip averaging): the default window, the largest.
        "test_sets_streamed": streamed_sets(engine),
        "test_sets_streamed_widest": streamed_sets(widest),
        "per_video": scores["videos"],
    }
    json_path = args.output_dir / f"{args.model}.json"
    json_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record["test_sets"], indent=2))
    print(f"wrote {target} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
