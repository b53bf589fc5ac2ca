"""Our generator checkpoints: safetensors with the config in the metadata, written atomically.

Layout: the generator's state_dict (release parameter names) plus, optionally, ``body.valid_index`` (int64 [V']: the
vertex ids eligible for the nearest-vertex lookup) and ``labels.id_bank`` (float32 [N, z_id_dim + 10]: the training
data's identity and shape labels, from which identities are drawn). Metadata keys: ``format`` = "aniportrait-generator",
``version``, ``config`` (JSON of :class:`aniportrait.config.GeneratorConfig`), ``body`` ("procedural" or "smpl"),
``face_model``, optionally ``rendering`` (JSON of :class:`aniportrait.config.RenderingConfig`: how the model renders
by default; absent means the defaults) and free-form ``note``. Licensed body-model arrays are never stored.
"""

from __future__ import annotations

import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from aniportrait.config import GeneratorConfig, RenderingConfig
from aniportrait.errors import UserInputError
from aniportrait.models.generator import AniPortraitGenerator
from aniportrait.staging import atomic_write

FORMAT = "aniportrait-generator"
VERSION = "1"
VALID_INDEX_KEY = "body.valid_index"
ID_BANK_KEY = "labels.id_bank"
BODIES = ("procedural", "smpl")
FACE_MODELS = ("procedural", "bfm")  # the 3DMM whose expression coefficients drive a checkpoint


class CheckpointError(UserInputError):
    """A checkpoint file is missing, corrupt or does not fit the model; the message says which and what to do."""


def atomic_save(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (:func:`aniportrait.staging.atomic_write`)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_generator(
    path: str | os.PathLike,
    generator: AniPortraitGenerator,
    *,
    body: str = "procedural",
    face_model: str = "procedural",
    valid_index: torch.Tensor | None = None,
    rendering: RenderingConfig | None = None,
    note: str = "",
) -> None:
    """Save ``generator`` (with its ``id_bank``, and the valid-vertex index of the body it was made for).

    ``face_model`` names the 3DMM whose expression coefficients drive it (``"procedural"`` or ``"bfm"``); it says
    what each coefficient means (see :func:`expression_meaning`); ``rendering`` the settings its videos render with
    by default (see :func:`rendering_config`)."""
    if body not in BODIES:
        raise ValueError(f"body must be one of {', '.join(BODIES)}, got {body!r}")
    if face_model not in FACE_MODELS:
        raise ValueError(f"face_model must be one of {', '.join(FACE_MODELS)}, got {face_model!r}")
    tensors = dict(generator.state_dict())
    if valid_index is not None:
        tensors[VALID_INDEX_KEY] = valid_index.to(torch.int64)
    if generator.id_bank is not None:
        tensors[ID_BANK_KEY] = generator.id_bank.to(torch.float32)
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": generator.config.to_json(),
        "body": body,
        "face_model": face_model,
    }
    if rendering is not None:
        metadata["rendering"] = rendering.to_json()
    if note:
        metadata["note"] = note
    atomic_save(tensors, path, metadata)


