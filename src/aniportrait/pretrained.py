"""The built-in default model and the body model that goes with a checkpoint.

The default is the ``small`` model trained by this project on its synthetic dataset, shipped at
``assets/models/default.safetensors``; ``assets/models/MODEL_CARD.md`` records how it was trained. Where that file
is absent (a source tree stripped of its assets), the default falls back to a deterministic initialisation: the
``small`` config, ``torch.manual_seed(DEFAULT_INIT_SEED)`` for every network, then
:func:`aniportrait.models.generator.init_planar_manifolds`, which shows the pipeline working, not a portrait.
"""

from __future__ import annotations

from importlib import resources

import torch

from aniportrait.checkpoint import load_generator
from aniportrait.config import SMALL
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds
from aniportrait.models.rig import procedural_rig
from aniportrait.models.smpl_file import BodyModelError, resolve_smpl_path

DEFAULT_INIT_SEED = 0
BUILTIN_CHECKPOINT = ("models", "default.safetensors")


def builtin_checkpoint_path() -> str | None:
    """Path of the packaged trained default, or None where it is absent."""
    path = resources.files("aniportrait.assets").joinpath(*BUILTIN_CHECKPOINT)
    return str(path) if path.is_file() else None


def builtin_generator(device: str | torch.device = "cpu"):
    """The default generator: (generator, metadata, valid_index or None)."""
    path = builtin_checkpoint_path()
    if path is not None:
        return load_generator(path, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEFAULT_INIT_SEED)
        generator = AniPortraitGenerator(SMALL)
    init_planar_manifolds(generator)
    metadata = {"body": "procedural", "note": "deterministic initialisation (untrained)"}
    return generator.to(device).eval(), metadata, None


def body_for_checkpoint(
    metadata: dict[str, str], valid_index: torch.Tensor | None, smpl: str | None, device: str | torch.device = "cpu"
) -> BodyModel:
    """The body a checkpoint was made for: SMPL (user-supplied) or the built-in procedural rig."""
    smpl_path = resolve_smpl_path(smpl)
    if metadata.get("body") == "smpl":
        if smpl_path is None:
            raise BodyModelError(
                "this checkpoint was made for SMPL: download SMPL_NEUTRAL.pkl from the SMPL website (registration "
                "required), convert it to plain numpy (no chumpy), and pass it with --smpl PATH or ANIPORTRAIT_SMPL"
            )
        if valid_index is None:
            raise BodyModelError("this SMPL checkpoint lacks body.valid_index; re-run convert-official")
        return BodyModel.from_file(smpl_path, valid_index.numpy()).to(device)
    if smpl is not None:
        raise BodyModelError("--smpl applies to checkpoints made for SMPL; this one uses the built-in procedural rig")
    if valid_index is None:
        return BodyModel.procedural().to(device)
    return BodyModel.from_arrays(procedural_rig(), valid_index.numpy()).to(device)
