"""Validation and loading of datasets in the on-disk format of :mod:`aniportrait.data.format`.

:func:`check_dataset` validates a dataset folder without keeping images in memory: it decodes each PNG once, checks
it and drops it. It returns a :class:`DatasetReport` that names every problem by file (``"images/000123.png:
missing"``). :class:`PortraitDataset` opens a checked dataset, and :func:`make_loader` wraps it in a ``DataLoader``.

Conventions of an item (``PortraitDataset[i]``, a dict that the default collate batches):

- ``image`` [3, R, R] and ``face`` [3, F, F]: float32 RGB in [-1, 1] (``x / 127.5 - 1``, the GRAM convention).
  PNGs with transparency are composited over **white** first, because the generator renders over a white background
  (``white_back``). Grey or palette PNGs are converted to RGB.
- ``camera`` [2], ``pose`` [6, 3], ``betas`` [10], ``id`` [80], ``expression`` [64]: float32 tensors, the label row of
  the image (see :mod:`aniportrait.data.format` for their meaning).
- ``index``: the int row index. ``flipped``: a bool tensor, True when the item was mirrored.

Horizontal flip (``flip=True``; off by default). An image mirrored left-right is the picture of the mirrored scene
(world x -> -x), so the labels are mirrored with it:

- camera: pitch is unchanged and yaw is mirrored around the frontal view, ``yaw -> pi - yaw`` (the camera's x,
  ``sin(pitch) cos(yaw)``, changes sign).
- pose: conjugating a rotation by the mirror ``diag(-1, 1, 1)`` negates its angles about Z and Y and keeps the angle
  about X, so every ZYX Euler triple becomes ``(-z, -y, x)``. Left and right joints trade places: 13 <-> 14 (collars),
  16 <-> 17 (shoulders), while 12 (neck) and 15 (head) stay. The canonical mean pose is mirror-symmetric (head X only,
  shoulders Z = -+1.05 with equal X), so mirroring the *offsets* from it is exact.
- face crop: mirrored left-right too.
- betas: unchanged (SMPL shape is close to left-right symmetric).
- id and expression: **unchanged, an approximation**. The BFM 3DMM bases are not closed under mirroring, so the
  3DMM coefficients of a mirrored face cannot be computed from the coefficients alone. Asymmetric expressions (a
  one-sided smile) are then labelled with the wrong side. Keep ``flip=False`` where that matters.

Whether item ``i`` is flipped is a pure function of ``(seed, epoch, i)`` (:func:`flip_decision`), so it does not
depend on worker count, worker seeds or the order the sampler visits items. Call :func:`set_epoch` (or
``dataset.set_epoch``) before each epoch to get new flips; the same ``(seed, epoch)`` always gives the same flips.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from aniportrait.data.format import (
    FACES_DIR,
    FORMAT,
    IMAGE_EXT,
    IMAGES_DIR,
    LABEL_SHAPES,
    LABELS_FILE,
    META_FILE,
    VERSION,
)
from aniportrait.errors import UserInputError

__all__ = [
    "DatasetError",
    "DatasetReport",
    "PortraitDataset",
    "check_dataset",
    "flip_decision",
    "flip_image",
    "flip_labels",
    "load_labels",
    "make_loader",
    "mirror_camera",
    "mirror_pose",
    "read_meta",
    "set_epoch",
]

# A file stem an id may be: letters, digits, '-', '_' (format.py).
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PIL modes that convert to 8-bit RGB without loss of meaning (16-bit and CMYK do not).
CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa"})
# Background that transparent pixels are composited over (the generator's white_back).
BACKGROUND_RGB = (255, 255, 255)
# What damaged files raise: numpy/zipfile for labels.npz; PIL (verify: SyntaxError, decoders: OSError) for PNGs.
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
PNG_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
# How many ids a problem line lists before "...".
LISTED_IDS = 5

# Horizontal flip of the pose: joints 12..17 -> the joint they become (13 <-> 14, 16 <-> 17), and the sign of each
# ZYX Euler component under the mirror diag(-1, 1, 1).
POSE_MIRROR_JOINTS = (0, 2, 1, 3, 5, 4)
POSE_MIRROR_SIGNS = (-1.0, -1.0, 1.0)


class DatasetError(UserInputError):
    """A dataset folder that cannot be used; the message says what is wrong and what to do."""


# ---------------------------------------------------------------------------------------------------------------------
# Validation


@dataclass
class DatasetReport:
    """Result of :func:`check_dataset`: every problem found, each prefixed by the file it is about."""

    path: Path
    problems: list[str] = field(default_factory=list)
    count: int = 0  # N, the number of ids in labels.npz (0 when unreadable)
    image_size: int | None = None  # R from dataset.json
    face_size: int | None = None  # F from dataset.json

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, max_problems: int = 20) -> str:
        """One line when the dataset is fine, otherwise a header and the first ``max_problems`` problems."""
        if self.ok:
            return (
                f"{self.path}: OK, {self.count} entries "
                f"({self.image_size}x{self.image_size} images, {self.face_size}x{self.face_size} faces)"
            )
        lines = [f"{self.path}: {len(self.problems)} problem(s) in {self.count} entries"]
        lines += [f"  - {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)

    def raise_for_problems(self, max_problems: int = 5) -> None:
        """Raise :class:`DatasetError` listing the first problems, unless the dataset is fine."""
        if self.ok:
            return
        first = "; ".join(self.problems[:max_problems])
        more = f" (and {len(self.problems) - max_problems} more)" if len(self.problems) > max_problems else ""
        raise DatasetError(
            f"{self.path} is not a valid dataset: {first}{more}; run check_dataset() for the full list and fix them"
        )


def check_dataset(path: str | Path, *, decode: bool = True) -> DatasetReport:
    """Validate a dataset folder against :mod:`aniportrait.data.format`.

    Checks ``dataset.json`` (format, version, sizes, count), ``labels.npz`` (loadable without pickle; unique, valid
    ids; every label [N, ...] float and finite) and, for every id, ``images/{id}.png`` and ``faces/{id}.png``
    (present, PNG signature, decodable, convertible to RGB, of the declared size). Extra files are not problems.
    Images are decoded one at a time and dropped (about 0.2 ms per 128x128 PNG).

    Args:
        path: the dataset folder.
        decode: decode the pixel data too (catches truncated or corrupt files). False checks only the PNG header.

    Returns:
        A :class:`DatasetReport`; ``report.ok`` is True when nothing is wrong.

    Example:
        >>> report = check_dataset("data/shhq-hs")  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
    """
    root = Path(path)
    report = DatasetReport(root)
    if not root.is_dir():
        report.problems.append(f"{root}: not a directory; pass the folder that holds {META_FILE}")
        return report
    meta = _check_meta(root, report.problems)
    ids, _ = _check_labels(root, report.problems)
    if meta is not None:
        report.image_size, report.face_size = meta["image_size"], meta["face_size"]
    if ids is None:
        return report
    report.count = len(ids)
    if not ids:
        report.problems.append(f"{LABELS_FILE}: no entries (N = 0); a dataset needs at least one image")
        return report
    if meta is not None and meta.get("count") is not None and meta["count"] != len(ids):
        report.problems.append(
            f"{META_FILE}: count is {meta['count']} but {LABELS_FILE} has {len(ids)} ids; set count to {len(ids)}"
        )
    # Each distinct valid id once: invalid stems and duplicates are already reported, and a stem such as '../x'
    # must not be turned into a path.
    stems = list(dict.fromkeys(i for i in ids if ID_PATTERN.fullmatch(i)))
    for folder, size in ((IMAGES_DIR, report.image_size), (FACES_DIR, report.face_size)):
        for stem in stems:
            rel = f"{folder}/{stem}{IMAGE_EXT}"
            problem = _check_png(root / rel, size, decode)
            if problem is not None:
                report.problems.append(f"{rel}: {problem}")
    return report


def read_meta(path: str | Path) -> dict:
    """Parsed and validated ``dataset.json`` of a dataset folder; raises :class:`DatasetError` if it is unusable."""
    problems: list[str] = []
    meta = _check_meta(Path(path), problems)
    if problems:
        raise DatasetError(f"{Path(path)}: {'; '.join(problems)}")
    return meta


def load_labels(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """The ids and float32 label arrays of ``labels.npz`` (images are not checked).

    Raises :class:`DatasetError` naming the first problems when the labels do not follow the format.
    """
    problems: list[str] = []
    ids, labels = _check_labels(Path(path), problems)
    if ids is not None and not ids and not problems:
        problems.append(f"{LABELS_FILE}: no entries (N = 0); a dataset needs at least one image")
    if problems:
        listed = "; ".join(problems[:LISTED_IDS])
        raise DatasetError(f"{Path(path)}: {listed}; fix {LABELS_FILE} (see aniportrait.data.format)")
    return ids, {k: v.astype(np.float32, copy=False) for k, v in labels.items()}


def _check_meta(root: Path, problems: list[str]) -> dict | None:
    """Validate dataset.json and append its problems; returns it with unusable sizes/count set to None, or None."""
    file = root / META_FILE
    if not file.is_file():
        problems.append(f"{META_FILE}: missing; write {{'format': '{FORMAT}', 'version': {VERSION}, ...}}")
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        problems.append(f"{META_FILE}: not valid JSON ({e}); rewrite it with json.dump")
        return None
    if not isinstance(meta, dict):
        problems.append(f"{META_FILE}: top level is a {type(meta).__name__}, expected an object")
        return None
    meta = dict(meta)
    if meta.get("format") != FORMAT:
        problems.append(f"{META_FILE}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        problems.append(f"{META_FILE}: version {meta.get('version')!r} is not supported; this reader knows {VERSION}")
    for key in ("image_size", "face_size"):
        value = meta.get(key)
        if not _is_int(value) or value <= 0:
            problems.append(f"{META_FILE}: {key} is {value!r}, expected a positive integer (pixels)")
            meta[key] = None
    count = meta.get("count")
    if not _is_int(count) or count < 0:
        problems.append(f"{META_FILE}: count is {count!r}, expected the number of images (a non-negative integer)")
        meta["count"] = None
    return meta


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_labels(root: Path, problems: list[str]) -> tuple[list[str] | None, dict[str, np.ndarray]]:
    """Validate labels.npz; returns (ids or None, the label arrays that passed) and appends problems."""
    file = root / LABELS_FILE
    if not file.is_file():
        problems.append(f"{LABELS_FILE}: missing; save the ids and labels with numpy.savez")
        return None, {}
    try:
        npz = np.load(file, allow_pickle=False)
    except NPZ_ERRORS as e:
        problems.append(f"{LABELS_FILE}: cannot read ({type(e).__name__}: {e}); rewrite it with numpy.savez")
        return None, {}
    with npz:
        arrays: dict[str, np.ndarray] = {}
        for key in ("ids", *LABEL_SHAPES):
            if key not in npz.files:
                expected = "[N] str" if key == "ids" else f"{_shape_str(('N', *LABEL_SHAPES[key]))} float32"
                problems.append(f"{LABELS_FILE}: {key} missing, expected {expected}")
                continue
            try:
                arrays[key] = npz[key]
            except NPZ_ERRORS as e:  # object arrays raise ValueError without pickle
                problems.append(
                    f"{LABELS_FILE}: {key} cannot be loaded without pickle ({e}); save it as a plain numpy array"
                )
    ids = _check_ids(arrays.pop("ids", None), problems)
    n = None if ids is None else len(ids)
    labels = {}
    for key, shape in LABEL_SHAPES.items():
        if key in arrays and _check_label(key, arrays[key], shape, n, ids, problems):
            labels[key] = arrays[key]
    return ids, labels


def _check_ids(raw: np.ndarray | None, problems: list[str]) -> list[str] | None:
    if raw is None:
        return None
    if raw.shape == (0,):  # np.array([]) is float64: an empty dataset, reported by the caller
        return []
    if raw.dtype.kind != "U":
        problems.append(f"{LABELS_FILE}: ids has dtype {raw.dtype}, expected str; save numpy.array(list_of_str)")
        return None
    if raw.ndim != 1:
        problems.append(f"{LABELS_FILE}: ids has shape {_shape_str(raw.shape)}, expected [N]")
        return None
    ids = raw.tolist()
    for stem in ids:
        if not ID_PATTERN.fullmatch(stem):
            problems.append(f"{LABELS_FILE}: id {stem!r} is not a valid file stem; use letters, digits, '-', '_'")
    for stem, times in Counter(ids).items():
        if times > 1:
            problems.append(f"{LABELS_FILE}: id {stem!r} appears {times} times; ids must be unique")
    return ids


def _check_label(key, arr: np.ndarray, shape, n: int | None, ids, problems: list[str]) -> bool:
    """Check one label array; True when it is usable."""
    if arr.dtype.kind != "f":
        problems.append(f"{LABELS_FILE}: {key} has dtype {arr.dtype}, expected float32")
        return False
    if arr.ndim != 1 + len(shape) or tuple(arr.shape[1:]) != tuple(shape):
        problems.append(f"{LABELS_FILE}: {key} has shape {_shape_str(arr.shape)}, expected {_shape_str(('N', *shape))}")
        return False
    if n is not None and arr.shape[0] != n:
        problems.append(f"{LABELS_FILE}: {key} has {arr.shape[0]} rows, expected N = {n} (one per id)")
        return False
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=tuple(range(1, arr.ndim))))
    if bad.size:
        rows = ", ".join(f"{r} ({ids[r]!r})" if ids is not None else str(r) for r in bad[:LISTED_IDS])
        more = ", ..." if bad.size > LISTED_IDS else ""
        problems.append(f"{LABELS_FILE}: {key} has NaN or inf in {bad.size} row(s): {rows}{more}")
        return False
    return True


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_png(file: Path, size: int | None, decode: bool) -> str | None:
    """What is wrong with one image file, or None."""
    try:
        with open(file, "rb") as f:
            head = f.read(len(PNG_SIGNATURE))
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if head != PNG_SIGNATURE:
        return "not a PNG (bad signature)" if head else "empty file"
    try:
        with Image.open(file, formats=["PNG"]) as im:
            mode, (w, h) = im.mode, im.size
            if decode:
                im.verify()  # chunk checksums
        if decode:
            with Image.open(file, formats=["PNG"]) as im:
                im.load()  # the pixel data (truncated or broken zlib streams)
    except Image.DecompressionBombError:
        return "too large to decode (PIL's decompression-bomb limit); resize it to the declared size"
    except PNG_ERRORS:
        return "corrupt (cannot decode)"
    if mode not in CONVERTIBLE_MODES:
        return f"mode {mode} cannot be converted to 8-bit RGB; save it as RGB"
    if size is not None and (w, h) != (size, size):
        return f"size {w}x{h}, expected {size}x{size}"
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Flip


def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """Whether item ``index`` is flipped in ``epoch``: the low bit of ``SeedSequence([seed, epoch, index])``."""
    return bool(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0] & 1)


def mirror_camera(camera: Tensor) -> Tensor:
    """Camera [..., 2] = (pitch, yaw) of the left-right mirrored scene: ``(pitch, pi - yaw)``."""
    return torch.stack([camera[..., 0], math.pi - camera[..., 1]], dim=-1)


def mirror_pose(pose: Tensor) -> Tensor:
    """Pose [..., 6, 3] (ZYX Euler of joints 12..17) of the mirrored body: swap 13/14 and 16/17, negate Z and Y."""
    signs = pose.new_tensor(POSE_MIRROR_SIGNS)
    return pose[..., list(POSE_MIRROR_JOINTS), :] * signs


def flip_image(image: Tensor) -> Tensor:
    """Mirror an image [..., C, H, W] left-right."""
    return torch.flip(image, dims=(-1,))


def flip_labels(labels: dict[str, Tensor]) -> dict[str, Tensor]:
    """Labels of the mirrored image: camera and pose mirrored; betas, id and expression unchanged (see module doc)."""
    out = dict(labels)
    if "camera" in out:
        out["camera"] = mirror_camera(out["camera"])
    if "pose" in out:
        out["pose"] = mirror_pose(out["pose"])
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def _read_rgb(file: Path, size: int) -> Tensor:
    """A PNG as float32 [3, size, size] in [-1, 1]; transparency composited over white."""
    try:
        with Image.open(file, formats=["PNG"]) as im:
            if im.has_transparency_data:
                im = Image.alpha_composite(Image.new("RGBA", im.size, (*BACKGROUND_RGB, 255)), im.convert("RGBA"))
            rgb = np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise DatasetError(f"{file}: missing; run check_dataset for the full list") from None
    except PNG_ERRORS as e:
        raise DatasetError(f"{file}: corrupt (cannot decode: {e}); run check_dataset for the full list") from e
    if rgb.shape != (size, size, 3):
        h, w = rgb.shape[:2]
        raise DatasetError(f"{file}: size {w}x{h}, expected {size}x{size}; run check_dataset for the full list")
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


class PortraitDataset(Dataset):
    """Portraits, face crops and labels of a dataset folder (format: :mod:`aniportrait.data.format`).

    Args:
        path: the dataset folder.
        flip: mirror each item left-right with probability 1/2, labels included (module docstring). Default False.
        seed: seed of the flip decisions (:func:`flip_decision`).
        check: run :func:`check_dataset` first and raise :class:`DatasetError` with the first problems. False skips
            the image checks (labels and dataset.json are still validated); then a bad image raises when loaded.

    Example:
        >>> ds = PortraitDataset("data/shhq-hs", flip=True, seed=0)  # doctest: +SKIP
        >>> item = ds[0]; item["image"].shape, item["pose"].shape  # doctest: +SKIP
        (torch.Size([3, 512, 512]), torch.Size([6, 3]))
    """

    def __init__(self, path: str | Path, *, flip: bool = False, seed: int = 0, check: bool = True):
        self.path = Path(path)
        if check:
            check_dataset(self.path).raise_for_problems()
        self.meta = read_meta(self.path)
        self.ids, labels = load_labels(self.path)
        if self.meta["count"] != len(self.ids):
            raise DatasetError(
                f"{self.path / META_FILE}: count is {self.meta['count']} but {LABELS_FILE} has {len(self.ids)} ids"
            )
        self.labels = labels  # name -> float32 numpy [N, ...]
        self.image_size: int = self.meta["image_size"]
        self.face_size: int = self.meta["face_size"]
        self.flip = flip
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def label_digest(self) -> str:
        """SHA-256 of the ids and labels (their values, not the file's bytes): what a resumed training run checks to
        know it was given the dataset it started on."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.ids).encode())
        for key in sorted(self.labels):
            array = np.ascontiguousarray(self.labels[key], dtype=np.float32)
            digest.update(f"{key}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def set_epoch(self, epoch: int) -> None:
        """Select the flips of ``epoch`` (see :func:`flip_decision`)."""
        self.epoch = int(epoch)

    def flips(self, index: int) -> bool:
        """Whether ``self[index]`` is mirrored in the current epoch."""
        return self.flip and flip_decision(self.seed, self.epoch, index)

    def get(self, index: int, *, flip: bool | None = None) -> dict[str, Tensor | int]:
        """Item ``index``; ``flip`` forces (True/False) or leaves to :meth:`flips` (None) the mirroring."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        index = index % len(self)
        flipped = self.flips(index) if flip is None else bool(flip)
        stem = self.ids[index]
        item: dict = {
            "image": _read_rgb(self.path / IMAGES_DIR / f"{stem}{IMAGE_EXT}", self.image_size),
            "face": _read_rgb(self.path / FACES_DIR / f"{stem}{IMAGE_EXT}", self.face_size),
        }
        item.update({k: torch.from_numpy(v[index].copy()) for k, v in self.labels.items()})
        if flipped:
            item["image"], item["face"] = flip_image(item["image"]), flip_image(item["face"])
            item = flip_labels(item)
        item["index"] = index
        item["flipped"] = torch.tensor(flipped)
        return item

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        return self.get(index)

    def rows(self, indices, keys=None) -> dict[str, Tensor]:
        """The unmirrored items ``indices`` stacked: key -> [len(indices), ...] for the images (``image``, ``face``)
        and every label, or only ``keys``."""
        items = [self.get(int(i), flip=False) for i in indices]
        keys = ("image", "face", *self.labels) if keys is None else keys
        return {key: torch.stack([item[key] for item in items]) for key in keys}


# ---------------------------------------------------------------------------------------------------------------------
# Loader


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = True,
    distributed: bool = False,
    *,
    num_replicas: int | None = None,
    rank: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` whose order is a function of ``seed`` (and the epoch).

    Without ``distributed`` the shuffle order comes from a ``torch.Generator`` seeded with ``seed``: a new loader with
    the same seed yields the same batches, and successive passes over one loader differ. With ``distributed`` a
    ``DistributedSampler(shuffle, seed, drop_last)`` splits the data over ``num_replicas`` ranks (default: from the
    initialised process group); call :func:`set_epoch` before each epoch so that it reshuffles.

    Args:
        dataset: usually a :class:`PortraitDataset`.
        batch_size: items per batch (per rank when distributed).
        shuffle: visit items in a seeded random order.
        seed: seed of the order.
        num_workers: loader processes (0 loads in the main process).
        drop_last: drop the last incomplete batch (the training default: every batch has ``batch_size`` items).
        distributed: use a ``DistributedSampler``.
        num_replicas, rank: passed to ``DistributedSampler`` (None: from ``torch.distributed``).
        pin_memory: pin batches for faster host-to-GPU copies.

    Returns:
        A ``torch.utils.data.DataLoader`` with the default collate (dict of stacked tensors).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
    generator = torch.Generator().manual_seed(int(seed))
    sampler = None
    if distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=int(seed), drop_last=drop_last
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        pin_memory=pin_memory,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's ``DistributedSampler`` and dataset (flips) which epoch starts. Call before iterating."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