def rendering_config(metadata: dict[str, str], path: str | os.PathLike = "checkpoint") -> RenderingConfig:
    """The rendering defaults a checkpoint records (``RenderingConfig()`` where it records none); ``CheckpointError``
    naming ``path`` if the record cannot be used."""
    if "rendering" not in metadata:
        return RenderingConfig()
    try:
        return RenderingConfig.from_json(metadata["rendering"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable rendering settings in the metadata: {err}") from None


def expression_meaning(metadata: dict[str, str]) -> tuple[str, ...]:
    """Names of a checkpoint's leading expression coefficients: the procedural 3DMM's (mouth open, smile, ...), or
    none for the BFM, whose coefficients are PCA components. Checkpoints written before ``face_model`` was recorded
    were trained on the procedural 3DMM when their body is procedural (the built-in default) and converted from the
    release (BFM) otherwise."""
    from aniportrait.models.face3dmm import EXPRESSION_MEANING

    face_model = metadata.get("face_model", "procedural" if metadata.get("body") == "procedural" else "bfm")
    return EXPRESSION_MEANING if face_model == "procedural" else ()


def read_safetensors(path: str | os.PathLike, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file; ``CheckpointError`` naming ``what`` if that fails."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        hint = (
            " (an official .pt checkpoint? convert it with `aniportrait convert-official`)"
            if path.endswith((".pt", ".pth"))
            else ""
        )
        raise CheckpointError(f"{path}: not a readable safetensors file ({what}){hint}: {err}") from None
    return tensors, metadata


def state_dict_diff(expected: dict, given: dict) -> tuple[list[str], list[str], list[str]]:
    """Sorted (missing, unexpected, mis-shaped) keys of ``given`` against ``expected`` (tensors or shaped arrays)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        k for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(getattr(given[k], "shape", ()))
    )
    return missing, unexpected, misshaped


def describe_keys(keys: list[str], limit: int = 4) -> str:
    """The first ``limit`` keys, then "and N more"."""
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def describe_state_dict_diff(expected: dict, given: dict, *, counted: bool = False) -> str | None:
    """How ``given`` differs from ``expected`` (keys and shapes) in one line, or None when they match.

    Plain: ``missing a, b; unexpected c; mis-shaped d (e.g. d: [2] vs [3])`` (up to 4 keys a kind).
    ``counted``: ``2 missing keys (a, b); 1 unexpected keys (c); 1 mis-shaped tensors (e.g. d: [2] vs [3])``
    (up to 3 keys a kind).
    """
    missing, unexpected, misshaped = state_dict_diff(expected, given)
    problems = []
    for kind, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            problems.append(
                f"{len(keys)} {kind} keys ({describe_keys(keys, 3)})" if counted else f"{kind} {describe_keys(keys)}"
            )
    if misshaped:
        k = misshaped[0]
        example = f"(e.g. {k}: {list(given[k].shape)} vs {list(expected[k].shape)})"
        what = f"{len(misshaped)} mis-shaped tensors" if counted else f"mis-shaped {describe_keys(misshaped)}"
        problems.append(f"{what} {example}")
    return "; ".join(problems) or None


def load_generator(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> tuple[AniPortraitGenerator, dict[str, str], torch.Tensor | None]:
    """Load a checkpoint written by :func:`save_generator`.

    Returns:
        (generator in eval mode on ``device``, metadata, valid_index or None).

    Raises:
        CheckpointError: the file is missing, not safetensors, not ours, its tensors don't match the config, or its
            rendering settings are unreadable.
    """
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path, "checkpoint")
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an aniportrait generator checkpoint (metadata format is missing)")
    if metadata.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {metadata.get('version')!r} is not supported ({VERSION})")
    try:
        config = GeneratorConfig.from_json(metadata["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable generator config in the metadata: {err}") from None
    rendering_config(metadata, path)  # a bad record fails here, not at the first render
    valid_index = tensors.pop(VALID_INDEX_KEY, None)
    id_bank = tensors.pop(ID_BANK_KEY, None)
    if id_bank is not None:
        width = config.z_id_dim + config.betas_dim
        if id_bank.dim() != 2 or id_bank.shape[1] != width or len(id_bank) == 0 or not id_bank.isfinite().all():
            raise CheckpointError(
                f"{path}: {ID_BANK_KEY} must be a finite [N, {width}] label bank, got {list(id_bank.shape)}"
            )
    try:
        with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten: leave the global RNG alone
            generator = AniPortraitGenerator(config)
    except (ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path}: its generator config cannot be built: {err}") from None
    problem = describe_state_dict_diff(generator.state_dict(), tensors)
    if problem:
        raise CheckpointError(f"{path}: tensors do not match its config: {problem}")
    generator.load_state_dict(tensors)
    generator.id_bank = None if id_bank is None else id_bank.float()
    return generator.to(device).eval(), metadata, valid_index
