"""A synthetic head-and-shoulders dataset in the on-disk format, rendered fast from a procedural figure.

``aniportrait data synth`` uses :func:`synthesize` to write a dataset (:mod:`aniportrait.data.format`) whose labels
are exact by construction, so the whole training pipeline can run and be tested without SHHQ-HS.

This module writes the dataset. The figures come from three sibling modules (their names that other code imports
from here are re-exported):

- :mod:`aniportrait.data.synth_labels`: the labels (ranges, the identity code, expression meanings), :class:`Figures`
  and :func:`sample_figures`;
- :mod:`aniportrait.data.synth_scene`: the 3D scene of ellipsoids built from a figure, the figure's shape and the part
  ids (:data:`PART`);
- :mod:`aniportrait.data.synth_render`: ray casting and shading, :func:`render_figures`.

Determinism: labels of image i come from ``numpy.random.default_rng([seed, i])`` (independent of n and batching);
rendering is plain float32 torch on the CPU in fixed batches, and ``labels.npz`` is written with fixed zip
timestamps, so a run is bitwise reproducible on a machine.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from aniportrait import cameras
from aniportrait.data import format as fmt
from aniportrait.data.dataset import DatasetError
from aniportrait.data.synth_labels import (
    CAMERA_PITCH_RANGE,
    CAMERA_YAW_RANGE,
    EXPRESSION_EFFECTS,
    HAIR_STYLES,
    ID_LAYOUT,
    POSE_RANGES,
    Figures,
    sample_figures,
)
from aniportrait.data.synth_render import BATCH, render_figures
from aniportrait.data.synth_scene import PART
from aniportrait.userfiles import output_folder_problem

__all__ = [
    "CAMERA_PITCH_RANGE",
    "CAMERA_YAW_RANGE",
    "EXPRESSION_EFFECTS",
    "HAIR_STYLES",
    "ID_LAYOUT",
    "PART",
    "POSE_RANGES",
    "Figures",
    "render_figures",
    "sample_figures",
    "synthesize",
]

# Torch threads while synthesize() renders: one core renders, the others encode PNGs (zlib releases the GIL). This
# also keeps throughput steady on a busy machine, where multi-threaded small ops mostly wait on each other.
RENDER_THREADS = 1
PNG_WORKERS = 2


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def _write_png(path: str, pixels: np.ndarray) -> None:
    Image.fromarray(pixels, "RGB").save(path, format="PNG", compress_level=6)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """numpy.savez with fixed zip timestamps, so the file is byte-identical for identical arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(value), allow_pickle=False)


def _check_target(out: Path) -> None:
    """Refuse an output folder that exists with content, or that cannot be created (its nearest existing ancestor is
    a file or not writable)."""
    if str(out) in ("", "."):
        raise DatasetError("the output folder is the current folder; name a new folder")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder; choose a new output folder")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty; choose a new output folder or remove it first")
    problem = output_folder_problem(out)
    if problem:
        raise DatasetError(f"cannot create {out}: {problem}")


def synthesize(
    out_dir: str | os.PathLike,
    n: int,
    res: int = 128,
    face_res: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset of ``n`` figures to ``out_dir`` (format: :mod:`aniportrait.data.format`).

    Rendering goes to a temporary sibling folder that is renamed to ``out_dir`` at the end, so an interrupted or
    failed run leaves no partial dataset behind.

    Args:
        out_dir: the new dataset folder; must not exist or be empty.
        n: number of images (>= 1).
        res: portrait side in pixels; face_res: face crop side (default ``res // 2``).
        seed: the same seed gives bitwise-identical files.
        progress: show a tqdm progress bar.

    Returns:
        The dataset folder as a Path.

    Raises:
        DatasetError (a ValueError): bad arguments, or ``out_dir`` exists and is not empty.

    Example:
        >>> synthesize("data/synth", 1000, res=128)  # doctest: +SKIP
    """
    face_res = res // 2 if face_res is None else face_res
    for name, value in (("n", n), ("res", res), ("face_res", face_res)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DatasetError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    _check_target(out)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as err:  # e.g. a read-only file system
        raise DatasetError(f"cannot create {out}: {err.strerror or err}; choose another output folder") from None
    threads = torch.get_num_threads()
    torch.set_num_threads(RENDER_THREADS)
    try:
        (tmp / fmt.IMAGES_DIR).mkdir()
        (tmp / fmt.FACES_DIR).mkdir()
        digits = max(6, len(str(n - 1)))
        ids = [f"{i:0{digits}d}" for i in range(n)]
        labels = {key: [] for key in fmt.LABEL_SHAPES}
        with (
            ThreadPoolExecutor(max_workers=PNG_WORKERS) as pool,
            tqdm(total=n, disable=not progress, desc="synth", unit="img") as bar,
        ):
            pending = []
            for start in range(0, n, BATCH):
                fig = sample_figures(seed, min(BATCH, n - start), start)
                images, faces = render_figures(fig, res, face_res)
                for key, value in fig.labels().items():
                    labels[key].append(value)
                for j in range(len(fig)):
                    stem = ids[start + j] + fmt.IMAGE_EXT
                    pending.append(pool.submit(_write_png, str(tmp / fmt.IMAGES_DIR / stem), images[j]))
                    pending.append(pool.submit(_write_png, str(tmp / fmt.FACES_DIR / stem), faces[j]))
                for future in pending[: -2 * len(fig)]:  # keep at most two batches in flight
                    future.result()
                pending = pending[-2 * len(fig) :]
                bar.update(len(fig))
            for future in pending:
                future.result()
        arrays = {"ids": np.array(ids)}
        arrays.update({key: np.concatenate(value).astype(np.float32) for key, value in labels.items()})
        _write_npz(tmp / fmt.LABELS_FILE, arrays)
        meta = {
            "format": fmt.FORMAT,
            "version": fmt.VERSION,
            "image_size": int(res),
            "face_size": int(face_res),
            "count": int(n),
            "source": f"aniportrait.data.synth (procedural figure on the procedural SMPL rig, seed {int(seed)})",
            "face_camera": {
                "kind": "aniportrait.cameras.face_camera",
                "distance": cameras.FACE_CAMERA_DISTANCE,
                "fov_degrees": cameras.FACE_CAMERA_FOV_DEGREES,
                "center_offset": [float(c) for c in cameras.FACE_CENTER_OFFSET],  # from the posed head joint J15
                "view": "from the portrait camera's direction, up = head up",
            },
        }
        (tmp / fmt.META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _check_target(out)  # someone may have filled it meanwhile
        if out.is_dir():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    return out
