"""The Python API: load a model once, prepare an identity once, render as many frames of it as you like.

    import aniportrait

    portrait = aniportrait.load()  # the built-in default, on CUDA when there is one
    person = portrait.identity(seed=3)  # the per-identity work (textures and super-resolution), once
    frames = portrait.render(person, camera=[[1.57, 1.3], [1.57, 1.8]], expression=smile, output="numpy")

``render`` takes each control for one frame or for F frames (a leading axis of 1 broadcasts) and returns F
frames: a float tensor [F, 3, H, W] in [-1, 1] (``output="tensor"``), uint8 arrays [F, H, W, 3] with exactly the
rounding of ``aniportrait render``'s PNG frames (``"numpy"``), or a list of PIL images (``"pil"``). Controls are
checked as the command line checks keyframe files: shapes, NaN and infinity, plausible ranges. ``psi``,
``sr_precision`` (of ``identity``), ``precision`` and ``sampling`` (of ``render``) default to the checkpoint's
rendering settings (``portrait.rendering``), as in ``aniportrait render``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from aniportrait.config import DEFAULT_RENDERING, RenderingConfig
from aniportrait.kernels._registry import Impl
from aniportrait.render import keyframes as kf

Output = Literal["tensor", "numpy", "pil"]
OUTPUTS = ("tensor", "numpy", "pil")
MAX_FRAMES_PER_CALL = 10_000  # frames are rendered one at a time, but the output is held in memory


def device_problem(device: str | torch.device) -> str | None:
    """Why ``device`` cannot be used here (one clause), or None; ``"auto"`` always can."""
    if str(device) == "auto":
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        return "unknown device; use auto, cpu, cuda or cuda:N"
    if parsed.type not in ("cpu", "cuda"):
        return "only cpu and cuda are supported"
    if parsed.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device is available; use cpu"
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        return f"there are only {torch.cuda.device_count()} CUDA devices"
    return None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other values are checked (cpu, cuda, cuda:N)."""
    problem = device_problem(device)
    if problem is not None:
        raise ValueError(f"device {str(device)!r}: {problem}")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class PreparedIdentity:
    """One identity with its per-identity cache; make it with :meth:`Portrait.identity`."""

    seed: int
    psi: float
    cache: object  # aniportrait.models.generator.Identity (batch 1)


class Portrait:
    """A loaded generator and the body it was made for. Use :func:`load` to make one."""

    def __init__(
        self,
        generator,
        body,
        metadata: dict[str, str],
        device: torch.device,
        impl: Impl,
        rendering: RenderingConfig = DEFAULT_RENDERING,
    ) -> None:
        self.generator = generator
        self.body = body
        self.metadata = metadata
        self.device = device
        self.impl = impl
        # The checkpoint's rendering defaults (psi, frames per keyframe, fps, precisions, sampling).
        self.rendering = rendering

    @property
    def resolution(self) -> int:
        """Side of the rendered frames (``output_size="hr"``)."""
        return self.generator.config.hr_img_size

    @torch.no_grad()
    def identity(
        self, seed: int, psi: float | None = None, sr_precision: Literal["fp32", "bf16"] | None = None
    ) -> PreparedIdentity:
        """The identity of ``seed`` (as ``aniportrait render --seeds``) at truncation ``psi`` in [0, 1], its
        super-resolution run in ``sr_precision`` (``"fp32"`` or ``"bf16"``); both default to the checkpoint's
        (``self.rendering``)."""
        from aniportrait.models.generator import sample_identity_latents

        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= kf.MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {kf.MAX_SEED}], got {seed!r}")
        psi = self.rendering.psi if psi is None else psi
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0.0 <= float(psi) <= 1.0:
            raise ValueError(f"psi must be a number in [0, 1], got {psi!r}")
        latents = sample_identity_latents(self.generator.config, [int(seed)], id_bank=self.generator.id_bank)
        z_id, z_noise, betas = (t.to(self.device) for t in latents)
        sr_precision = self.rendering.sr_precision if sr_precision is None else sr_precision
        cache = self.generator.prepare_identity(
            z_id, z_noise, betas, psi=float(psi), impl=self.impl, sr_precision=sr_precision
        )
        return PreparedIdentity(int(seed), float(psi), cache)

    @torch.no_grad()
    def render(
        self,
        identity: PreparedIdentity,
        camera=None,
        pose=None,
        expression=None,
        *,
        output: Output = "tensor",
        output_size: Literal["hr", "lr"] = "hr",
        precision: Literal["fp32", "bf16-deform", "bf16"] | None = None,
        sampling: Literal["exact", "adaptive"] | None = None,
    ):
        """Render frames of ``identity``.

        Args:
            identity: from :meth:`identity`.
            camera: (pitch, yaw) in radians, [2] or [F, 2]; default the frontal camera (pi/2, pi/2).
            pose: joint Euler offsets, [6, 3] or [F, 6, 3]; default zeros (the rest pose).
            expression: expression coefficients, [64] or [F, 64]; default zeros (neutral).
            output: ``"tensor"``, ``"numpy"`` or ``"pil"`` (see the module docstring).
            output_size: ``"hr"`` (the model's output side) or ``"lr"`` (the ray grid's side, before super-resolution).
            precision: ``"fp32"`` (exact), ``"bf16-deform"`` (DeformNet under bfloat16 autocast, the scalar field
                in fp32) or ``"bf16"`` (DeformNet and SampleNet under bfloat16); default the checkpoint's,
                ``self.rendering.precision``.
            sampling: ``"exact"`` (the scalar field at every fine sample) or ``"adaptive"`` (coarse to fine, only
                where a manifold's first crossing can be); default the checkpoint's, ``self.rendering.sampling``.

        Returns:
            F frames in the ``output`` format.
        """
        if not isinstance(identity, PreparedIdentity):
            raise TypeError("identity must come from Portrait.identity(seed, psi)")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if output_size not in ("hr", "lr"):
            raise ValueError(f"output_size must be 'hr' or 'lr', got {output_size!r}")
        controls = _controls(camera, pose, expression)
        precision = self.rendering.precision if precision is None else precision
        sampling = self.rendering.sampling if sampling is None else sampling
        frames = []
        for i in range(len(controls)):
            result = self.generator.render_frame(
                identity.cache,
                self.body,
                torch.from_numpy(controls.camera[i : i + 1]).to(self.device),
                torch.from_numpy(controls.pose[i : i + 1]).to(self.device),
                torch.from_numpy(controls.expression[i : i + 1]).to(self.device),
                impl=self.impl,
                precision=precision,
                sampling=sampling,
                hr=output_size == "hr",
            )
            frames.append(result["image" if output_size == "hr" else "image_lr"][0])
        images = torch.stack(frames)
        if output == "tensor":
            return images
        from aniportrait.images import to_uint8

        arrays = np.stack([to_uint8(image) for image in images])
        if output == "numpy":
            return arrays
        from PIL import Image

        return [Image.fromarray(a) for a in arrays]


