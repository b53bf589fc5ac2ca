"""Models' faces next to the data's, row by row, and how sharp their eyes are.

For the first ``--num`` rows of a dataset, each model renders the row's labels (identity label, body shape,
expression, camera, pose; noise N(0, I) from seed 0) as evaluation does (stage 2's 64x64 face view); the sheet shows
the data's face crop, then each model's, one row per dataset row, enlarged. Per model it reports the face view's L1
against the data's crop, the same over the eye band (rows 26-41 of 64, where the eyes of figures at rest lie), and
the eye band's detail: the mean absolute difference between the band and its 3x3 box blur, as a fraction of the
data's (1 = as sharp as the data; a blur of the data scores below 1).

    python docs/training/eye_probe/rows.py --data DATA --model NAME=FILE [--model ...] [--num 16] [--sheet PNG] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import aniportrait
from aniportrait.data.dataset import PortraitDataset
from aniportrait.train.loop import reconstruction_rows

EYE_BAND = slice(26, 42)


def detail(faces: torch.Tensor) -> torch.Tensor:
    """Per row: the mean absolute difference between the eye band and its 3x3 box blur."""
    blurred = F.avg_pool2d(F.pad(faces, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (faces - blurred)[:, :, EYE_BAND].abs().mean(dim=(1, 2, 3))


def first_rows(data: str, num: int, fit_rows: int | None = None) -> dict:
    """The labels and images of a dataset's first ``num`` rows (one CPU thread for what follows); with ``fit_rows``
    N, the first ``num`` of the N rows that a reconstruction fit of N images (seed 0) draws."""
    torch.set_num_threads(1)
    dataset = PortraitDataset(data, check=False)
    if fit_rows is None:
        return dataset.rows(range(min(num, len(dataset))))
    return dataset.rows(reconstruction_rows(0, fit_rows, len(dataset))[:num])


def save_sheet(columns: list[torch.Tensor], rows: int, zoom: int, path: str) -> None:
    """A PNG of the first ``rows`` rows of ``columns`` (faces [N, 3, H, W] in [-1, 1]) side by side, enlarged."""
    grid = torch.cat([torch.cat([column[i] for column in columns], dim=2) for i in range(rows)], dim=1)
    pixels = ((grid + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    height, width = pixels.shape[:2]
    Image.fromarray(np.ascontiguousarray(pixels)).resize((width * zoom, height * zoom), Image.NEAREST).save(path)


@torch.no_grad()
def render_faces(checkpoint: str, data: dict) -> torch.Tensor:
    portrait = aniportrait.load(checkpoint, device="cpu")
    generator, body = portrait.generator, portrait.body
    generator.eval()
    n = data["face"].shape[0]
    noise = torch.randn(n, generator.config.z_noise_dim, generator=torch.Generator().manual_seed(0))
    faces = []
    for start in range(0, n, 8):
        part = slice(start, start + 8)
        out = generator.render_train(
            body,
            data["id"][part],
            noise[part],
            *(data[key][part] for key in ("betas", "expression", "camera", "pose")),
            face_size=generator.default_face_size(2),
            stage=2,
        )
        faces.append(out["face"].clamp(-1, 1))
    return torch.cat(faces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=generator file")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--sheet", default=None, help="the PNG to write (the first 8 rows)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = first_rows(args.data, args.num)
    truth = data["face"].float()
    result = {"data": str(args.data), "num": len(truth), "eye_band_rows": [EYE_BAND.start, EYE_BAND.stop], "models": {}}
    columns = [truth]
    for spec in args.model:
        name, path = spec.split("=", 1)
        faces = render_faces(path, data)
        columns.append(faces)
        result["models"][name] = {
            "checkpoint": path,
            "face_l1": round(float((faces - truth).abs().mean()), 4),
            "eye_band_l1": round(float((faces - truth)[:, :, EYE_BAND].abs().mean()), 4),
            "eye_band_detail_vs_data": round(float(detail(faces).mean() / detail(truth).mean()), 3),
        }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.sheet:
        save_sheet(columns, min(8, len(truth)), 3, args.sheet)


if __name__ == "__main__":
    main()
