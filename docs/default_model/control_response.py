"""Measure how much each control changes the built-in default's frame, and where (the model card's numbers).

Seed 0, frontal camera, psi 0.7. For each control, the mean absolute pixel change (on the [-1, 1] scale) of the
128x128 frame against the rest frame: whole image, upper half, bottom quarter. Writes control_response.json beside
this script.

    python docs/default_model/control_response.py
"""

import json
import math
import os
import platform
from pathlib import Path

import torch

from aniportrait import pretrained
from aniportrait.models.generator import sample_identity_latents

FRONT = (math.pi / 2, math.pi / 2)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    generator, metadata, valid_index = pretrained.builtin_generator()
    body = pretrained.body_for_checkpoint(metadata, valid_index, None)
    latents = sample_identity_latents(generator.config, [0], id_bank=generator.id_bank)
    with torch.no_grad():
        identity = generator.prepare_identity(*latents, psi=0.7, impl="ref")

    def frame(camera=FRONT, pose=None, expression=None):
        with torch.no_grad():
            return generator.render_frame(
                identity,
                body,
                torch.tensor([camera], dtype=torch.float32),
                torch.zeros(1, 6, 3) if pose is None else pose[None],
                torch.zeros(1, 64) if expression is None else expression[None],
                impl="ref",
            )["image"][0]

    base = frame()
    side = base.shape[-1]
    head, shoulders, mouth = torch.zeros(6, 3), torch.zeros(6, 3), torch.zeros(64)
    head[3, 1] = 0.5  # head (joint 15) yaw, rad
    shoulders[4:, 0] = 0.3  # both shoulders (joints 16, 17) about z, rad
    mouth[0] = 3.0  # expression coefficient 0: mouth open
    controls = {
        "camera yaw +0.5 rad": frame(camera=(FRONT[0], FRONT[1] + 0.5)),
        "head yaw 0.5 rad": frame(pose=head),
        "shoulders 0.3 rad": frame(pose=shoulders),
        "mouth open 3": frame(expression=mouth),
    }
    regions = {"whole": slice(None), "upper half": slice(0, side // 2), "bottom quarter": slice(side - side // 4, side)}
    report = {
        "machine": f"{os.cpu_count()}-core {_cpu_name()}, torch {torch.__version__}",
        "changes": {
            name: {r: round((image[:, rows] - base[:, rows]).abs().mean().item(), 4) for r, rows in regions.items()}
            for name, image in controls.items()
        },
    }
    out = Path(__file__).with_name("control_response.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
