"""How much a model's render follows its identity label's shirt colour, against how much it follows its noise.

The synthetic world writes each figure's appearance into its identity label (``data/synth_labels.py``: shirt colour
in ``id[9:12]`` as 2 rgb - 1), so a model that reads the label changes its shirt with those three numbers, and its
noise ``z_noise`` has nothing left to say. For ``--num`` held-out label rows, rendered at stage 1 (ray grid side,
face view at that side too) from their own camera, pose and expression:

- ``shirt``: the mean absolute change of the bottom quarter when the shirt code goes from pure red to pure green,
  and the mean bottom-quarter colour (r, g, b on [-1, 1]) with a red, a green and a blue shirt code;
- ``noise``: the mean absolute change of the whole image between two noise draws.

    OMP_NUM_THREADS=1 python docs/training/label_response.py --data HELDOUT --model NAME=FILE [...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aniportrait.checkpoint import load_generator
from aniportrait.data.dataset import PortraitDataset
from aniportrait.data.synth_labels import ID_LAYOUT
from aniportrait.pretrained import body_for_checkpoint

SHIRTS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}


@torch.no_grad()
def response(path: str, rows: list[dict]) -> dict:
    generator, metadata, valid_index = load_generator(path)
    generator.eval()
    body = body_for_checkpoint(metadata, valid_index, None)
    side = generator.config.lr_img_size
    labels = {
        key: torch.stack([row[key] for row in rows]).float() for key in ("id", "betas", "expression", "camera", "pose")
    }
    n = len(rows)
    draws = [torch.randn(n, generator.config.z_noise_dim, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    controls = [labels[key] for key in ("betas", "expression", "camera", "pose")]

    def render(z_id, noise):
        return generator.render_train(body, z_id, noise, *controls, face_size=side)["image"]

    bottom = slice(side - side // 4, side)
    shirt_images = {}
    for name, rgb in SHIRTS.items():
        z_id = labels["id"].clone()
        z_id[:, ID_LAYOUT["shirt_rgb"]] = torch.tensor(rgb)
        shirt_images[name] = render(z_id, draws[0])[..., bottom, :]
    noise_change = (render(labels["id"], draws[0]) - render(labels["id"], draws[1])).abs().mean()
    return {
        "shirt_red_to_green_bottom_quarter": round(
            float((shirt_images["red"] - shirt_images["green"]).abs().mean()), 4
        ),
        "bottom_quarter_rgb": {k: [round(v, 3) for v in x.mean((0, 2, 3)).tolist()] for k, x in shirt_images.items()},
        "noise_redraw_whole_image": round(float(noise_change), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out synthetic dataset (its label rows)")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=FILE")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = PortraitDataset(args.data, check=False)
    rows = [dataset.get(i, flip=False) for i in range(min(args.num, len(dataset)))]
    result = {"data": Path(args.data).name, "num": len(rows), "models": {}}
    for spec in args.model:
        name, _, path = spec.partition("=")
        result["models"][name] = response(path, rows)
        print(name, json.dumps(result["models"][name]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
