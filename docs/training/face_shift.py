"""Where a model draws each band of the figure, against the data: the vertical shift per eighth of the frame.

Renders held-out label rows (as `eval` does: the rows' labels, a fresh noise per render) and, for each eighth of
the frame's height, finds the vertical shift d (in pixels of the frame, searched in quarter pixels over +-3) that
best matches the render's rows y to the data image's rows y + d (mean absolute difference of the grey images, both
upsampled x4). d < 0: the render draws that band lower than the data; a band of the head drawn lower and one of the
chin higher is a face drawn smaller than the data's. Reported for the full-size frames and for the 32x32 renders
(the data resampled to 32 on the ray grid, antialiased).

    OMP_NUM_THREADS=1 python docs/training/face_shift.py --data HELDOUT --checkpoint FILE [--num 64] --json OUT
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from checkpoint_on_data import checkpoint_on_data

from aniportrait.images import resample_grid

SEARCH = 3  # pixels each way
UP = 4  # quarter-pixel steps


def band_shifts(render: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Best vertical shift (pixels) of each eighth of ``render`` [N, 3, H, W] against ``target``."""
    r = F.interpolate(render, scale_factor=UP, mode="bilinear", align_corners=True).mean(1)
    t = F.interpolate(target, scale_factor=UP, mode="bilinear", align_corners=True).mean(1)
    height, shifts = r.shape[1], []
    for band in range(8):
        rows = torch.arange(band * height // 8, (band + 1) * height // 8)
        errors = []
        for d in range(-SEARCH * UP, SEARCH * UP + 1):
            ys = rows[(rows + d >= 0) & (rows + d < height)]
            errors.append(float((r[:, ys] - t[:, ys + d]).abs().mean()))
        shifts.append(round((int(torch.tensor(errors).argmin()) - SEARCH * UP) / UP, 2))
    return shifts


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=64)
    args, generator, body, dataset, num = checkpoint_on_data(parser)
    rows = dataset.rows(range(num), ("id", "betas", "expression", "camera", "pose", "image"))
    full, low = [], []
    for start in range(0, num, 8):
        part = slice(start, start + 8)
        n = rows["id"][part].shape[0]
        noise = torch.randn(n, generator.config.z_noise_dim, generator=torch.Generator().manual_seed(start))
        identity = generator.prepare_identity(rows["id"][part], noise, rows["betas"][part])
        out = generator.render_frame(identity, body, rows["camera"][part], rows["pose"][part], rows["expression"][part])
        full.append(out["image"])
        low.append(out["image_lr"])
    full, low = torch.cat(full), torch.cat(low)
    result = {
        "checkpoint": args.checkpoint,
        "data": args.data,
        "num": num,
        "full_size_shift_px_per_eighth": band_shifts(full, resample_grid(rows["image"], full.shape[-1])),
        "low_resolution_shift_px_per_eighth": band_shifts(
            low, resample_grid(rows["image"], low.shape[-1], antialias=True)
        ),
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
