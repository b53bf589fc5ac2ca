"""Training checkpoints: every state (networks, EMA, optimisers, step, RNG) in one safetensors file, written atomically.

Tensors are stored under ``{name}/...``: ``module/<module name>/<param>`` for networks,
``optim/<optimiser name>/<param index>/<state key>`` for optimiser states and ``tensor/<name>`` for other learned
tensors (a warm-up's noise codes). Everything else (optimiser param groups,
scalar state, the step, the run config) goes into the JSON metadata. No pickle anywhere, so resuming never runs
code from the file.
"""

from __future__ import annotations

import json
import os

import torch

from aniportrait.checkpoint import CheckpointError, atomic_save, read_safetensors

FORMAT = "aniportrait-training-state"
VERSION = "1"


def _optimizer_tensors(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{name}/{index}/{key}"] = value
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_training_state(
    path: str | os.PathLike,
    *,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    rng: torch.Tensor,
    extra: dict | None = None,
    others: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a resumable training state to ``path`` (atomic: a temporary file, then a rename); ``others`` are learned
    tensors that belong to no module."""
    tensors: dict[str, torch.Tensor] = {"rng/torch": rng}
    tensors.update({f"tensor/{k}": v.detach() for k, v in (others or {}).items()})
    for name, module in modules.items():
        tensors.update({f"module/{name}/{k}": v for k, v in module.state_dict().items()})
    optim_meta = {}
    for name, optimizer in optimizers.items():
        t, meta = _optimizer_tensors(name, optimizer)
        tensors.update(t)
        optim_meta[name] = meta
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "step": str(step),
        "optimizers": json.dumps(optim_meta),
        "extra": json.dumps(extra or {}),
    }
    atomic_save(tensors, path, metadata)


def load_training_state(
    path: str | os.PathLike,
    *,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> tuple[int, torch.Tensor, dict]:
    """Load a state written by :func:`save_training_state` into ``modules`` and ``optimizers`` (strict).

    Returns:
        (step, torch RNG state, extra metadata).
    """
    path = os.fspath(path)
    tensors, metadata = _read(path)
    for name, module in modules.items():
        prefix = f"module/{name}/"
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(own, strict=True)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise CheckpointError(f"{path}: {name} does not match this run's model ({first})") from None
    optim_meta = json.loads(metadata["optimizers"])
    for name, optimizer in optimizers.items():
        if name not in optim_meta:
            raise CheckpointError(f"{path}: no state for optimiser {name!r}")
        optimizer.load_state_dict(_optimizer_state(tensors, optim_meta, name))
    return int(metadata["step"]), tensors["rng/torch"], json.loads(metadata["extra"])


def load_saved_extras(path: str | os.PathLike, prefix: str) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    """The optimiser state dicts and the ``others`` tensors of a saved state whose names start with ``prefix``, by
    name without it: for optimisers and tensors that are built after the state is read (a warm-up's)."""
    path = os.fspath(path)
    tensors, metadata = _read(path)
    optim_meta = json.loads(metadata["optimizers"])
    states = {
        name[len(prefix) :]: _optimizer_state(tensors, optim_meta, name)
        for name in optim_meta
        if name.startswith(prefix)
    }
    others = {
        key[len("tensor/") + len(prefix) :]: value
        for key, value in tensors.items()
        if key.startswith(f"tensor/{prefix}")
    }
    return states, others


def _read(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, metadata = read_safetensors(path, "training state")
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise CheckpointError(f"{path}: not an aniportrait training state (format {metadata.get('format')!r})")
    return tensors, metadata


def _optimizer_state(tensors: dict[str, torch.Tensor], optim_meta: dict, name: str) -> dict:
    """The state dict of optimiser ``name`` from a state's tensors and its optimiser metadata."""
    meta = optim_meta[name]
    state: dict[int, dict] = {}
    prefix = f"optim/{name}/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, sub = key[len(prefix) :].split("/", 1)
            state.setdefault(int(index), {})[sub] = value
    for key, value in meta["scalars"].items():
        index, sub = key.split("/", 1)
        state.setdefault(int(index), {})[sub] = value
    return {"state": state, "param_groups": meta["param_groups"]}
