"""Generator configurations (the release's ``sshq512``, the built-in default's ``small`` and a ``tiny`` one for
tests) and the rendering settings a model is rendered with by default.

Each is a frozen dataclass. Both travel inside our safetensors checkpoints as JSON metadata, and unknown keys are
rejected when one is read back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from aniportrait.constants import LEVELS_END, LEVELS_START


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes of the generator. The defaults are the release's ``SSHQ512_inf`` (curriculums.py)."""

    hidden_dim: int = 256  # RadianceNet width
    mapping_hidden_dim: int = 256  # RadianceNet and SR mapping width
    hidden_dim_sample: int = 128  # SampleNet (scalar field) width
    feature_dim: int = 32  # feature channels per manifold texel, fed to super-resolution with RGBA
    deform_hidden_dim: int = 128  # DeformNet width (FiLM and mapping)
    z_id_dim: int = 80  # 3DMM identity coefficients
    z_noise_dim: int = 80  # Gaussian noise
    z_exp_dim: int = 64  # 3DMM expression coefficients
    betas_dim: int = 10  # SMPL shape
    sr_nf: int = 64  # StyleRRDBNet trunk channels
    sr_nb: int = 4  # StyleRRDBNet RRDB blocks
    sr_gc: int = 32  # StyleRRDBNet growth channels
    sr_up_channels: tuple[int, int] = (64, 32)  # channels after each x2 pixel shuffle
    lr_img_size: int = 128  # side of the ray grid and of the manifold textures
    hr_img_size: int = 512  # side of the super-resolved textures and the output image (4 x lr)
    num_samples: int = 64  # samples per camera ray for inverse skinning
    num_samples_fine: int = 256  # samples per ray after linear re-interpolation
    num_manifolds: int = 24  # level sets (manifolds)
    levels_start: float = LEVELS_START  # first level (nearest the camera)
    levels_end: float = LEVELS_END  # last level
    # LbsSmoother kernels along the samples and across the image, in cells of the knn_stride grid (the release's
    # 64x64x32 grid: 9 cells are 14% of the image, 5 cells 16% of a ray). A smaller grid needs smaller kernels, or
    # the smoothing carries the head's transforms onto the shoulders.
    smoother_depth_kernel: int = 5
    smoother_spatial_kernel: int = 9
    knn_stride: int = 2  # inverse skinning runs on every knn_stride-th row, column and sample
    # Factor on RadianceNet's input coordinates (1 in the release): it scales every spatial frequency of the
    # radiance field, so a model with coarse textures can keep its field below their Nyquist limit.
    radiance_input_scale: float = 1.0
    # Factor on z_noise where it enters the mapping networks (1 in the release). Below 1, the identity label outweighs
    # the noise in the codes from the start: for data whose label already describes each image's appearance.
    noise_input_scale: float = 1.0
    # Colour modulation (off in the release): a linear map of the identity label z_id scales the input channels of
    # RadianceNet's colour heads (StyleGAN's modulated toRGB), so that colours can follow the label linearly. For data
    # whose label describes each image's appearance; it starts as the identity, so a model without it can be continued
    # with it.
    color_modulation: bool = False
    # Canonical space at the mean shape (off in the release, whose canonical space is the mean pose at each identity's
    # shape). On, inverse skinning also takes away each vertex's shape offset, so that a face feature sits at one
    # canonical point for every body shape and the fields need not learn where each shape puts it.
    mean_shape_canonical: bool = False
    # High-resolution textures from the field (off in the release, whose super-resolution network makes them from
    # the low-resolution ones). On, RadianceNet is evaluated at the high-resolution texels themselves, so a frame
    # keeps all the detail the field holds (what stage 1's face view is trained on) and no stage 2 is needed; the
    # super-resolution network is then unused.
    field_hr_textures: bool = False
    # Texels at the centres of their lookups (off in the release, whose texels lie on a linspace over the texture box
    # but are looked up with align_corners=False: a side-N texture then shows the field at N / (N - 1) times a
    # point's offset from the box's centre, 3.2% at 32 texels, and a face view that evaluates the field at its own
    # intersections shows the face that much nearer the centre than every textured frame does). On, texel j of a
    # side-N texture lies at the centre of the lookup's cell j, so every texture, at any side, shows the field where
    # it is: the portrait, the full-size frames and the stage-1 face view agree on where each feature lies.
    texel_centres: bool = False
    # Neck gate of the expression deformation (0 and 0 in the release: none). When high > low, DeformNet's
    # displacement is scaled by a smoothstep of the canonical height y (the face frame's units, y up), 0 below
    # ``expression_gate_low`` and 1 above ``expression_gate_high``: the expression can move the face and the jaw,
    # never the shoulders.
    expression_gate_low: float = 0.0
    expression_gate_high: float = 0.0
    # Tilt of that gate (0: a level boundary): the height it compares is y - slope * |x|, so the boundary falls
    # towards the sides and the shoulders, which rise beside the neck to the height of the open jaw, stay below it.
    expression_gate_slope: float = 0.0
    # Depth gate of the expression deformation (0 and 0 in the release: none). When high > low, DeformNet's
    # displacement is also scaled by a smoothstep of the canonical depth z (towards the face's front), 0 behind
    # ``expression_gate_depth_low`` and 1 in front of ``expression_gate_depth_high``: the expression can move the
    # face, never the back or the sides of the head (its outline from the front).
    expression_gate_depth_low: float = 0.0
    expression_gate_depth_high: float = 0.0

    def __post_init__(self) -> None:
        if self.hr_img_size != 4 * self.lr_img_size:
            raise ValueError(f"hr_img_size must be 4 x lr_img_size (two x2 pixel shuffles), got {self.hr_img_size}")
        for name in ("lr_img_size", "num_samples"):
            if getattr(self, name) % self.knn_stride:
                raise ValueError(f"{name} must be a multiple of knn_stride={self.knn_stride}")
        if self.num_samples < 2 or self.num_samples_fine < 2 or self.num_manifolds < 1:
            raise ValueError("need at least 2 samples per ray and 1 manifold")
        if not (math.isfinite(self.radiance_input_scale) and self.radiance_input_scale > 0):
            raise ValueError(f"radiance_input_scale must be positive, got {self.radiance_input_scale}")
        if not (math.isfinite(self.noise_input_scale) and 0 < self.noise_input_scale <= 1):
            raise ValueError(f"noise_input_scale must be in (0, 1], got {self.noise_input_scale}")
        if self.smoother_depth_kernel % 2 == 0 or self.smoother_spatial_kernel % 2 == 0:
            raise ValueError(
                "smoother kernels must be odd (centred), got "
                f"{self.smoother_depth_kernel} and {self.smoother_spatial_kernel}"
            )
        gate = (self.expression_gate_low, self.expression_gate_high)
        if not all(math.isfinite(v) for v in gate) or (gate != (0.0, 0.0) and not gate[0] < gate[1]):
            raise ValueError(f"expression_gate_low must be below expression_gate_high (or both 0), got {gate}")
        if not (math.isfinite(self.expression_gate_slope) and 0 <= self.expression_gate_slope <= 10):
            raise ValueError(f"expression_gate_slope must be in [0, 10], got {self.expression_gate_slope}")
        depth = (self.expression_gate_depth_low, self.expression_gate_depth_high)
        if not all(math.isfinite(v) for v in depth) or (depth != (0.0, 0.0) and not depth[0] < depth[1]):
            raise ValueError(
                f"expression_gate_depth_low must be below expression_gate_depth_high (or both 0), got {depth}"
            )

    @property
    def neck_gate(self) -> tuple[float, float, float] | None:
        """DeformNet's ``(low, high, slope)`` neck gate, or None where the config has none."""
        low, high = self.expression_gate_low, self.expression_gate_high
        return (low, high, self.expression_gate_slope) if high > low else None

    @property
    def depth_gate(self) -> tuple[float, float] | None:
        """DeformNet's ``(low, high)`` depth gate, or None where the config has none."""
        low, high = self.expression_gate_depth_low, self.expression_gate_depth_high
        return (low, high) if high > low else None

    @property
    def z_dim(self) -> int:
        """Width of the identity latent [z_id, z_noise] of RadianceNet and super-resolution."""
        return self.z_id_dim + self.z_noise_dim

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        """Build from a dict, rejecting unknown keys (a typo must not silently fall back to a default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown generator config keys: {', '.join(unknown)}")
        fields = {}
        types = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, value in data.items():
            default = types[key]
            if isinstance(default, tuple):
                ok = isinstance(value, (list, tuple)) and all(type(x) is int and x > 0 for x in value)
                value = tuple(value) if ok else value
            elif isinstance(default, bool):
                ok = type(value) is bool
            elif isinstance(default, float):
                ok = type(value) in (int, float) and math.isfinite(value)
            else:
                ok = type(value) is int and value > 0
            if not ok:
                raise ValueError(f"generator config {key}={value!r} is invalid (expected like {default!r})")
            fields[key] = value
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        return cls.from_dict(json.loads(text))


PRECISIONS = ("fp32", "bf16")  # arithmetic of the per-identity super-resolution
# Arithmetic of the per-frame MLPs: fp32 (exact); DeformNet alone under bfloat16 (the scalar field stays fp32); both.
FRAME_PRECISIONS = ("fp32", "bf16-deform", "bf16")
# Where a frame evaluates the scalar field along each ray: every fine sample, or coarse to fine where a manifold's
# first crossing can be (aniportrait.models.field_sampling).
SAMPLINGS = ("exact", "adaptive")
MAX_N_INTERVAL = 1000
MAX_FPS = 240


@dataclass(frozen=True)
class RenderingConfig:
    """How a model's videos are rendered unless the caller says otherwise (``aniportrait render``'s options, the
    Python API's and the viewer's defaults). A training run records its ``rendering`` section in the generator
    checkpoint it writes; a checkpoint without one renders with these defaults (the release's ``gen_video.py``:
    psi 0.7, 25 frames per second)."""

    psi: float = 0.7  # truncation of the identity latents towards their average, in [0, 1]
    n_interval: int = 8  # frames per keyframe (linear interpolation between keyframes)
    fps: int = 25  # frame rate of the videos
    # "fp32" (exact), "bf16-deform" (DeformNet under bfloat16 autocast) or "bf16" (DeformNet and SampleNet)
    precision: str = "fp32"
    sr_precision: str = "fp32"  # "fp32" (exact) or "bf16" (the per-identity super-resolution under bfloat16 autocast)
    sampling: str = "exact"  # "exact" (the field at every fine sample) or "adaptive" (coarse to fine)

    def __post_init__(self) -> None:
        psi, n, fps = self.psi, self.n_interval, self.fps
        if isinstance(psi, bool) or type(psi) not in (int, float) or not (math.isfinite(psi) and 0 <= psi <= 1):
            raise ValueError(f"rendering psi={psi!r} must be a number in [0, 1]")
        if isinstance(n, bool) or type(n) is not int or not 1 <= n <= MAX_N_INTERVAL:
            raise ValueError(f"rendering n_interval={n!r} must be an integer in [1, {MAX_N_INTERVAL}]")
        if isinstance(fps, bool) or type(fps) is not int or not 1 <= fps <= MAX_FPS:
            raise ValueError(f"rendering fps={fps!r} must be an integer in [1, {MAX_FPS}]")
        for key, allowed in (("precision", FRAME_PRECISIONS), ("sr_precision", PRECISIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"rendering {key}={getattr(self, key)!r} must be one of {', '.join(allowed)}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"rendering sampling={self.sampling!r} must be one of {', '.join(SAMPLINGS)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RenderingConfig:
        """Build from a dict; values not given keep their defaults, unknown keys are refused."""
        if not isinstance(data, dict):
            raise ValueError(
                "the rendering settings must be a mapping of psi, n_interval, fps, the precisions and sampling"
            )
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown rendering config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RenderingConfig:
        return cls.from_dict(json.loads(text))


DEFAULT_RENDERING = RenderingConfig()
SSHQ512 = GeneratorConfig()

TINY = GeneratorConfig(
    hidden_dim=32,
    mapping_hidden_dim=32,
    hidden_dim_sample=16,
    feature_dim=4,
    deform_hidden_dim=16,
    sr_nf=8,
    sr_nb=1,
    sr_gc=4,
    sr_up_channels=(8, 4),
    lr_img_size=16,
    hr_img_size=64,
    num_samples=8,
    num_samples_fine=16,
    num_manifolds=6,
)

# The built-in default model: 32x32 ray grid, 128x128 video; a few hundred thousand parameters.
SMALL = GeneratorConfig(
    hidden_dim=64,
    mapping_hidden_dim=64,
    hidden_dim_sample=32,
    feature_dim=8,
    deform_hidden_dim=32,
    sr_nf=16,
    sr_nb=1,
    sr_gc=8,
    sr_up_channels=(16, 8),
    lr_img_size=32,
    hr_img_size=128,
    num_samples=16,
    # No re-interpolation (the release doubles its 64 samples to 256): a quarter of a training step, and of a frame.
    num_samples_fine=16,
    num_manifolds=12,
    # Half the release's spatial frequencies: at initialisation 5.6% of the field's energy lies above the 32-texel
    # textures' Nyquist limit instead of 19-21% (docs/training/aliasing.json).
    radiance_input_scale=0.5,
    # The release's smoother footprint on a grid 4x smaller (16x16x8 cells): 3 cells are 19% of the image, 1 cell
    # 12% of a ray. The release's 9 and 5 cells (56% and 63% here) carried a head turn onto the shoulders
    # (docs/training/README.md, section 5).
    smoother_depth_kernel=1,
    smoother_spatial_kernel=3,
    # The expression's neck gate: the chin sits near y = -0.09 and opens to about -0.12. Level, it still lets the
    # expression move the shoulders' upper edge, which rises beside the neck into the ramp (y = -0.128 at |x| = 0.1
    # on the rig); the built-in default adds expression_gate_slope=0.5 (docs/training/gate_weights.json).
    expression_gate_low=-0.16,
    expression_gate_high=-0.125,
)

CONFIGS = {"sshq512": SSHQ512, "small": SMALL, "tiny": TINY}


def get_config(name: str) -> GeneratorConfig:
    """A named config (``sshq512``, ``small`` or ``tiny``)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; expected one of {', '.join(CONFIGS)}")
    return CONFIGS[name]
