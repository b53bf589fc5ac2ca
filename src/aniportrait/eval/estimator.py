"""The synthetic world's learned label reader: a small CNN that reads camera, pose and expression from a render.

:class:`SyntheticLabelEstimator` regresses, from a portrait and its face crop, the labels that
:mod:`aniportrait.data.synth` animates: the camera (pitch, yaw), the 18 pose angles (ZYX Euler offsets of joints
12..17) and expression coefficients 0..3 (mouth open, smile, eyes closed, brows). It is trained on ``data synth``
images only (:mod:`aniportrait.eval.estimator_train`), so it is **valid only for models trained on synthetic data**;
for real data use a real face and pose tracker.

Inputs
    Portrait [B, 3, H, W] and face [B, 3, F, F] in [-1, 1], any size: both are resized with antialiasing to the
    network's fixed input sides (``portrait_size``, ``face_size``; 64 each). Training randomly downsamples its inputs
    to 32..128 (portrait) and 24..64 (face) and back, so renders at 32 and 128 read alike. Those reductions keep
    the figure's scale at the training data's; an input smaller than the training data (a 32x32 stage-1 render) is
    a coarser grid of the same rays and is first resampled up to the data's sides corner to corner
    (:func:`aniportrait.images.resample_grid`): read as it is, its figure would look 2.4% larger than the data's
    (:mod:`aniportrait.images`), which the estimator reads as a camera pitch about 0.8 degrees higher.

Network
    Two conv branches of the same shape (portrait, face): six 3x3 conv + BatchNorm + ReLU layers (strides 2, 2, 1,
    2, 1, 2) down to a 4x4 map, flattened (position matters for camera and pose) into a linear layer. The two
    branch codes are joined by a linear layer + SiLU into the **feature** vector [B, 64] (:meth:`SyntheticLabelEstimator.features`,
    the space of the fidelity number), and a last linear layer gives the 24 standardised targets. The targets'
    training-set mean and std are buffers, so the file carries them.

Outputs (the estimator protocol of :mod:`aniportrait.eval.control`)
    ``estimator(images, faces)`` -> ``{"camera" [B, 2], "pose" [B, 6, 3], "expression" [B, 64]}``, with expression
    coefficients 0..3 filled and the rest 0.

The weights file
    ``assets/estimator/synthetic.safetensors``: the state dict plus metadata ``format`` (``aniportrait-estimator``),
    ``version``, ``config`` (JSON: input sizes, widths, feature size) and ``record`` (JSON: the training record and
    the **floors**, the estimator's own held-out errors and the data-vs-data fidelity; :meth:`floor`). Load it with
    :func:`load_synthetic_estimator`.

Fidelity
    The Frechet distance (:func:`aniportrait.eval.metrics.frechet_distance`) between the :func:`estimator_features`
    of two sets of (portrait, face) pairs, e.g. renders and data resized to the render sizes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aniportrait.eval.errors import EvalError
from aniportrait.eval.inception import state_dict_mismatch
from aniportrait.images import resample_grid

__all__ = [
    "ESTIMATOR_FILE",
    "EstimatorConfig",
    "SyntheticLabelEstimator",
    "estimator_features",
    "is_synthetic_dataset",
    "load_synthetic_estimator",
    "resize_square",
    "save_estimator",
]

FORMAT = "aniportrait-estimator"
VERSION = "1"
ESTIMATOR_FILE = ("estimator", "synthetic.safetensors")  # inside aniportrait.assets
SYNTH_SOURCE = "aniportrait.data.synth"  # how dataset.json's "source" of a `data synth` dataset starts
EXPRESSION_DIM = 64
MAX_CHANNELS, MAX_INPUT = 1024, 512  # bounds on a weights file's config, checked before any allocation
READ_COEFFS = 4  # expression coefficients 0..3
TARGET_DIM = 2 + 18 + READ_COEFFS  # camera, pose, expression 0..3
TARGET_NAMES = (
    ["camera_pitch", "camera_yaw"]
    + [f"pose_j{12 + j}_{axis}" for j in range(6) for axis in "zyx"]
    + [f"expression_{k}" for k in range(READ_COEFFS)]
)


def resize_square(images: Tensor, size: int) -> Tensor:
    """[B, 3, H, W] -> [B, 3, size, size]: bilinear with antialiasing (a no-op at the same size)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def is_synthetic_dataset(meta: dict) -> bool:
    """Whether a dataset's ``dataset.json`` says ``aniportrait data synth`` made it (the estimator's world)."""
    return str(meta.get("source", "")).startswith(SYNTH_SOURCE)


