"""One model's face rendered the four ways the code can render it, against the data's face crops.

For the first ``--num`` rows of a dataset (each row's labels, noise 0), each model renders the 64x64 face view
(docs/training/README.md, section 34):

- ``field``: stage 1's face view, RadianceNet evaluated at the view's own intersections (what the fit trains);
- ``field_at_lookup``: the same at the intersections moved to where a coarse-texture lookup shows them (x and y
  scaled by N / (N - 1) about the texture box's centre; ``face_at_lookup``);
- ``fine_textures_S``: stage 1's face view read from fine textures of side S (``face_textures``; S = 128 is the
  model's own side, 256 and 512 the same field sampled more finely);
- ``stage2``: the face as evaluation renders it (traced at 16x16, intersections upsampled x4, fine textures).

Per path: the face L1 against the data's crop, the L1 against the ``fine_textures_128`` face, and the eye band's
detail relative to the data's (docs/training/eye_probe/rows.py). The sheet shows, per row, the data's face and the
``field``, ``fine_textures_128`` and ``stage2`` faces of each model.

With ``--fit-rows N`` the rows are the first ``--num`` of the N that a reconstruction fit of N images (seed 0,
``recon_images=N``) draws from DATA, instead of DATA's first rows: the images a probe of ``probe.sh`` was fitted to.

    python docs/training/texel_centres/face_paths.py --data DATA --model NAME=FILE [--model ...] [--num 4]
        [--fit-rows N] [--sheet PNG] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

import aniportrait

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eye_probe"))
from rows import detail, first_rows, save_sheet

FACE = 64


@torch.no_grad()
def face_paths(checkpoint: str, data: dict) -> dict[str, torch.Tensor]:
    portrait = aniportrait.load(checkpoint, device="cpu")
    generator, body = portrait.generator, portrait.body
    generator.eval()
    n = data["face"].shape[0]
    labels = (data["id"], torch.zeros(n, generator.config.z_noise_dim))
    labels += tuple(data[key] for key in ("betas", "expression", "camera", "pose"))

    def face(**options) -> torch.Tensor:
        return generator.render_train(body, *labels, face_size=FACE, **options)["face"].clamp(-1, 1)

    faces = {"field": face(), "field_at_lookup": face(face_at_lookup=True)}
    config = generator.config
    for side in (config.hr_img_size, 2 * config.hr_img_size, 4 * config.hr_img_size):
        finer = dataclasses.replace(config)
        object.__setattr__(finer, "hr_img_size", side)  # only the fine textures' side; the config checks 4 x lr
        object.__setattr__(generator, "config", finer)
        faces[f"fine_textures_{side}"] = face(face_textures=True)
        object.__setattr__(generator, "config", config)
    faces["stage2"] = face(stage=2)
    return faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=generator file")
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--fit-rows", type=int, default=None, help="the rows a fit of this many images draws")
    parser.add_argument("--sheet", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = first_rows(args.data, args.num, args.fit_rows)
    truth = data["face"].float()
    result = {"data": str(args.data), "num": len(truth), "fit_rows": args.fit_rows, "face_size": FACE, "models": {}}
    columns = [truth]
    for spec in args.model:
        name, path = spec.split("=", 1)
        faces = face_paths(path, data)
        own = faces[next(key for key in faces if key.startswith("fine_textures_"))]
        result["models"][name] = {"checkpoint": path}
        for key, value in faces.items():
            result["models"][name][key] = {
                "face_l1": round(float((value - truth).abs().mean()), 4),
                "l1_vs_fine_textures": round(float((value - own).abs().mean()), 4),
                "eye_band_detail_vs_data": round(float(detail(value).mean() / detail(truth).mean()), 3),
            }
        columns += [faces["field"], own, faces["stage2"]]
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.sheet:
        save_sheet(columns, len(truth), 2, args.sheet)


if __name__ == "__main__":
    main()
