"""Study candidates: architectures measured against the shipped ones, registered so their checkpoints load.

None of these ships weights. :mod:`vimpnet_ros.model.config` registers them next to the shipped
architectures (``vimpnet``, ``vimpnet_lite``, ``vimpnet_lite_gated`` and the former ``vimpnet_lite_v1``),
so a checkpoint trained in a study still loads by name; a candidate whose weights ship moves to that module.
Each is a variant of a shipped config, given here as the fields that differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

#: The raindrop mask head on 16 full-resolution channels (hidden 8), as ``vimpnet_lite`` has it.
_MASK_HEAD_16: dict[str, Any] = {"recon_upsample_channels": (16, 16), "drop_channels": 8}

#: Candidate name -> (the shipped config it varies, the fields that differ).
#:
#: ``vimpnet_lite_s2*``: the stage-2 width study, on ``vimpnet_lite_v1``: the stage-2 drop remover wider
#: (``w``: 16-32-64 encoders, ``x``: 24-48-96; ``n``: 8-32-64, wider only below full resolution), with
#: (``m``) or without the mask head on 16 channels that ``vimpnet_lite`` now has. Measured against mask
#: IoU, PSNR and CPU latency in docs/studies/lite-model-stage2.md. (A deeper stage 2,
#: ``transformer_repeats`` 2, was measured too but is not registered: it has the same tensors as
#: ``_s2wm``, so a bare state dict could not tell the two apart.)
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "vimpnet_lite_s2n": ("vimpnet_lite_v1", {"encoder_channels": (8, 32, 64)}),
    "vimpnet_lite_s2nm": ("vimpnet_lite_v1", {"encoder_channels": (8, 32, 64), **_MASK_HEAD_16}),
    "vimpnet_lite_s2w": ("vimpnet_lite_v1", {"encoder_channels": (16, 32, 64)}),
    "vimpnet_lite_s2wm": ("vimpnet_lite_v1", {"encoder_channels": (16, 32, 64), **_MASK_HEAD_16}),
    "vimpnet_lite_s2xm": (
        "vimpnet_lite_v1",
        {"encoder_channels": (24, 48, 96), "decoder_channels": (24, 16), **_MASK_HEAD_16},
    ),
}


def candidate_configs(shipped: Mapping[str, Any]) -> dict[str, Any]:
    """The candidates' configs (``VimpNetConfig``), each a copy of its shipped base with its fields changed."""
    return {
        name: dataclasses.replace(shipped[base], name=name, **changes) for name, (base, changes) in CANDIDATES.items()
    }