@dataclass(frozen=True)
class EstimatorConfig:
    """Input sides and widths of :class:`SyntheticLabelEstimator`."""

    portrait_size: int = 64
    face_size: int = 64
    widths: tuple[int, ...] = (16, 32, 32, 48, 48, 64)  # per conv layer of a branch
    branch_dim: int = 64  # each branch's code
    feature_dim: int = 64  # the joint feature (fidelity space)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EstimatorConfig:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError(f"config keys must be {sorted(cls.__dataclass_fields__)}")
        data["widths"] = tuple(int(w) for w in data["widths"])
        config = cls(**{k: v if k == "widths" else int(v) for k, v in data.items()})
        channels = config.widths + (config.branch_dim, config.feature_dim)
        if len(config.widths) != 6 or not all(1 <= c <= MAX_CHANNELS for c in channels):
            raise ValueError(f"config needs 6 widths, branch_dim and feature_dim in 1..{MAX_CHANNELS}")
        sizes = (config.portrait_size, config.face_size)
        if any(s % 16 or not 16 <= s <= MAX_INPUT for s in sizes):
            raise ValueError(f"input sizes must be multiples of 16 in 16..{MAX_INPUT}")
        return config


class _Branch(nn.Module):
    """Image [B, 3, S, S] -> code [B, branch_dim]: stride 2, 2, 1, 2, 1, 2 convs to an S/16 map, then linear."""

    STRIDES = (2, 2, 1, 2, 1, 2)

    def __init__(self, size: int, widths: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        layers, cin = [], 3
        for cout, stride in zip(widths, self.STRIDES):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(cin * (size // 16) ** 2, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc(self.convs(x).flatten(1)))


class SyntheticLabelEstimator(nn.Module):
    """Reads synthetic-world labels from (portrait, face) renders (see the module docstring).

    Attributes:
        config: the :class:`EstimatorConfig`.
        record: the training record and floors from the weights file (empty for a fresh model).
    """

    def __init__(self, config: EstimatorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EstimatorConfig()
        self.portrait = _Branch(config.portrait_size, config.widths, config.branch_dim)
        self.face = _Branch(config.face_size, config.widths, config.branch_dim)
        self.joint = nn.Linear(2 * config.branch_dim, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, TARGET_DIM)
        self.register_buffer("target_mean", torch.zeros(TARGET_DIM))
        self.register_buffer("target_std", torch.ones(TARGET_DIM))
        self.record: dict = {}

    def prepare(self, images: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
        """Clamp to [-1, 1] and resize (antialiased) to the input sides; checks shapes. Inputs smaller than the
        training data (:attr:`data_sides`) are first resampled up to it on their ray grid (:func:`resample_grid`)."""
        for name, x in (("images", images), ("faces", faces)):
            if x.ndim != 4 or x.shape[1] != 3:
                raise EvalError(f"{name} must be [B, 3, H, W] in [-1, 1], got shape {list(x.shape)}")
        if images.shape[0] != faces.shape[0]:
            raise EvalError(f"images and faces disagree on B: {images.shape[0]} vs {faces.shape[0]}")
        dtype = self.head.weight.dtype
        images, faces = images.to(dtype).clamp(-1, 1), faces.to(dtype).clamp(-1, 1)
        # Smaller grids (a stage-1 render, data reduced to it) are first brought up to the training data's sides
        # corner to corner, so they show the figure at the scale the network learned (aniportrait.images).
        data_image, data_face = self.data_sides
        if images.shape[-1] < data_image:
            images = resample_grid(images, data_image)
        if faces.shape[-1] < data_face:
            faces = resample_grid(faces, data_face)
        return resize_square(images, self.config.portrait_size), resize_square(faces, self.config.face_size)

    @property
    def data_sides(self) -> tuple[int, int]:
        """(portrait, face) sides of the data the estimator was trained on: its largest recorded floor's, else the
        network's input sides."""
        floors = self.record.get("floors", [])
        if not floors:
            return self.config.portrait_size, self.config.face_size
        largest = max(floors, key=lambda f: f["image_size"])
        return int(largest["image_size"]), int(largest["face_size"])

    def features_prepared(self, images: Tensor, faces: Tensor) -> Tensor:
        """Features [B, feature_dim] of inputs already at the input sides (training uses this)."""
        return F.silu(self.joint(torch.cat([self.portrait(images), self.face(faces)], dim=1)))

    def features(self, images: Tensor, faces: Tensor) -> Tensor:
        """The penultimate layer [B, feature_dim] of portraits [B, 3, H, W] and faces [B, 3, F, F] in [-1, 1]."""
        return self.features_prepared(*self.prepare(images, faces))

    def standardised(self, images: Tensor, faces: Tensor) -> Tensor:
        """Standardised targets [B, 24] (order: :data:`TARGET_NAMES`) of inputs at any size."""
        return self.head(self.features(images, faces))

    def decode(self, standardised: Tensor) -> dict[str, Tensor]:
        """Standardised targets [B, 24] -> ``camera`` [B, 2], ``pose`` [B, 6, 3], ``expression`` [B, 64]."""
        values = standardised * self.target_std + self.target_mean
        expression = values.new_zeros(values.shape[0], EXPRESSION_DIM)
        expression[:, :READ_COEFFS] = values[:, 20:]
        return {"camera": values[:, :2], "pose": values[:, 2:20].reshape(-1, 6, 3), "expression": expression}

    def forward(self, images: Tensor, faces: Tensor) -> dict[str, Tensor]:
        """The estimator protocol: labels read from portraits and faces in [-1, 1]."""
        return self.decode(self.standardised(images, faces))

    def floor(self, image_size: int) -> dict:
        """The floors recorded for the training resolution closest to ``image_size`` (log scale): ``{"image_size",
        "face_size", "control": {axis: error}, "fidelity": {str(N): distance}}``; {} for a file without floors."""
        floors = self.record.get("floors", [])
        if not floors:
            return {}
        return min(floors, key=lambda f: abs(math.log(f["image_size"] / max(1, image_size))))


def encode_targets(camera: Tensor, pose: Tensor, expression: Tensor) -> Tensor:
    """Labels -> the raw (unstandardised) target vector [N, 24] in :data:`TARGET_NAMES` order."""
    n = camera.shape[0]
    return torch.cat([camera.reshape(n, 2), pose.reshape(n, 18), expression[:, :READ_COEFFS]], dim=1).float()


# ---------------------------------------------------------------------------------------------------------------------
# The weights file


def save_estimator(model: SyntheticLabelEstimator, path: str | os.PathLike) -> None:
    """Write the estimator (weights, standardisation, config and ``model.record``) as safetensors, atomically."""
    from aniportrait.checkpoint import atomic_save

    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_json(),
        "record": json.dumps(model.record, sort_keys=True),
    }
    atomic_save(
        {k: v.float() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, path, metadata
    )


def builtin_estimator_path() -> str:
    """The packaged weights file's path (it may be absent from a stripped source tree)."""
    return str(resources.files("aniportrait.assets").joinpath(*ESTIMATOR_FILE))


def load_synthetic_estimator(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> SyntheticLabelEstimator:
    """Load an estimator written by :func:`save_estimator` (default: the packaged one), in eval mode on ``device``.

    Raises:
        EvalError: the file is missing, not safetensors, not an estimator file, or its tensors do not match its
            config or are not finite (the message says which).
    """
    from aniportrait.checkpoint import CheckpointError, read_safetensors

    path = builtin_estimator_path() if path is None else os.fspath(path)
    hint = "; use the packaged assets/estimator/synthetic.safetensors or retrain with aniportrait.eval.estimator_train"
    try:
        tensors, metadata = read_safetensors(path, "estimator weights")
    except CheckpointError as err:
        raise EvalError(f"{err}{hint}") from None
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise EvalError(
            f"{path}: not an estimator file (format {metadata.get('format')!r} version {metadata.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION!r}){hint}"
        )
    try:
        config = EstimatorConfig.from_json(metadata.get("config", ""))
        record = json.loads(metadata.get("record", "{}"))
    except (ValueError, TypeError, KeyError) as err:
        raise EvalError(f"{path}: bad estimator metadata ({err}){hint}") from None
    with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten: leave the global RNG alone
        model = SyntheticLabelEstimator(config)
    problem = state_dict_mismatch(model, tensors)
    if problem:
        raise EvalError(f"{path}: estimator tensors do not match its config: {problem}{hint}")
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise EvalError(f"{path}: estimator tensors hold NaN or inf ({', '.join(bad[:3])}){hint}")
    if (tensors["target_std"] <= 0).any():
        raise EvalError(f"{path}: estimator target_std must be positive{hint}")
    model.load_state_dict(tensors, strict=False)  # num_batches_tracked is not stored
    model.record = record if isinstance(record, dict) else {}
    return model.to(device).eval()


@lru_cache(maxsize=1)
def _cached_builtin() -> SyntheticLabelEstimator:
    return load_synthetic_estimator()


def builtin_estimator() -> SyntheticLabelEstimator:
    """The packaged estimator on the CPU, loaded once per process (do not modify it)."""
    return _cached_builtin()


# ---------------------------------------------------------------------------------------------------------------------
# Features and fidelity


@torch.no_grad()
def estimator_features(
    estimator: SyntheticLabelEstimator, images: Tensor, faces: Tensor, batch_size: int = 64
) -> Tensor:
    """Features [N, D] (float64, CPU) of portraits [N, 3, H, W] and faces [N, 3, F, F] in [-1, 1]."""
    estimator.eval()
    device = estimator.head.weight.device
    out = [
        estimator.features(images[i : i + batch_size].to(device), faces[i : i + batch_size].to(device)).double().cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    if not out:
        raise EvalError("no images to extract estimator features from")
    return torch.cat(out)
