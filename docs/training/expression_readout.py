"""Where the estimator reads the expression from, and whether a model's renders carry it.

For ``--num`` rows of a held-out synthetic dataset, the built-in estimator reads the four animated expression
coefficients from:

- the data's own portraits and face crops, and the same degraded (area-downsampled by 2, 4 and 8, then bilinearly
  upsampled back), which bounds what a blurred render could still convey;
- a model's stage-2 renders of the same rows (their identity label, body shape, expression, camera and pose, noise
  N(0, I) from seed 0);
- mixed pairs: the model's portrait with the data's face crop, and the data's portrait with the model's face view.

Reported per coefficient: the mean absolute error and the correlation of the read value with the true one (a
reading that ignores the image has correlation 0; its error is then about the coefficient's spread).

    OMP_NUM_THREADS=1 python docs/training/expression_readout.py --data HELDOUT [--checkpoint FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from aniportrait.checkpoint import load_generator
from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval.estimator import builtin_estimator
from aniportrait.pretrained import body_for_checkpoint, builtin_checkpoint_path

READ = 4  # expression coefficients the synthetic world animates


def degrade(x: torch.Tensor, factor: int) -> torch.Tensor:
    side = x.shape[-1]
    small = F.interpolate(x, size=side // factor, mode="area")
    return F.interpolate(small, size=side, mode="bilinear", align_corners=False)


def readout(read: torch.Tensor, true: torch.Tensor) -> dict:
    read = read[:, :READ]
    corr = [torch.corrcoef(torch.stack([read[:, k], true[:, k]]))[0, 1].item() for k in range(READ)]
    return {
        "mae": [round(v, 4) for v in (read - true).abs().mean(0).tolist()],
        "correlation": [round(c, 3) for c in corr],
    }


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out synthetic dataset")
    parser.add_argument("--checkpoint", default=None, help="generator file (default: the built-in default)")
    parser.add_argument("--num", type=int, default=128)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    estimator = builtin_estimator()
    dataset = PortraitDataset(args.data, check=False)
    data = dataset.rows(range(min(args.num, len(dataset))))
    images, faces, expression = data["image"], data["face"], data["expression"]
    true = expression[:, :READ]
    result: dict = {
        "data": str(Path(args.data).name),
        "num": len(images),
        "spread": {
            "std": [round(v, 4) for v in true.std(0).tolist()],
            "mae_of_the_mean": [round(v, 4) for v in (true - true.mean(0)).abs().mean(0).tolist()],
        },
        "data_readout": {},
    }
    for factor in (1, 2, 4, 8):
        read = estimator(
            degrade(images, factor) if factor > 1 else images, degrade(faces, factor) if factor > 1 else faces
        )
        result["data_readout"][f"degraded x{factor}"] = readout(read["expression"], true)

    path = args.checkpoint or builtin_checkpoint_path()
    generator, metadata, valid_index = load_generator(path)
    generator.eval()
    body = body_for_checkpoint(metadata, valid_index, None)
    noise = torch.randn(len(images), generator.config.z_noise_dim, generator=torch.Generator().manual_seed(0))
    labels = [data[key] for key in ("id", "betas", "expression", "camera", "pose")]
    renders, render_faces = [], []
    for start in range(0, len(images), 8):
        part = slice(start, start + 8)
        out = generator.render_train(
            body,
            labels[0][part],
            noise[part],
            *(x[part] for x in labels[1:]),
            face_size=generator.default_face_size(2),
            stage=2,
        )
        renders.append(out["image"].clamp(-1, 1))
        render_faces.append(out["face"].clamp(-1, 1))
    renders, render_faces = torch.cat(renders), torch.cat(render_faces)
    result["checkpoint"] = Path(path).name
    result["model_readout"] = {
        "renders": readout(estimator(renders, render_faces)["expression"], true),
        "render portrait, data face": readout(estimator(renders, faces)["expression"], true),
        "data portrait, render face": readout(estimator(images, render_faces)["expression"], true),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
