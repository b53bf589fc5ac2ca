"""Animated portrait videos: per seed, an identity is prepared once and every frame reuses it (gen_video.py).

Outputs per seed, in the release's naming: ``video_{seed}_rgb.mp4`` (the portrait), ``video_{seed}_rgb_lr.mp4``
(the low-resolution render) and ``video_{seed}_depth.mp4`` (inferno-coloured depth), and, on request, PNG frames
in ``frames_{seed}/``, and a ``contact_sheet.png`` (a row per seed, evenly spaced frames). Every file is written
under a temporary name and renamed when its seed (for the sheet: the last seed) is done, so an interrupted or failed
run leaves no partial output. A run killed outright (SIGKILL) leaves its hidden staging folder or temporary file; the
next render into the folder removes those whose process is gone (:mod:`aniportrait.staging`). Outputs get the modes
the umask gives ordinary files and folders.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm.auto import tqdm

from aniportrait import constants
from aniportrait.config import RenderingConfig
from aniportrait.images import to_uint8
from aniportrait.models.generator import AniPortraitGenerator, sample_identity_latents
from aniportrait.render.keyframes import Keyframes
from aniportrait.staging import atomic_write, create_dir, owned_prefix, remove_stale

VIDEO_QUALITY = 8  # imageio/ffmpeg quality, as the release's mimwrite
# Inferno colour map (an approximation of matplotlib's) as control points at 0, 1/8, ..., 1, linearly interpolated.
INFERNO = np.array(
    [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class RenderSettings:
    """How ``render_videos`` renders: truncation, frame rate, outputs and the op implementation (the defaults of
    :class:`aniportrait.config.RenderingConfig` where it has the setting)."""

    psi: float = RenderingConfig.psi
    fps: int = RenderingConfig.fps
    png: bool = False
    sheet_columns: int = 0  # frames per seed in contact_sheet.png; 0 = no sheet
    impl: str = "auto"
    precision: str = RenderingConfig.precision
    sr_precision: str = RenderingConfig.sr_precision
    sampling: str = RenderingConfig.sampling
    progress: bool = True


def depth_to_uint8(
    depth: torch.Tensor, near: float = constants.DEPTH_NEAR, far: float = constants.DEPTH_FAR
) -> np.ndarray:
    """[1, H, W] depth -> [H, W, 3] uint8 inferno colours; near is bright, far and empty pixels are dark."""
    level = (1 - (depth[0] - near) / (far - near)).clamp(0, 1).cpu().numpy() * (len(INFERNO) - 1)
    lo = np.floor(level).astype(np.int64).clip(0, len(INFERNO) - 2)
    frac = (level - lo)[..., None]
    return ((1 - frac) * INFERNO[lo] + frac * INFERNO[lo + 1]).round().astype(np.uint8)


CONTACT_SHEET = "contact_sheet.png"


def sheet_frame_indices(num_frames: int, columns: int) -> list[int]:
    """``columns`` evenly spaced frame indices from the first to the last frame (fewer if there are fewer frames)."""
    if columns <= 0:
        return []
    if columns == 1 or num_frames == 1:
        return [0]
    return sorted({round(i * (num_frames - 1) / (columns - 1)) for i in range(columns)})


def contact_sheet(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Tile rows of equally sized [H, W, 3] uint8 images on a white background with ``gap`` pixels between."""
    h, w, _ = rows[0][0].shape
    cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            sheet[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = image
    return sheet


def output_names(seed: int) -> dict[str, str]:
    return {
        "rgb": f"video_{seed}_rgb.mp4",
        "rgb_lr": f"video_{seed}_rgb_lr.mp4",
        "depth": f"video_{seed}_depth.mp4",
        "frames": f"frames_{seed}",
    }


def check_writable(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and check that files can be written there; raise ``OSError`` otherwise."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out, prefix=owned_prefix("write-test")):
        pass
    return out


def _writer(path: Path, fps: int):
    return imageio.get_writer(
        path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=VIDEO_QUALITY, macro_block_size=1
    )


@torch.no_grad()
def render_videos(
    generator: AniPortraitGenerator,
    body,
    seeds: list[int],
    frames: Keyframes,
    out_dir: str | os.PathLike,
    settings: RenderSettings = RenderSettings(),
) -> list[Path]:
    """Render one set of videos per seed.

    Args:
        generator: the generator (its device is used).
        body: the body model matching the generator.
        seeds: identity seeds.
        frames: per-frame controls (see :func:`aniportrait.render.keyframes.interpolate`).
        out_dir: existing, writable folder; stale staging entries of dead renders in it are removed first.

    Returns:
        The written paths.
    """
    device = generator.levels.device
    out = Path(out_dir)
    remove_stale(out)
    written: list[Path] = []
    camera = torch.from_numpy(frames.camera).to(device)
    pose = torch.from_numpy(frames.pose).to(device)
    expression = torch.from_numpy(frames.expression).to(device)
    bar = tqdm(total=len(seeds) * len(frames), unit="frame", disable=not settings.progress, desc="render")
    sheet_indices = set(sheet_frame_indices(len(frames), settings.sheet_columns))
    sheet_rows: list[list[np.ndarray]] = []
    for seed in seeds:
        sheet_rows.append([])
        names = output_names(seed)
        staging = Path(create_dir(out, "render", label=f"{seed}-"))
        try:
            latents = sample_identity_latents(generator.config, [seed], id_bank=generator.id_bank)
            z_id, z_noise, betas = (t.to(device) for t in latents)
            identity = generator.prepare_identity(
                z_id, z_noise, betas, psi=settings.psi, impl=settings.impl, sr_precision=settings.sr_precision
            )
            writers = {k: _writer(staging / names[k], settings.fps) for k in ("rgb", "rgb_lr", "depth")}
            if settings.png:
                (staging / names["frames"]).mkdir()
            try:
                for i in range(len(frames)):
                    result = generator.render_frame(
                        identity,
                        body,
                        camera[i : i + 1],
                        pose[i : i + 1],
                        expression[i : i + 1],
                        impl=settings.impl,
                        precision=settings.precision,
                        sampling=settings.sampling,
                    )
                    rgb = to_uint8(result["image"][0])
                    writers["rgb"].append_data(rgb)
                    writers["rgb_lr"].append_data(to_uint8(result["image_lr"][0]))
                    writers["depth"].append_data(depth_to_uint8(result["depth"][0]))
                    if settings.png:
                        imageio.imwrite(staging / names["frames"] / f"frame_{i:05d}.png", rgb)
                    if i in sheet_indices:
                        sheet_rows[-1].append(rgb)
                    bar.update()
            finally:
                for w in writers.values():
                    w.close()
            for key in ("rgb", "rgb_lr", "depth", "frames"):
                source = staging / names[key]
                if source.exists():
                    target = out / names[key]
                    if target.is_dir():
                        shutil.rmtree(target)
                    os.replace(source, target)
                    written.append(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    bar.close()
    if sheet_indices:
        sheet = contact_sheet(sheet_rows)
        atomic_write(out / CONTACT_SHEET, lambda tmp: imageio.imwrite(tmp, sheet))
        written.append(out / CONTACT_SHEET)
    return written
