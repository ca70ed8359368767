"""Model configurations: the published ViMP-Net and a lighter variant, as data (timm style).

Study candidates (architectures measured but not shipped) are in :mod:`vimpnet_ros.model.candidates`.

A config fixes every width and depth of the generator, so a checkpoint plus its
config name (or the config stored in our own checkpoint format) rebuilds the model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.model.candidates import candidate_configs

#: Probability at which the raindrop mask is binarised (the published threshold; evaluation, node and drop fill).
MASK_THRESHOLD = 0.5
#: Most stage-1 passes a config may ask for (``stage1_passes``; each costs a feature extraction and a reconstruction).
MAX_STAGE1_PASSES = 3


def check_stage1_passes(passes: object, where: str = "", auto: bool = False) -> None:
    """The one rule on a stage-1 pass count (model, training and engine configs): an integer in
    1..:data:`MAX_STAGE1_PASSES`, or 0 too where ``auto`` (by device and model); else a ConfigError
    whose message starts with ``where``."""
    low = 0 if auto else 1
    if isinstance(passes, bool) or not isinstance(passes, int) or not low <= passes <= MAX_STAGE1_PASSES:
        meaning = " (0 = by device and model)" if auto else ""
        raise ConfigError(f"{where}stage1_passes must be in {low}..{MAX_STAGE1_PASSES}{meaning}, got {passes!r}")


def check_stage2_prefill(prefill: object, where: str = "") -> None:
    """The one rule on ``stage2_prefill`` (model and training configs): a number in [0, 1]; else a ConfigError whose
    message starts with ``where``."""
    if isinstance(prefill, bool) or not isinstance(prefill, int | float) or not 0.0 <= prefill <= 1.0:
        raise ConfigError(f"{where}stage2_prefill must be a number in [0, 1], got {prefill!r}")


#: The smallest ``working_pixels`` a config may name (a 64x64 frame: below it the quarter-resolution features
#: and the 7x7 soft split have almost nothing to see).
MIN_WORKING_PIXELS = 64 * 64

#: Config fields that are rules on trained weights, not sizes: configs that differ only in them load the same weights.
RULES = (
    "stage1_presence",
    "stage1_passes",
    "stage1_repass_presence",
    "propagation_bound",
    "working_pixels",
    "stage2_prefill",
    "stage2_prefill_threshold",
)
#: What the rules compute, numbered: a new number when one of them computes something else for the same value
#: (compiled programs carry it in their keys, so those built under the old meaning are rebuilt).
RULES_VERSION = 2
#: The rules a shipped weights file's record carries, as its figures were measured with them: all but the pass
#: count, which the engine picks per device.
RECORDED_RULES = tuple(rule for rule in RULES if rule != "stage1_passes")


@dataclass(frozen=True)
class VimpNetConfig:
    """Widths and depths of the ViMP-Net generator.

    ``spynet_channels`` are the hidden widths of SPyNet's basic modules (the
    published ones for ``vimpnet``).
    Stage 1 (streaks): ``mid_channels`` wide quarter-resolution features,
    ``extract_blocks`` residual blocks in the feature extractor, ``num_blocks`` in
    each propagation backbone, ``recon_blocks`` 3-D residual blocks in the
    reconstruction. Stage 2 (raindrops): encoders of ``encoder_channels``, soft
    split into ``patch_size`` patches, ``transformer_weight_sets`` dual transformer
    blocks each applied ``transformer_repeats`` times in a row.
    ``gated_residuals`` (not in the published network): each stage's residual is
    multiplied by a per-pixel gate in [0, 1] before it is added to its input, so leaving
    a pixel unchanged is one gate value away (see :class:`~vimpnet_ros.model.VimpNet`).
    ``stage1_presence`` (gated configs only; a rule on the trained gate, no weights): ``(low, high)`` of the
    frame's streak presence ``clamp((mean(g) - low) / (high - low), 0, 1)`` that scales stage 1's gate ``g``
    of that frame, so a frame whose gate averages below ``low`` (stage 1 found no streaks) passes stage 1
    unchanged. Calibrated for a model's weights by ``python -m vimpnet_ros.training.calibrate_presence``.
    ``stage1_passes`` (a rule on the trained weights too): how many times stage 1 runs, each later pass on
    the previous pass's frames (see :class:`~vimpnet_ros.model.VimpNet`); the published network makes one.
    The engine sets it per device and frame size (``EngineConfig.stage1_passes``).
    ``stage1_repass_presence`` (gated configs only; a rule on the trained gate): ``(low, high)`` of the same
    presence formula for the later passes, so they act only on frames whose first-pass gate averages above
    ``low`` (heavy streaks), full from ``high``; None lets them act wherever the first pass did.
    ``propagation_bound`` (a rule on the trained weights too; None in the published network): the largest L2
    norm one pixel's propagated stage-1 feature may take; a longer one is scaled back to it after each step
    of both propagation passes. Weights trained on small crops never meet the wide smooth areas of a camera
    frame, where the forward pass's recurrence can grow the features without limit (and the drop head reads
    them as drops); calibrated for a model's weights by ``python -m vimpnet_ros.training.calibrate_bound``
    at the largest norm the training distribution reaches, rounded up, so a frame like those is restored as
    if there were no bound.
    ``working_pixels`` (a rule on the trained weights too; None in the published network): the frame area, in
    pixels, at which the weights learned rain. Rain is drawn at a frame's scale (a drop up to a fifth of the
    frame), so weights trained on small renders leave the same rain in place at a camera's size; the engine
    restores a larger frame at the largest size of the same aspect within this area and maps the change back
    (``EngineConfig.working_scale``).
    ``stage2_prefill`` (a rule on the trained weights too; 0 = off, as in the published network): stage 2 sees
    stage 1's frames with the pixels of the predicted drops (mask >= ``stage2_prefill_threshold``) moved this far,
    in [0, 1], from the drop's own refracted picture towards the mean of the pixels around the drop
    (:func:`~vimpnet_ros.model.arch_util.fill_from_surroundings`); a frame without a predicted drop reaches stage 2
    unchanged. ``stage2_prefill_threshold`` (in (0, 1]; the published mask threshold unless set): the mask's level
    from which a pixel counts as a drop for that fill. The mask head is unsure of faint drops, so a level below the
    published one reaches drops the published mask leaves out.
    """

    name: str
    spynet_channels: tuple[int, int, int, int] = (32, 64, 32, 16)
    mid_channels: int = 64
    num_blocks: int = 9
    extract_blocks: int = 5
    recon_blocks: int = 5
    recon_upsample_channels: tuple[int, int] = (32, 16)
    streak_channels: int = 16
    drop_channels: int = 8
    deform_groups: int = 16
    max_residue_magnitude: float = 10.0
    encoder_channels: tuple[int, int, int] = (64, 128, 256)
    decoder_channels: tuple[int, int] = (32, 16)
    patch_size: int = 7
    patch_stride: int = 3
    patch_padding: int = 3
    transformer_dim: int = 512
    transformer_heads: int = 4
    transformer_ffn: int = 2048
    transformer_weight_sets: int = 2
    transformer_repeats: int = 2
    gated_residuals: bool = False
    stage1_presence: tuple[float, float] | None = None
    stage1_passes: int = 1
    stage1_repass_presence: tuple[float, float] | None = None
    propagation_bound: float | None = None
    working_pixels: int | None = None
    stage2_prefill: float = 0.0
    stage2_prefill_threshold: float = MASK_THRESHOLD

    def __post_init__(self) -> None:
        """Reject sizes that cannot build (checked here so a bad config file fails before any tensor)."""
        positive = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.type in ("int", int)}
        for field_name, value in positive.items():
            if field_name == "stage1_passes":
                check_stage1_passes(value, f"model config {self.name!r}: ")
            elif field_name in ("extract_blocks", "num_blocks", "recon_blocks", "patch_padding"):
                if value < 0:
                    raise ConfigError(f"model config {self.name!r}: {field_name} must be >= 0, got {value}")
            elif value < 1:
                raise ConfigError(f"model config {self.name!r}: {field_name} must be >= 1, got {value}")
        if (2 * self.mid_channels) % self.deform_groups:
            raise ConfigError(
                f"model config {self.name!r}: deform_groups ({self.deform_groups}) must divide "
                f"2 * mid_channels ({2 * self.mid_channels})"
            )
        if self.transformer_dim % self.transformer_heads:
            raise ConfigError(
                f"model config {self.name!r}: transformer_heads ({self.transformer_heads}) must divide "
                f"transformer_dim ({self.transformer_dim})"
            )
        if self.max_residue_magnitude <= 0:
            raise ConfigError(f"model config {self.name!r}: max_residue_magnitude must be > 0")
        for field_name in ("stage1_presence", "stage1_repass_presence"):
            bounds = getattr(self, field_name)
            if bounds is None:
                continue
            if not self.gated_residuals:
                raise ConfigError(f"model config {self.name!r}: {field_name} needs gated_residuals")
            if len(bounds) != 2 or not 0.0 <= bounds[0] < bounds[1] <= 1.0:
                raise ConfigError(
                    f"model config {self.name!r}: {field_name} must be (low, high) with 0 <= low < high <= 1, "
                    f"got {bounds}"
                )
        bound = self.propagation_bound
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int | float) or not 0 < bound < math.inf
        ):
            raise ConfigError(
                f"model config {self.name!r}: propagation_bound must be a finite number > 0 or None, got {bound!r}"
            )

        check_stage2_prefill(self.stage2_prefill, f"model config {self.name!r}: ")
        level = self.stage2_prefill_threshold
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level <= 1.0:
            raise ConfigError(
                f"model config {self.name!r}: stage2_prefill_threshold must be a number in (0, 1], got {level!r}"
            )

        pixels = self.working_pixels
        not_pixels = isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < MIN_WORKING_PIXELS
        if pixels is not None and not_pixels:
            raise ConfigError(
                f"model config {self.name!r}: working_pixels must be an integer >= {MIN_WORKING_PIXELS} or None, "
                f"got {pixels!r}"
            )

    def same_network(self, other: VimpNetConfig) -> bool:
        """Whether both build the same tensors: they may differ in name and in rules on the trained weights
        (:data:`RULES`), so weights trained under one load under the other."""
        rules = {rule: getattr(other, rule) for rule in RULES}
        return dataclasses.replace(self, name=other.name, **rules) == other

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists), stored inside our checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VimpNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos do not pass silently."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown model config fields {unknown}; known: {sorted(known)}")
        if "name" not in data:
            raise ConfigError("model config lacks a 'name'")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


#: Registered configurations. ``vimpnet`` is the published network (loads its checkpoint).
CONFIGS: dict[str, VimpNetConfig] = {
    "vimpnet": VimpNetConfig(name="vimpnet"),
    # Same structure, >= 8x faster on CPU: narrow stage-1 features, shallow residual stacks,
    # narrow stage-2 encoders, patches at stride 4 (fewer tokens), a 128-wide transformer
    # applied once per weight set. SPyNet stays as published (fixed architecture). The raindrop
    # mask head reads 16 full-resolution channels (``recon_upsample_channels`` 16-16, hidden 8):
    # chosen by the stage-2 width study (docs/studies/lite-model-stage2.md) for +13 % CPU time.
    "vimpnet_lite": VimpNetConfig(
        name="vimpnet_lite",
        mid_channels=32,
        num_blocks=2,
        extract_blocks=2,
        recon_blocks=1,
        recon_upsample_channels=(16, 16),
        streak_channels=8,
        drop_channels=8,
        deform_groups=8,
        encoder_channels=(8, 16, 32),
        decoder_channels=(16, 8),
        patch_stride=4,
        transformer_dim=128,
        transformer_heads=4,
        transformer_ffn=256,
        transformer_weight_sets=2,
        transformer_repeats=1,
    ),
}
#: The previous lite model (mask head on 8 channels, hidden 4): checkpoints trained with it load
#: as ``vimpnet_lite_v1`` (a checkpoint storing the old sizes under the name ``vimpnet_lite`` says so).
CONFIGS["vimpnet_lite_v1"] = dataclasses.replace(
    CONFIGS["vimpnet_lite"], name="vimpnet_lite_v1", recon_upsample_channels=(16, 8), drop_channels=4
)
#: ``vimpnet_lite`` with gated residuals (see ``VimpNet``): a pixel without rain passes unchanged when its gate
#: closes, and a frame where stage 1 finds no streaks passes stage 1 whole (``stage1_presence``, from
#: ``python -m vimpnet_ros.training.calibrate_presence --model vimpnet_lite_gated`` on the shipped weights).
#: Its propagated features stay within ``propagation_bound`` (``python -m vimpnet_ros.training.calibrate_bound --model
#: vimpnet_lite_gated`` on the shipped weights), so wide smooth areas of a camera frame raise no false drops.
#: Its weights learned rain on 224x160 renders: frames larger than the demo drive's 256x160 are restored at that
#: area (``working_pixels``; docs/training.md, "Camera-size frames: restore at the weights' scale").
#: Stage 2 sees the drops the mask gives 0.2 or more half filled from their surroundings (``stage2_prefill``,
#: ``stage2_prefill_threshold``; docs/training.md, "Stage 2's input: the drops filled first").
#: A second stage-1 pass acts on frames whose first-pass gate averages 0.4 or more, fully from 0.5
#: (``stage1_repass_presence``): the held-out heavy rain averages 0.32-0.81, photographs whose textures the
#: first pass takes for streaks 0.10-0.47 (docs/training.md, "Two stage-1 passes").
#: The default model; its shipped weights leave clean frames alone and gain on light rain.
CONFIGS["vimpnet_lite_gated"] = dataclasses.replace(
    CONFIGS["vimpnet_lite"],
    name="vimpnet_lite_gated",
    gated_residuals=True,
    stage1_presence=(0.10, 0.12),
    stage1_repass_presence=(0.40, 0.50),
    propagation_bound=16.0,
    working_pixels=256 * 160,
    stage2_prefill=0.5,
    stage2_prefill_threshold=0.2,
)
#: The architectures above ship (or shipped) weights; study candidates live in :mod:`.candidates`
#: and are registered too, so their checkpoints load by name.
CONFIGS.update(candidate_configs(CONFIGS))


def get_config(name: str) -> VimpNetConfig:
    """The registered config called ``name``; a ConfigError lists the valid names."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}") from None
