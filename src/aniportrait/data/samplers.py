"""Label samplers: draw cameras, poses, identities and expressions from a dataset's empirical distribution.

The paper samples every label "from the estimated distributions", and the release does it by drawing random rows of
label banks (``samplers/joint_sampler.py``). The samplers here do the same from a :class:`LabelBank`, the label arrays
of a dataset (:mod:`aniportrait.data.format`):

- :func:`sample_camera_pose` ``mode="paired"``: camera and all six joints from one row (the release's
  ``CameraJointSampler``, whose bank rows are [pitch, yaw, 18 Euler angles]).
- :func:`sample_camera_pose` ``mode="independent"``: camera from one row, and the joint pairs (12, 15) neck + head,
  (13, 16) left collar + shoulder, (14, 17) right collar + shoulder each from their own row (the release's
  ``JointSampler('label')``, "follows eg3d"). This makes new pose combinations that no image has.
- :func:`sample_identity`: the 3DMM identity and the SMPL betas jointly from one row (``IDShapeSampler``).
- :func:`sample_expression`: one row of 3DMM expression coefficients.

Rows are drawn uniformly with replacement by ``torch.randint`` on the given ``torch.Generator`` (the global RNG when
None), so a seeded generator gives the same draws on every machine; results live on the bank's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from aniportrait.data.dataset import PortraitDataset, load_labels
from aniportrait.data.format import LABEL_SHAPES

__all__ = [
    "POSE_JOINT_PAIRS",
    "LabelBank",
    "id_bank",
    "sample_camera_pose",
    "sample_expression",
    "sample_identity",
]

# Joint pairs that JointSampler('label') draws from one row each, as indices into the 6 pose joints 12..17.
POSE_JOINT_PAIRS = ((0, 3), (1, 4), (2, 5))  # (12 neck, 15 head), (13 L-collar, 16 L-shoulder), (14, 17) right


@dataclass
class LabelBank:
    """The label arrays of a dataset as float32 tensors, row i of every field from the same image."""

    camera: Tensor  # [N, 2] (pitch, yaw), radians
    pose: Tensor  # [N, 6, 3] ZYX Euler offsets of joints 12..17
    betas: Tensor  # [N, 10] SMPL shape
    id: Tensor  # [N, 80] 3DMM identity
    expression: Tensor  # [N, 64] 3DMM expression

    def __post_init__(self):
        n = None
        for key, shape in LABEL_SHAPES.items():
            value = torch.as_tensor(getattr(self, key)).float()
            if value.ndim != 1 + len(shape) or tuple(value.shape[1:]) != shape:
                raise ValueError(
                    f"LabelBank.{key} has shape {list(value.shape)}, expected [N, {', '.join(map(str, shape))}]"
                )
            if n is None:
                n = value.shape[0]
            elif value.shape[0] != n:
                raise ValueError(f"LabelBank.{key} has {value.shape[0]} rows but camera has {n}; rows must align")
            setattr(self, key, value)
        if n == 0:
            raise ValueError("LabelBank is empty; it needs at least one row")

    @classmethod
    def from_dataset(cls, dataset: str | Path | PortraitDataset) -> LabelBank:
        """The bank of a :class:`PortraitDataset` or a dataset folder (only its ``labels.npz`` is read)."""
        labels = dataset.labels if isinstance(dataset, PortraitDataset) else load_labels(dataset)[1]
        return cls(**{k: torch.from_numpy(np.asarray(labels[k], dtype=np.float32)) for k in LABEL_SHAPES})

    def __len__(self) -> int:
        return self.camera.shape[0]

    @property
    def device(self) -> torch.device:
        return self.camera.device

    def to(self, device: torch.device | str) -> LabelBank:
        """The bank on ``device``."""
        return LabelBank(**{k: getattr(self, k).to(device) for k in LABEL_SHAPES})


def _rows(bank: LabelBank, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Uniform random row indices of ``shape``, drawn on the generator's device and moved to the bank's."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(len(bank), shape, generator=generator, device=device).to(bank.device)


def sample_camera_pose(
    bank: LabelBank,
    n: int,
    generator: torch.Generator | None = None,
    mode: Literal["paired", "independent"] = "paired",
) -> tuple[Tensor, Tensor]:
    """Draw ``n`` cameras and poses from the bank.

    Args:
        bank: the label bank.
        n: how many to draw.
        generator: the RNG (None: torch's global one).
        mode: ``"paired"`` takes camera and the whole pose from one row. ``"independent"`` takes the camera from one
            row and each joint pair of :data:`POSE_JOINT_PAIRS` from its own row (4 rows per sample, drawn as one
            ``randint`` of shape [4, n]: camera, then the three pairs).

    Returns:
        camera [n, 2] (pitch, yaw) and pose [n, 6, 3], float32 on the bank's device.

    Example:
        >>> bank = LabelBank.from_dataset("data/shhq-hs")  # doctest: +SKIP
        >>> camera, pose = sample_camera_pose(bank, 4, torch.Generator().manual_seed(0))  # doctest: +SKIP
    """
    if mode == "paired":
        rows = _rows(bank, (n,), generator)
        return bank.camera[rows], bank.pose[rows]
    if mode == "independent":
        rows = _rows(bank, (1 + len(POSE_JOINT_PAIRS), n), generator)
        pose = torch.empty(n, *bank.pose.shape[1:], dtype=bank.pose.dtype, device=bank.device)
        for pair_rows, joints in zip(rows[1:], POSE_JOINT_PAIRS):
            pose[:, list(joints)] = bank.pose[pair_rows][:, list(joints)]
        return bank.camera[rows[0]], pose
    raise ValueError(f"mode is {mode!r}; use 'paired' or 'independent'")


def sample_identity(bank: LabelBank, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Draw ``n`` (3DMM identity [n, 80], SMPL betas [n, 10]) pairs, each pair from one row."""
    rows = _rows(bank, (n,), generator)
    return bank.id[rows], bank.betas[rows]


def sample_expression(bank: LabelBank, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` rows of 3DMM expression coefficients, [n, 64]."""
    return bank.expression[_rows(bank, (n,), generator)]


def id_bank(bank: LabelBank) -> Tensor:
    """The identity bank [N, 90] = [id (80), betas (10)], the release's ``id_shape_sampler_body.npy`` layout.

    This is the ``id_bank`` that ``aniportrait.models.generator.sample_identity_latents`` accepts.
    """
    return torch.cat([bank.id, bank.betas], dim=1)