def _as_array(name: str, value) -> np.ndarray:
    """A control given as a number sequence, numpy array or tensor -> numpy with a leading frame axis."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise kf.KeyframeError(f"{name} must be a numeric array of shape {kf.SHAPE_TEXT[name]}") from None
    if array.ndim == len(kf.SHAPES[name]):
        array = array[None]
    return array


def _controls(camera, pose, expression) -> kf.Keyframes:
    """Validate the three controls and broadcast them to a common frame count F."""
    given = {"camera": camera, "pose": pose, "expression": expression}
    arrays = {name: _as_array(name, value) for name, value in given.items() if value is not None}
    counts = {len(a) for a in arrays.values() if a.ndim >= 1} - {1}
    if len(counts) > 1:
        shown = ", ".join(f"{name} {len(a)}" for name, a in arrays.items())
        raise kf.KeyframeError(f"the controls have different frame counts ({shown}); give F or 1 rows of each")
    frames = counts.pop() if counts else 1
    if frames > MAX_FRAMES_PER_CALL:
        raise kf.KeyframeError(f"{frames:,} frames in one call; at most {MAX_FRAMES_PER_CALL:,}: render in chunks")
    defaults = kf.neutral(1)
    out = {}
    for name in ("camera", "pose", "expression"):
        array = arrays.get(name, getattr(defaults, name))
        array = kf.validate(name, array, name)
        out[name] = np.array(np.broadcast_to(array, (frames, *kf.SHAPES[name])))  # a writable copy
    return kf.Keyframes(**out)


def load(
    checkpoint: str | os.PathLike | None = None,
    smpl: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    impl: Impl = "auto",
) -> Portrait:
    """Load a model for rendering.

    Args:
        checkpoint: one of our safetensors checkpoints (``train`` output or ``convert-official``); None for the
            built-in default.
        smpl: the SMPL model file, for checkpoints made for SMPL (or set ``ANIPORTRAIT_SMPL``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        impl: the ops' implementation: ``"auto"`` (Triton on CUDA, the PyTorch reference on CPU), ``"ref"`` or
            ``"triton"``.

    Raises:
        ValueError: a bad device or impl; a missing, corrupt or mismatched checkpoint or SMPL file (their error
            classes are ``ValueError`` subclasses).
    """
    from aniportrait.checkpoint import load_generator, rendering_config
    from aniportrait.kernels._registry import resolve_impl
    from aniportrait.pretrained import body_for_checkpoint, builtin_generator

    device = resolve_device(device)
    if impl not in ("auto", "ref", "triton"):
        raise ValueError(f"impl must be auto, ref or triton, got {impl!r}")
    if impl == "triton":
        try:
            resolve_impl("aniportrait.load", impl, torch.empty(0, device=device))
        except RuntimeError as err:
            raise ValueError(str(err).splitlines()[0]) from None
    if checkpoint is None:
        generator, metadata, valid_index = builtin_generator(device)
    else:
        generator, metadata, valid_index = load_generator(checkpoint, device=device)
    body = body_for_checkpoint(metadata, valid_index, None if smpl is None else os.fspath(smpl), device)
    rendering = rendering_config(metadata, "the built-in default" if checkpoint is None else checkpoint)
    return Portrait(generator, body, metadata, device, impl, rendering)
