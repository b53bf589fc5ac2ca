"""AniPortraitGAN's generator: manifold super-resolution once per identity, then cheap per-frame synthesis.

Submodule names and parameter shapes are the release's (``ManifoldSRGenerator3d``), so its checkpoint maps 1:1:
``radiance_net``, ``sample_net``, ``deform_net``, ``sr_net``, ``smoother``. The body model (SMPL or our procedural rig)
is *not* part of the state: it is passed in, so our checkpoints never carry licensed SMPL arrays.

Two stages (the release's ``manifold_sr`` and ``synthesis``):

1. :meth:`AniPortraitGenerator.prepare_identity` (per identity): intersect canonical orthogonal rays with the
   manifolds, run RadianceNet there, and super-resolve the 24 RGBA+feature textures. The result is cached.
2. :meth:`AniPortraitGenerator.render_frame` (per frame): camera rays -> inverse skinning against the posed body
   (``ops.inverse_lbs``, then the learnable smoother) -> expression deformation -> scalar field ->
   ``ops.manifold_intersect`` -> texture lookup -> ``ops.volume_composite``. The radiance and SR networks never run.

The release's semantics and the quirks kept for parity: docs/release.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aniportrait import constants, ops
from aniportrait.cameras import camera_ray_directions, orthogonal_rays, portrait_rays
from aniportrait.config import DEFAULT_RENDERING, FRAME_PRECISIONS, PRECISIONS, GeneratorConfig
from aniportrait.kernels._registry import Impl
from aniportrait.models.deformation import DeformNet
from aniportrait.models.field_sampling import sample_field
from aniportrait.models.manifold import SampleNet
from aniportrait.models.radiance import RadianceNet
from aniportrait.models.smoother import LbsSmoother
from aniportrait.models.superres import StyleRRDBNet

if TYPE_CHECKING:  # the body module imports smplx; the generator itself only calls its methods
    from aniportrait.models.body import BodyModel

# Points per chunk for the per-point MLPs: bounds the 128/256-wide activations to a few hundred MB.
CHUNK_POINTS = 1 << 18
# The same without autograd, where nothing is kept between layers: 8192 points' 128-wide activations (4 MB) stay in
# the CPU's cache from one layer to the next, with the same values (benchmarks/cpu_frame_time.py's exact runs).
INFERENCE_CHUNK_POINTS = 1 << 13
# Identity latents drawn to estimate the truncation averages (the release's generate_avg_frequencies).
TRUNCATION_SAMPLES = 10000
# Seed of those draws, so that the averages (which the release never stores) are reproducible.
TRUNCATION_SEED = 123456789
# The release's HR validity: bilinear x4 of the 0/1 mask, then > 0.99 (in effect an AND of the LR neighbours).
HR_VALID_THRESHOLD = 0.99


@dataclass
class Identity:
    """Everything per-frame synthesis needs about one batch of identities (the cache of ``prepare_identity``)."""

    z_id: Tensor  # [B, z_id_dim] 3DMM identity
    z_noise: Tensor  # [B, z_noise_dim]
    betas: Tensor  # [B, 10] SMPL shape
    lr_textures: Tensor  # [B * M, 4, H, W] RGB + alpha of each manifold (row 0 = lowest y)
    hr_textures: Tensor  # [B * M, 4, 4H, 4W] super-resolved RGB + alpha, after the sigmoid (or the field's own)

    @property
    def batch(self) -> int:
        return self.z_id.shape[0]


def sample_identity_latents(
    config: GeneratorConfig, seeds: list[int], *, id_bank: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(z_id, z_noise, betas) per seed, drawn on the CPU generator so that a seed means the same on every device.

    The release draws ``[z_id, betas]`` as one row of a label bank ``id_bank`` [N, z_id_dim + 10] and ``z_noise`` from
    N(0, I). Without a bank, ``z_id`` ~ N(0, I) and ``betas`` = 0 (documented prior of the built-in models).
    """
    z_id, z_noise, betas = [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        if id_bank is not None:
            row = id_bank[torch.randint(len(id_bank), (1,), generator=g)].float()
            z_id.append(row[:, : config.z_id_dim])
            betas.append(row[:, config.z_id_dim : config.z_id_dim + config.betas_dim])
        else:
            z_id.append(torch.randn(1, config.z_id_dim, generator=g))
            betas.append(torch.zeros(1, config.betas_dim))
        z_noise.append(torch.randn(1, config.z_noise_dim, generator=g))
    return torch.cat(z_id), torch.cat(z_noise), torch.cat(betas)


def upsample_hits(hits: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """The release's HR intersections: bilinear x4 (align_corners=True) of each manifold's intersection map, and of
    its 0/1 validity followed by ``> 0.99`` (no 512^2 ray marching). [B, H*W, M, 3] -> [B, 16 H*W, M, 3]."""
    B, R, M, _ = hits.shape
    res = math.isqrt(R)
    maps = hits.reshape(B, res, res, M, 3).permute(0, 3, 4, 1, 2).reshape(B * M, 3, res, res)
    hits_hr = F.interpolate(maps, scale_factor=4, mode="bilinear", align_corners=True)
    hits_hr = hits_hr.reshape(B, M, 3, 16 * R).permute(0, 3, 1, 2).contiguous()  # later reductions run along C
    valid_maps = valid.reshape(B, res, res, M).permute(0, 3, 1, 2).to(maps.dtype)
    valid_hr = F.interpolate(valid_maps, scale_factor=4, mode="bilinear", align_corners=True) > HR_VALID_THRESHOLD
    return hits_hr, valid_hr.reshape(B, M, 16 * R).transpose(1, 2)


# Planar-manifold initialisation: the levels start as planes z = const spread over this canonical depth range.
PLANAR_DEPTH_RANGE = (0.15, -0.15)  # canonical z of the first (23) and last (8) level
# Bias keeping the single active ReLU unit positive for every input the per-frame path can produce.
PLANAR_RELU_BIAS = 60.0


@torch.no_grad()
def init_planar_manifolds(generator: AniPortraitGenerator) -> None:
    """Make ``sample_net`` an affine function of canonical depth, so that the manifolds are planes ``z = const``.

    A randomly initialised scalar field rarely reaches the levels 23..8, so every ray would miss. This
    deterministic start (one active ReLU path; every other weight zero) is the documented initialisation of the
    built-in model until a trained one ships, and gives the tests intersections everywhere.
    """
    net, cfg = generator.sample_net, generator.config
    (z_front, z_back), (s_front, s_back) = PLANAR_DEPTH_RANGE, (cfg.levels_start, cfg.levels_end)
    # The MLP sees q_z = WARP_SCALE^2 z + 1.5 (twice warped, minus the -1.5 centre).
    slope = (s_front - s_back) / (constants.WARP_SCALE**2 * (z_front - z_back))
    intercept = s_front - slope * (constants.WARP_SCALE**2 * z_front - constants.SAMPLE_NET_CENTER[2])
    linears = [m for m in net.network if isinstance(m, nn.Linear)]
    for layer in [*linears, net.output_layer]:
        layer.weight.zero_()
        layer.bias.zero_()
    linears[0].weight[0, 2] = 1.0
    linears[0].bias[0] = PLANAR_RELU_BIAS
    for layer in linears[1:]:
        layer.weight[0, 0] = 1.0
    net.output_layer.weight[0, 0] = slope
    net.output_layer.bias[0] = intercept - slope * PLANAR_RELU_BIAS


def texture_uv(hits: Tensor) -> Tensor:
    """Texture coordinates [..., 2] of canonical points [..., 3]: u = x / 0.22, v = (y - SAMPLE_CENTER) / 0.22, in
    [-1, 1] over the texture box (looked up with ``align_corners=False`` although the texels were laid out with
    linspace spacing: the release's half-texel quirk, kept unless a model's ``texel_centres`` lays them out at the
    lookups' cell centres)."""
    return torch.stack([hits[..., 0], hits[..., 1] - constants.SAMPLE_CENTER], dim=-1) / constants.SAMPLE_SCALE


def lookup_points(points: Tensor, side: int) -> Tensor:
    """Canonical points [..., 3] moved to where a lookup of ``side``-texel textures (:func:`texture_uv`) shows the
    field: x and y scaled by side / (side - 1) about the texture box's centre, z kept. A lookup with
    ``align_corners=False`` at texture coordinate u reads texel index ((u + 1) side - 1) / 2, and the texels were
    laid out at u' = -1 + 2 index / (side - 1): u' = u side / (side - 1)."""
    k = side / (side - 1)
    centre = points.new_tensor([0.0, constants.SAMPLE_CENTER])
    return torch.cat([centre + k * (points[..., :2] - centre), points[..., 2:]], dim=-1)


def selected_first(mask: Tensor) -> Tensor:
    """Indices [B, K] that gather each row's selected entries of ``mask`` [B, N] first (in order), padded with
    unselected ones to the largest row's count K."""
    count = int(mask.sum(dim=1).max())
    return torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :count]


def texture_alpha(sigma: Tensor) -> Tensor:
    """Alpha of a low-resolution texel from RadianceNet's raw density: ``1 - exp(-DELTA_ALPHA * softplus(sigma))``."""
    return -torch.expm1(-constants.DELTA_ALPHA * F.softplus(sigma))


class _TensorState:
    """The contents of some tensors, as part of a cache key: equal while the same tensor objects (not addresses,
    which a freed tensor's successor may reuse) hold the same versions (an optimiser step or ``load_state_dict``
    writes in place)."""

    def __init__(self, *tensors: Tensor | None) -> None:
        self.tensors = tensors
        self.versions = tuple(None if t is None else t._version for t in tensors)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _TensorState)
            and self.versions == other.versions
            and len(self.tensors) == len(other.tensors)
            and all(a is b for a, b in zip(self.tensors, other.tensors))
        )

    __hash__ = None


def _chunked(fn, *inputs: Tensor, dim: int = 1, chunk: int = CHUNK_POINTS):
    """Apply ``fn`` to slices of ``inputs`` along ``dim`` and concatenate each of its outputs."""
    n = inputs[0].shape[dim]
    if n <= chunk:
        return fn(*inputs)
    parts = [fn(*(x.narrow(dim, i, min(chunk, n - i)) for x in inputs)) for i in range(0, n, chunk)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p, dim=dim) for p in zip(*parts))
    return torch.cat(parts, dim=dim)


class AniPortraitGenerator(nn.Module):
    """The generator networks, with the release's submodule names.

    Args:
        config: sizes (``aniportrait.config.SSHQ512`` reproduces the release).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.radiance_net = RadianceNet(
            hidden_dim=config.hidden_dim,
            z_dim=config.z_dim,
            feature_dim=config.feature_dim,
            mapping_hidden_dim=config.mapping_hidden_dim,
            input_scale=config.radiance_input_scale,
            color_modulation_dim=config.z_id_dim if config.color_modulation else 0,
        )
        self.sample_net = SampleNet(hidden_dim=config.hidden_dim_sample)
        self.deform_net = DeformNet(
            hidden_dim=config.deform_hidden_dim,
            z_dim=config.z_id_dim + config.z_exp_dim,
            mapping_hidden_dim=config.deform_hidden_dim,
            neck_gate=config.neck_gate,
            depth_gate=config.depth_gate,
        )
        self.sr_net = StyleRRDBNet(
            in_nc=4 + config.feature_dim,
            out_nc=4,
            w_dim=config.z_dim,
            nf=config.sr_nf,
            nb=config.sr_nb,
            gc=config.sr_gc,
            up_channels=config.sr_up_channels,
            mapping_hidden_dim=config.mapping_hidden_dim,
        )
        self.smoother = LbsSmoother(
            depth_kernel=config.smoother_depth_kernel, spatial_kernel=config.smoother_spatial_kernel
        )
        self.register_buffer(
            "levels", torch.linspace(config.levels_start, config.levels_end, config.num_manifolds), persistent=False
        )
        self._averages: dict[str, Tensor] | None = None
        self._averages_key: _TensorState | None = None
        self._texture_hits: dict[int, tuple] = {}  # side -> (key, hits, valid): see texture_intersections
        # The label bank [N, z_id_dim + betas_dim] of the data the model was trained on, from its checkpoint (the
        # release ships it as id_shape_sampler_body.npy): identities and truncation averages are drawn from it.
        # Kept on the CPU and out of the state_dict; None = the N(0, I) prior of sample_identity_latents.
        self.id_bank: Tensor | None = None

    # -- truncation ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def truncation_averages(self, id_bank: Tensor | None = None) -> dict[str, Tensor]:
        """Means of the RadianceNet mapping and the SR style over ``TRUNCATION_SAMPLES`` identities drawn from
        ``id_bank`` (or N(0, I) without one); cached per bank and per state of the two mapping networks."""
        key = _TensorState(id_bank, *self.radiance_net.latent_parameters(), *self.sr_net.mapping_network.parameters())
        if self._averages is None or self._averages_key != key:
            device = self.levels.device
            seeds = torch.Generator().manual_seed(TRUNCATION_SEED)
            if id_bank is not None:
                z_id = id_bank[torch.randint(len(id_bank), (TRUNCATION_SAMPLES,), generator=seeds)][
                    :, : self.config.z_id_dim
                ].float()
            else:
                z_id = torch.randn(TRUNCATION_SAMPLES, self.config.z_id_dim, generator=seeds)
            z = self.latent(z_id, torch.randn(TRUNCATION_SAMPLES, self.config.z_noise_dim, generator=seeds)).to(device)
            freq, phase = self.radiance_net.average_mapping(z)
            self._averages = {"freq": freq, "phase": phase, "style": self.sr_net.average_style(z)}
            self._averages_key = key
        return self._averages

    def _apply(self, fn, *args, **kwargs):
        # Moving or casting the module invalidates the cached averages and intersections.
        self._averages = None
        self._texture_hits = {}
        return super()._apply(fn, *args, **kwargs)

    # -- stage A: per identity -------------------------------------------------------------------------------------

    def prepare_identity(
        self,
        z_id: Tensor,
        z_noise: Tensor,
        betas: Tensor,
        *,
        psi: float = DEFAULT_RENDERING.psi,
        id_bank: Tensor | None = None,
        impl: Impl = "auto",
        sr_precision: str = DEFAULT_RENDERING.sr_precision,
    ) -> Identity:
        """Manifold super-resolution (the release's ``manifold_sr``), run once per identity: the low- and
        high-resolution textures of each identity.

        Args:
            z_id: [B, z_id_dim], z_noise: [B, z_noise_dim], betas: [B, 10].
            psi: truncation (1 = none); applied to RadianceNet's FiLM parameters and the SR style.
            id_bank: optional [N, z_id_dim + 10] label bank used for the truncation averages (default: the
                generator's own ``id_bank``).
            sr_precision: ``"fp32"``, or ``"bf16"`` to run the super-resolution network under bfloat16 autocast
                (faster on CPUs with AVX512-BF16 or AMX and on GPUs; the README's Performance section gives the
                measured speed and frame error). A ``field_hr_textures`` model runs no super-resolution: its
                high-resolution textures are RadianceNet at the fine texels, in fp32.

        Returns:
            The :class:`Identity` cache.
        """
        if sr_precision not in PRECISIONS:
            raise ValueError(f"sr_precision must be one of {', '.join(PRECISIONS)}, got {sr_precision!r}")
        id_bank = self.id_bank if id_bank is None else id_bank
        codes = self.identity_codes(z_id, z_noise, psi=psi, id_bank=id_bank)
        lr_features, style = self.manifold_textures(z_id, z_noise, impl=impl, codes=codes)
        if self.config.field_hr_textures:
            hr_textures = self.fine_field_textures(z_id, z_noise, codes, impl).contiguous()
            return Identity(z_id, z_noise, betas, lr_features[:, :4].contiguous(), hr_textures)
        # Channels-last (NHWC) is the convolutions' fast layout on CPUs (oneDNN) and GPUs; the values are those of
        # the NCHW path up to float rounding (benchmarks/cpu_identity_time.py measures both).
        with torch.autocast(lr_features.device.type, dtype=torch.bfloat16, enabled=sr_precision == "bf16"):
            raw = self.sr_net(lr_features.contiguous(memory_format=torch.channels_last), style)
        # The release applies the sigmoid to all four SR output channels (GRAM-HD only to alpha).
        hr_textures = torch.sigmoid(raw.float()).contiguous()
        return Identity(z_id, z_noise, betas, lr_features[:, :4].contiguous(), hr_textures)

    def latent(self, z_id: Tensor, z_noise: Tensor) -> Tensor:
        """The mapping networks' input [B, z_id_dim + z_noise_dim]: ``[z_id, noise_input_scale * z_noise]``."""
        return torch.cat([z_id, self.config.noise_input_scale * z_noise], dim=-1)

    def identity_codes(
        self, z_id: Tensor, z_noise: Tensor, *, psi: float = 1.0, id_bank: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """RadianceNet's raw FiLM codes (freq, phase) [B, (L + 1) H] and the SR style [B, style_dim] of identities,
        truncated towards the averages by ``psi`` (1 = none)."""
        z = self.latent(z_id, z_noise)
        freq, phase = self.radiance_net.mapping(z)
        style = self.sr_net.mapping(z)
        if psi != 1:
            avg = self.truncation_averages(id_bank)
            freq, phase = self.radiance_net.truncate(freq, phase, (avg["freq"], avg["phase"]), psi)
            style = self.sr_net.truncate(style, avg["style"], psi)
        return freq, phase, style

    def manifold_textures(
        self,
        z_id: Tensor,
        z_noise: Tensor,
        *,
        psi: float = 1.0,
        id_bank: Tensor | None = None,
        impl: Impl = "auto",
        codes: tuple[Tensor, Tensor, Tensor] | None = None,
        side: int | None = None,
        texel_offset: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The low-resolution manifold textures and the SR style of identities (differentiable; used in training).

        ``codes`` = (freq, phase, style) from :meth:`identity_codes` skips the mapping networks (``psi`` and
        ``id_bank`` are then ignored). ``side`` samples the field at a finer texel grid over the same box (default
        ``lr_img_size``; ``hr_img_size`` gives the textures of ``field_hr_textures``). ``texel_offset`` [2] moves
        every texel by that fraction of a texel in x and y (training's texel jitter; :meth:`_composite` takes the same
        offset so that a lookup reads the same canonical point).

        Returns:
            lr_features [B * M, 4 + F, side, side] (RGB, alpha, features; row 0 = lowest y) and style [B, style_dim].
        """
        cfg = self.config
        B, M = z_id.shape[0], cfg.num_manifolds
        res = cfg.lr_img_size if side is None else side
        device, dtype = z_id.device, torch.promote_types(z_id.dtype, z_noise.dtype)
        freq, phase, style = self.identity_codes(z_id, z_noise, psi=psi, id_bank=id_bank) if codes is None else codes

        # SampleNet's field takes no identity: one set of texel points serves the whole batch.
        if torch.is_grad_enabled() or texel_offset is not None:
            hits, valid = self._orthogonal_intersections(1, device, dtype, impl, res, texel_offset)
        else:
            hits, valid = self.texture_intersections(device, dtype, impl, res)
        hits, valid = hits.expand(B, -1, -1), valid.expand(B, -1, -1)

        # RadianceNet at the intersections, with the view direction locked to (0, 0, -1).
        view_dir = torch.tensor([0.0, 0.0, -1.0], device=device, dtype=dtype).expand(B, 1, 3)
        rgb, sigma, feature = _chunked(lambda p: self.radiance_net.features(p, freq, phase, view_dir), hits)
        alpha = texture_alpha(sigma) * valid.reshape(B, -1, 1)
        texels = torch.cat([rgb, alpha, feature], dim=-1).reshape(B, res, res, M, -1)
        return texels.permute(0, 3, 4, 1, 2).reshape(B * M, -1, res, res), style

    def fine_field_textures(
        self, z_id: Tensor, z_noise: Tensor, codes: tuple[Tensor, Tensor, Tensor], impl: Impl
    ) -> Tensor:
        """A ``field_hr_textures`` model's high-resolution textures [B * M, 4, hr, hr] (RGB, alpha): RadianceNet
        sampled at the fine texels (:meth:`manifold_textures` at side ``hr_img_size``) for the identities' ``codes``."""
        return self.manifold_textures(z_id, z_noise, impl=impl, codes=codes, side=self.config.hr_img_size)[0][:, :4]

    def _orthogonal_intersections(
        self,
        batch: int,
        device,
        dtype,
        impl: Impl,
        res: int | None = None,
        offset: Tensor | None = None,
        *,
        rect: tuple[int, int, int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The texels' canonical points: orthogonal rays through the canonical texture box (``res`` per side,
        default ``lr_img_size``) intersected with the manifolds (two-sided rule) -> hits [batch, res * res * M, 3]
        (canonical units), valid [batch, res * res, M]. A finer side is laid out where the low-resolution textures'
        lookup reads (``orthogonal_rays``' ``lookup_side``): the fine textures show the figure that stage 1 trained
        through the coarse ones; with ``texel_centres`` every side's texels lie at the centres of their lookups.
        ``rect`` = (row0, row1, col0, col1): only those texels, [batch, rows * cols * M, 3]."""
        S = self.config.num_samples
        lr = self.config.lr_img_size
        res = lr if res is None else res
        centred = self.config.texel_centres
        grid = orthogonal_rays(
            res, S, batch=batch, device=device, dtype=dtype, lookup_side=lr, offset=offset, centred=centred
        )
        if rect is not None:
            row0, row1, col0, col1 = rect
            grid = grid.reshape(batch, res, res, S, 3)[:, row0:row1, col0:col1].reshape(batch, -1, S, 3)
        grid_w = grid * constants.WARP_SCALE
        s = _chunked(self.sample_net, grid_w)[..., 0]  # the MLP sees w(w(p)) + (0, 0, 1.5)
        hits_w, valid = ops.manifold_intersect(
            s, grid_w, self.levels.to(dtype), two_sided=True, min_step=constants.MIN_STEP, impl=impl
        )
        return (hits_w / constants.WARP_SCALE).reshape(batch, -1, 3), valid

    @torch.no_grad()
    def texture_intersections(
        self, device, dtype, impl: Impl = "auto", res: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`_orthogonal_intersections` for one identity, cached per side ``res``: SampleNet's field takes no
        identity, so every identity's texels sit at the same points (a fifth of an identity's work in ``sshq512``).
        The cache is keyed on SampleNet's parameters and the levels (the tensors themselves and their versions:
        replacing one, an optimiser step or ``load_state_dict`` invalidates it), the device, the dtype and ``impl``."""
        res = self.config.lr_img_size if res is None else res
        key = (_TensorState(*self.sample_net.parameters(), self.levels), torch.device(device), dtype, impl)
        cached = self._texture_hits.get(res)
        if cached is None or cached[0] != key:
            cached = self._texture_hits[res] = (key, *self._orthogonal_intersections(1, device, dtype, impl, res))
        return cached[1], cached[2]

    # -- stage B: per frame ----------------------------------------------------------------------------------------

    def canonical_samples(
        self,
        body: BodyModel,
        points: Tensor,
        pose: Tensor,
        betas: Tensor,
        *,
        impl: Impl = "auto",
        skinning: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Ray samples mapped to canonical space by smoothed inverse skinning.

        Args:
            points: [B, H*W, S, 3] samples of a square grid of rays (H and S divisible by ``knn_stride``).
            skinning: ``body.inverse_skinning(betas, pose, mean_shape=...)`` when the caller already has it (several
                views of one posed body skin it once).

        Returns:
            ``x_can`` [B, H*W, S, 3]; ``transforms`` [B, 16, S', H', W'], the raw nearest-vertex matrices on the
            strided grid; ``smoothed`` [B, 16, S, H, W], the smoother's output (both for the training losses).
        """
        st = self.config.knn_stride
        B, R, S, _ = points.shape
        res = math.isqrt(R)
        if skinning is None:
            skinning = body.inverse_skinning(betas, pose, mean_shape=self.config.mean_shape_canonical)
        verts, vert_transforms = skinning
        queries = points.reshape(B, res, res, S, 3)[:, ::st, ::st, ::st]
        r, d = queries.shape[1], queries.shape[3]
        _, transforms = ops.inverse_lbs(
            queries.reshape(B, -1, 3), verts.to(points.dtype), vert_transforms.to(points.dtype), k=1, impl=impl
        )
        # [B, rows, cols, samples, 16] -> [B, 16, samples, rows, cols] for the depthwise 3-D smoother. Its x2
        # trilinear upsampling (align_corners=False) puts coarse cell i at fine 2i + 0.5 although the strided
        # queries sat at 2i: the release's half-sample shift, kept because its smoother weights were trained so.
        volume = transforms.reshape(B, r, r, d, 16).permute(0, 4, 3, 1, 2)
        smoothed = self.smoother(volume)
        matrices = smoothed.permute(0, 3, 4, 2, 1).reshape(B, R, S, 4, 4)
        x_can = torch.einsum("brsij,brsj->brsi", matrices[..., :3, :3], points) + matrices[..., :3, 3]
        return {"x_can": x_can, "transforms": volume, "smoothed": smoothed}

    def intersect(
        self,
        x_can: Tensor,
        z_id: Tensor,
        expression: Tensor,
        *,
        impl: Impl = "auto",
        precision: str = "fp32",
        sampling: str = "exact",
    ) -> dict[str, Tensor]:
        """Expression deformation, the scalar field and the ray-manifold intersections of canonical samples.

        Args:
            x_can: [B, R, S, 3] canonical samples (``num_samples`` per ray); z_id [B, 80]; expression [B, 64].
            sampling: ``"exact"`` evaluates the field at every fine sample; ``"adaptive"`` coarse to fine, only
                where a level's first crossing can be (:mod:`aniportrait.models.field_sampling`).

        Returns:
            ``hits`` [B, R, M, 3] canonical intersections (texture lookup points), ``valid`` [B, R, M], ``x``
            [B, R, S2, 3] the re-interpolated canonical samples, ``d`` [B, R, S2, 3] the expression deformation
            there (warped units, added to ``x`` as is for the texture lookup), ``s`` [B, R, S2] the scalar field
            and ``evaluated`` [B, R, S2], where the field ran (with ``adaptive``, ``s`` and ``d`` are interpolated
            at the other samples).
        """
        if precision not in FRAME_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(FRAME_PRECISIONS)}, got {precision!r}")
        cfg = self.config
        B, R, S, _ = x_can.shape
        S2 = cfg.num_samples_fine
        # Linear re-interpolation of the samples along each ray (align_corners=True), 64 -> 256 in the release.
        x_fine = x_can.reshape(B * R, S, 3)
        if S2 != S:
            x_fine = F.interpolate(x_fine.transpose(1, 2), size=S2, mode="linear", align_corners=True).transpose(1, 2)
        freq, phase = self.deform_net.mapping(torch.cat([z_id, expression], dim=-1))
        device = x_can.device.type
        deform_low = torch.autocast(device, dtype=torch.bfloat16, enabled=precision in ("bf16", "bf16-deform"))
        sample_low = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")

        def field(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            with deform_low:
                new_coords, d = self.deform_net(x, freq, phase)
            with sample_low:
                s = self.sample_net(new_coords)[..., 0]
            d, s = d.to(x.dtype), s.to(x.dtype)  # no-ops in fp32
            # Quirk kept for checkpoint parity: d is in warped units, yet it is added to the unwarped x_can below,
            # while the scalar field sees it warped (d / WARP_SCALE in canonical units).
            return s, x + d, d

        chunk = CHUNK_POINTS if torch.is_grad_enabled() else INFERENCE_CHUNK_POINTS
        found = sample_field(
            field,
            x_fine.reshape(B, R, S2, 3),
            self.levels,
            sampling=sampling,
            chunk=lambda fn, p: _chunked(fn, p, chunk=chunk),
        )
        s, lookup, d = found["s"], found["lookup"], found["d"]
        hits, valid = ops.manifold_intersect(
            s.reshape(B, R, S2),
            lookup.reshape(B, R, S2, 3),
            self.levels.to(x_can.dtype),
            min_step=constants.MIN_STEP,
            impl=impl,
        )
        return {
            "hits": hits,
            "valid": valid,
            "d": d.reshape(B, R, S2, 3),
            "x": x_fine.reshape(B, R, S2, 3),
            "s": s.reshape(B, R, S2),
            "evaluated": found["evaluated"],
        }

    def trace(
        self,
        body: BodyModel,
        points: Tensor,
        pose: Tensor,
        betas: Tensor,
        z_id: Tensor,
        expression: Tensor,
        *,
        impl: Impl = "auto",
        precision: str = "fp32",
        sampling: str = "exact",
        skinning: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The per-view data flow up to the intersections: posed ray samples -> inverse LBS and smoothing
        (:meth:`canonical_samples`) -> expression deformation, scalar field and ray-manifold intersections
        (:meth:`intersect`). Every renderer (frames, surfaces, both training views) goes through it.

        Returns:
            :meth:`canonical_samples`' dict and :meth:`intersect`'s dict.
        """
        samples = self.canonical_samples(body, points, pose, betas, impl=impl, skinning=skinning)
        found = self.intersect(samples["x_can"], z_id, expression, impl=impl, precision=precision, sampling=sampling)
        return samples, found

    def _frame_intersections(
        self,
        identity: Identity,
        body: BodyModel,
        camera: Tensor,
        pose: Tensor,
        expression: Tensor,
        impl: Impl,
        precision: str,
        sampling: str = "exact",
    ) -> tuple[dict[str, Tensor], Tensor]:
        """A frame's portrait rays traced (:meth:`trace`): :meth:`intersect`'s dict and the camera origins [B, 3]."""
        cfg = self.config
        points, origin = portrait_rays(camera, cfg.lr_img_size, cfg.num_samples)
        _, found = self.trace(
            body,
            points,
            pose,
            identity.betas,
            identity.z_id,
            expression,
            impl=impl,
            precision=precision,
            sampling=sampling,
        )
        return found, origin

    def render_frame(
        self,
        identity: Identity,
        body: BodyModel,
        camera: Tensor,
        pose: Tensor,
        expression: Tensor,
        *,
        impl: Impl = "auto",
        precision: str = "fp32",
        sampling: str = "exact",
        hr: bool = True,
    ) -> dict[str, Tensor]:
        """Render one frame per identity from the cache.

        Args:
            identity: from :meth:`prepare_identity` (batch B).
            body: a :class:`aniportrait.models.body.BodyModel`.
            camera: [B, 2] (pitch, yaw); pose: [B, 6, 3] joint Euler offsets; expression: [B, z_exp_dim].
            precision: ``"fp32"`` (exact); ``"bf16-deform"`` runs DeformNet (its matmuls and sines, about 60% of
                a frame's MLP time in fp32) under bfloat16 autocast and keeps the scalar field in fp32:
                the rounding lands on the expression displacement only, a few percent of it;
                ``"bf16"`` runs DeformNet and SampleNet (about 90% of a frame's arithmetic) under bfloat16: about 2x
                faster on CPUs with AVX512-BF16/AMX and on GPUs, at the cost of bfloat16 rounding in the scalar
                field (intersections move by a fraction of a texel).
            sampling: ``"exact"`` (the field at every fine sample) or ``"adaptive"`` (coarse to fine, only where a
                manifold's first crossing can be: fewer field evaluations, the same image unless the field has
                bumps narrower than the coarse grid; :mod:`aniportrait.models.field_sampling`).
            hr: False skips the high-resolution composite (a preview needs only ``image_lr``).

        Returns:
            ``image`` [B, 3, 4H, 4W] and ``image_lr`` [B, 3, H, W] in [-1, 1]; ``depth`` [B, 1, 4H, 4W] and
            ``depth_lr`` [B, 1, H, W] (10 where nothing is hit). Without ``hr``, only the low-resolution pair.
        """
        B, res = camera.shape[0], self.config.lr_img_size
        found, origin = self._frame_intersections(identity, body, camera, pose, expression, impl, precision, sampling)
        hits, valid = found["hits"], found["valid"]
        out = {}
        image, depth, _ = self._composite(identity.lr_textures, hits, valid, origin, impl)
        out["image_lr"], out["depth_lr"] = image.reshape(B, res, res, 3).permute(0, 3, 1, 2), depth.view(B, 1, res, res)
        if not hr:
            return out
        hits_hr, valid_hr = upsample_hits(hits, valid)
        hr = 4 * res
        image, depth, _ = self._composite(identity.hr_textures, hits_hr, valid_hr, origin, impl)
        out["image"], out["depth"] = image.reshape(B, hr, hr, 3).permute(0, 3, 1, 2), depth.view(B, 1, hr, hr)
        return out

    def render_surface(
        self,
        identity: Identity,
        body: BodyModel,
        camera: Tensor,
        pose: Tensor,
        expression: Tensor,
        *,
        impl: Impl = "auto",
    ) -> dict[str, Tensor]:
        """The surface a frame shows, in world space: one point per output pixel (for mesh export).

        The frame is rendered as :meth:`render_frame` renders it. Each manifold intersection also carries its
        distance ``t`` along the camera ray (interpolated between the two samples around the crossing, as the
        lookup point is); the pixel's ``t`` is composited with the same weights as its colour, and its point is
        ``ray origin + t * ray direction``: the posed, expressed surface where the camera sees it. High-resolution
        pixels take ``t`` from the low-resolution intersections upsampled as the hits are.

        Returns:
            ``image`` [B, 3, 4H, 4W] in [-1, 1] (as render_frame's), ``points`` [B, 4H, 4W, 3] world points (the
            renderer's frame and units), ``distance`` [B, 4H, 4W] ray distance ``t`` of each point, ``opacity``
            [B, 4H, 4W] (the pixel's summed compositing weight) and ``depth`` [B, 1, 4H, 4W] (render_frame's depth).
        """
        B, res = camera.shape[0], self.config.lr_img_size
        found, origin = self._frame_intersections(identity, body, camera, pose, expression, impl, "fp32")
        hits, valid, s = found["hits"], found["valid"], found["s"]
        S2 = self.config.num_samples_fine
        # The fine samples re-interpolate the coarse ones linearly (align_corners=True): along each ray they sit
        # at linspace(RAY_START, RAY_END, S2).
        t = torch.linspace(constants.RAY_START, constants.RAY_END, S2, device=s.device, dtype=s.dtype)
        t_hits, _ = ops.manifold_intersect(
            s, t.expand(B, res * res, S2)[..., None], self.levels.to(s.dtype), min_step=constants.MIN_STEP, impl=impl
        )
        hits_hr, valid_hr = upsample_hits(hits, valid)
        t_hr = upsample_hits(t_hits.expand(-1, -1, -1, 3), valid)[0][..., 0]
        hr = 4 * res
        image, depth, weights = self._composite(identity.hr_textures, hits_hr, valid_hr, origin, impl)
        # The colour's compositing weights average t as they average the colour; no weight: no surface.
        opacity = weights.sum(dim=-1)
        mean_t = (weights * torch.where(valid_hr, t_hr, 0.0)).sum(dim=-1) / opacity.clamp_min(1e-12)
        distance = torch.where(opacity > 0, mean_t, constants.INVALID_DEPTH)
        directions = camera_ray_directions(camera, hr)  # [B, hr*hr, 3]
        offset = torch.tensor(constants.ORIGIN_OFFSET, device=camera.device, dtype=camera.dtype)
        world = origin[:, None, :] + offset + distance[..., None] * directions
        return {
            "image": image.reshape(B, hr, hr, 3).permute(0, 3, 1, 2),
            "points": world.reshape(B, hr, hr, 3),
            "distance": distance.reshape(B, hr, hr),
            "opacity": opacity.reshape(B, hr, hr),
            "depth": depth.view(B, 1, hr, hr),
        }

    def _check_face_size(self, face_size: int, stage: int) -> None:
        """A face view of ``face_size`` must give the pose smoother a grid larger than its padding, traced at
        ``face_size`` in stage 1 and at a quarter of it in stage 2 (upsampled x4)."""
        cfg, scale = self.config, 1 if stage == 1 else 4
        if (
            face_size % (scale * cfg.knn_stride)
            or face_size // scale // cfg.knn_stride <= cfg.smoother_spatial_kernel // 2
        ):
            raise ValueError(
                f"face_size {face_size} does not fit stage {stage}: it must be a multiple of {scale * cfg.knn_stride} "
                f"and exceed {scale * cfg.knn_stride * (cfg.smoother_spatial_kernel // 2)} (the smoother's padding)"
            )

    def default_face_size(self, stage: int) -> int:
        """The paper's face-camera side: the LR side in stage 1 (128), half the HR side in stage 2 (256); the HR side
        where half would leave the smoother too small a grid (tiny configs)."""
        cfg = self.config
        if stage == 1:
            return cfg.lr_img_size
        half = cfg.hr_img_size // 2
        return half if half // 4 // cfg.knn_stride > cfg.smoother_spatial_kernel // 2 else cfg.hr_img_size

    def render_train(
        self,
        body: BodyModel,
        z_id: Tensor,
        z_noise: Tensor,
        betas: Tensor,
        expression: Tensor,
        camera: Tensor,
        pose: Tensor,
        *,
        face_size: int,
        stage: int = 1,
        impl: Impl = "auto",
        texel_offset: Tensor | None = None,
        hr_window: tuple[int, int, int] | None = None,
        face_textures: bool = False,
        face_at_lookup: bool = False,
        hr_face_size: int | None = None,
    ) -> dict[str, Tensor]:
        """Differentiable dual-camera rendering for training (paper section 3.4).

        The portrait camera renders as inference does, from the identities' manifold textures (built here, no
        cache): stage 1 looks up the low-resolution textures at the LR ray grid; stage 2 super-resolves them (or,
        with ``field_hr_textures``, samples the field at the high-resolution texels) and upsamples the intersections
        x4. The face camera is attached to the posed head and looks at the face from the
        portrait camera's direction (:func:`aniportrait.cameras.face_rays`), like an aligned face crop. In
        stage 1 it evaluates RadianceNet at its own intersections (as GRAM renders any camera) instead of reading
        the portrait's textures: the face view has about twice the portrait's sampling density, and a texture
        lookup would cap its detail at one texel (the point of the dual camera is to supervise the face at its own
        resolution). In stage 2 it reads the super-resolved textures, like the portrait. The body is skinned once
        for both views. ``texel_offset`` [2] (stage 1 only) lays the portrait's texels out that fraction of a texel
        off the grid in x and y and reads them back at the same canonical points: drawn afresh each step (training's
        ``texel_jitter``), the field is fitted between the grid's texels too, which the full-size textures of
        ``field_hr_textures`` sample. ``hr_window`` = (top, left, side) (stage 1, ``field_hr_textures`` only) also
        renders that window (image rows and columns) of the full-size (4H) portrait frame exactly as
        :meth:`render_frame` composites it, the intersections upsampled x4 and looked up in the fine textures, of
        which only the texels the window's lookups read are computed (:meth:`_textures_read`): the full-size frame's
        pixels at the cost of a window, not of a full-size texture set. ``face_textures`` (stage 1,
        ``field_hr_textures`` only) makes the face view read the fine textures at its intersections likewise,
        instead of evaluating the field there: textures are looked up with ``align_corners=False`` over texels laid
        out on a linspace (the release's quirk), so a lookup shows the field at N / (N - 1) times the point's offset
        from the box's centre (3.2% at 32 texels), and a face view evaluated at its own intersections puts the face
        that much farther out than the portrait and the full-size frames show it. ``face_at_lookup`` (stage 1) puts
        the face there at the cost of the plain face view: the field is evaluated at its intersections moved to where
        the portrait's lookups show them (:func:`lookup_points`; depth and compositing order stay the
        intersections'); it equals the ``face_textures`` view for a field linear in x and y and differs from it by
        the fine textures' bilinear blur and by the manifolds' slope over the shift. ``hr_face_size`` (stage 1,
        ``field_hr_textures`` only) also renders the face view as stage 2 renders it at that side (its intersections
        traced at a quarter of the side, upsampled x4 and looked up in the fine textures, again only the texels read):
        the face crop that evaluation renders from the full-size model.

        Returns:
            ``image`` [B, 3, P, P] (P = H in stage 1, 4H in stage 2) and ``face`` [B, 3, face_size, face_size] in
            [-1, 1]; with ``hr_window``, ``window`` [B, 3, side, side], with ``hr_face_size``, ``hr_face``
            [B, 3, hr_face_size, hr_face_size], both in [-1, 1]; for the losses ``d`` and ``x``
            (portrait samples, see :meth:`intersect`), ``smoothed`` and ``transforms`` (see
            :meth:`canonical_samples`).
        """
        from aniportrait.cameras import face_rays, posed_head_transform

        cfg = self.config
        B, res, S = z_id.shape[0], cfg.lr_img_size, cfg.num_samples
        scale = 1 if stage == 1 else 4
        self._check_face_size(face_size, stage)
        if hr_face_size is not None:
            if stage != 1 or not cfg.field_hr_textures:
                raise ValueError("hr_face_size renders the face of a field_hr_textures model in stage 1 only")
            self._check_face_size(hr_face_size, 2)
        if texel_offset is not None and stage != 1:
            raise ValueError("texel_offset is for stage 1 (the low-resolution textures) only")
        if face_textures and (stage != 1 or not cfg.field_hr_textures):
            raise ValueError("face_textures reads the fine textures of a field_hr_textures model in stage 1 only")
        if face_at_lookup and (stage != 1 or face_textures):
            raise ValueError("face_at_lookup is for the stage-1 face view that evaluates the field (no face_textures)")
        if hr_window is not None:
            top, left, side = hr_window
            if stage != 1 or not cfg.field_hr_textures:
                raise ValueError("hr_window renders the full-size frame of a field_hr_textures model in stage 1 only")
            if side < 1 or top < 0 or left < 0 or max(top, left) + side > 4 * res:
                raise ValueError(f"hr_window {tuple(hr_window)} does not lie in the {4 * res}x{4 * res} frame")
        codes = self.identity_codes(z_id, z_noise)
        lr_features, style = self.manifold_textures(z_id, z_noise, impl=impl, codes=codes, texel_offset=texel_offset)
        if stage == 1:
            textures = lr_features[:, :4]
        elif cfg.field_hr_textures:
            textures = self.fine_field_textures(z_id, z_noise, codes, impl)
        else:
            textures = torch.sigmoid(self.sr_net(lr_features, style))
        skinning = body.inverse_skinning(betas, pose, mean_shape=self.config.mean_shape_canonical)

        def view(points: Tensor, origin: Tensor, direct: bool) -> tuple[Tensor, dict, dict]:
            samples, found = self.trace(body, points, pose, betas, z_id, expression, impl=impl, skinning=skinning)
            hits, valid = found["hits"], found["valid"]
            if direct and face_textures:
                color, _, _ = self._composite(self._textures_read(codes, hits, valid, impl), hits, valid, origin, impl)
            elif direct:
                color, _ = self._composite_field(codes, hits, valid, origin, impl, lookup=face_at_lookup)
            else:
                if stage == 2:
                    hits, valid = upsample_hits(hits, valid)
                color, _, _ = self._composite(textures, hits, valid, origin, impl, texel_offset)
            side = math.isqrt(color.shape[1])
            return color.reshape(B, side, side, 3).permute(0, 3, 1, 2), samples, found

        points, origin = portrait_rays(camera, res, S)
        image, samples, found = view(points, origin, direct=False)
        joints = body.joints(betas, torch.zeros_like(pose)).to(points.dtype)
        head = posed_head_transform(pose, joints)
        offset = torch.tensor(constants.ORIGIN_OFFSET, dtype=points.dtype, device=points.device)
        face_points, face_origin = face_rays(head, face_size // scale, S, view_origin=origin + offset)
        face, _, _ = view(face_points, face_origin, direct=stage == 1)
        out = {
            "image": image,
            "face": face,
            "d": found["d"],
            "x": found["x"],
            "smoothed": samples["smoothed"],
            "transforms": samples["transforms"],
        }
        if hr_face_size is not None:
            points_hr, origin_hr = face_rays(head, hr_face_size // 4, S, view_origin=origin + offset)
            _, found_hr = self.trace(body, points_hr, pose, betas, z_id, expression, impl=impl, skinning=skinning)
            hits_hr, valid_hr = upsample_hits(found_hr["hits"], found_hr["valid"])
            textures = self._textures_read(codes, hits_hr, valid_hr, impl)
            hr_face, _, _ = self._composite(textures, hits_hr, valid_hr, origin_hr, impl)
            out["hr_face"] = hr_face.reshape(B, hr_face_size, hr_face_size, 3).permute(0, 3, 1, 2)
        if hr_window is not None:
            hits_hr, valid_hr = upsample_hits(found["hits"], found["valid"])
            rows = torch.arange(top, top + side, device=hits_hr.device)
            cols = torch.arange(left, left + side, device=hits_hr.device)
            pixels = (rows[:, None] * 4 * res + cols).reshape(-1)
            hits_hr, valid_hr = hits_hr[:, pixels], valid_hr[:, pixels]
            textures = self._textures_read(codes, hits_hr, valid_hr, impl)
            window, _, _ = self._composite(textures, hits_hr, valid_hr, origin, impl)
            out["window"] = window.reshape(B, side, side, 3).permute(0, 3, 1, 2)
        return out

    def _textures_read(self, codes: tuple[Tensor, Tensor, Tensor], hits: Tensor, valid: Tensor, impl: Impl) -> Tensor:
        """The fine (``hr_img_size``) textures of ``field_hr_textures`` [B * M, 4, hr, hr] with only the texels that
        :meth:`_composite`'s bilinear lookups at the valid intersections ``hits`` [B, P, M, 3] read: each computed as
        :meth:`manifold_textures` computes it (SampleNet's texel points over their bounding box, RadianceNet at the
        texels each identity's manifolds read), every other texel zero (only invalid intersections, which get no
        weight, read those)."""
        cfg = self.config
        side, (B, P, M, _) = cfg.hr_img_size, hits.shape
        with torch.no_grad():
            # align_corners=False with border padding: the clamped texel coordinate and its two neighbours per axis.
            index = (((texture_uv(hits) + 1) * side - 1) / 2).clamp(0, side - 1)
            low = index.floor().long()
            high = (low + 1).clamp(max=side - 1)
            item_manifold = torch.arange(B, device=hits.device)[:, None] * M + torch.arange(M, device=hits.device)
            base = item_manifold[:, None, :].expand(B, P, M) * side * side
            needed = torch.zeros(B * M * side * side, dtype=torch.bool, device=hits.device)
            for col in (low[..., 0], high[..., 0]):
                for row in (low[..., 1], high[..., 1]):
                    needed[(base + row * side + col)[valid]] = True
            needed = needed.view(B, M, side, side)
            if not bool(needed.any()):
                return hits.new_zeros(B * M, 4, side, side)
            rows = needed.any(dim=(0, 1, 3)).nonzero()[:, 0]
            cols = needed.any(dim=(0, 1, 2)).nonzero()[:, 0]
            rect = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            height, width = rect[1] - rect[0], rect[3] - rect[2]
            # [B, texel, manifold] in the texel points' order, the needed ones first in each item.
            flat = needed[:, :, rect[0] : rect[1], rect[2] : rect[3]].permute(0, 2, 3, 1).reshape(B, -1)
            order = selected_first(flat)
        texel_hits, texel_valid = self._orthogonal_intersections(1, hits.device, hits.dtype, impl, side, rect=rect)
        points = texel_hits[0][order]  # [B, count, 3]
        freq, phase, _ = codes
        view_dir = torch.tensor([0.0, 0.0, -1.0], device=hits.device, dtype=hits.dtype).expand(B, 1, 3)
        rgb, sigma, _ = _chunked(lambda p: self.radiance_net.features(p, freq, phase, view_dir), points)
        alpha = texture_alpha(sigma) * texel_valid.reshape(-1)[order][..., None].to(sigma.dtype)
        texels = hits.new_zeros(B, height * width * M, 4).scatter(
            1, order[..., None].expand(-1, -1, 4), torch.cat([rgb, alpha], dim=-1)
        )
        texels = texels.reshape(B, height, width, M, 4).permute(0, 3, 4, 1, 2).reshape(B * M, 4, height, width)
        textures = hits.new_zeros(B * M, 4, side, side)
        textures[:, :, rect[0] : rect[1], rect[2] : rect[3]] = texels
        return textures

    def _composite_field(
        self,
        codes: tuple[Tensor, Tensor, Tensor],
        hits: Tensor,
        valid: Tensor,
        origin: Tensor,
        impl: Impl,
        *,
        lookup: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Evaluate RadianceNet at the intersections (view direction locked to (0, 0, -1) as for the textures; with
        ``lookup`` where the low-resolution textures' lookups show them, :func:`lookup_points`) and composite:
        pixels [B, P, 3], depth [B, P] (the intersections')."""
        freq, phase, _ = codes
        B, P, M, _ = hits.shape
        view_dir = torch.tensor([0.0, 0.0, -1.0], device=hits.device, dtype=hits.dtype).expand(B, 1, 3)
        # Only valid intersections reach the image (invalid ones get alpha 0): evaluate those, valid ones first in
        # each batch item, padded to the largest count.
        flat_valid = valid.reshape(B, P * M)
        order = selected_first(flat_valid)
        points = torch.gather(hits.reshape(B, P * M, 3), 1, order[..., None].expand(-1, -1, 3))
        if lookup and not self.config.texel_centres:  # with texel_centres a lookup shows the field where it is
            points = lookup_points(points, self.config.lr_img_size)
        rgb_valid, sigma_valid, _ = self.radiance_net.features(points, freq, phase, view_dir)
        rgb = hits.new_zeros(B, P * M, 3).scatter(1, order[..., None].expand(-1, -1, 3), rgb_valid)
        sigma = hits.new_zeros(B, P * M).scatter(1, order, sigma_valid[..., 0])
        rgb, sigma = rgb.reshape(B, P, M, 3), sigma.reshape(B, P, M)
        alpha = texture_alpha(sigma) * valid.to(sigma.dtype)
        z = torch.linalg.vector_norm(hits - origin[:, None, None, :], dim=-1)
        color, depth, _ = ops.volume_composite(rgb, alpha, z, valid=valid, white_back=True, impl=impl)
        return 2 * color - 1, depth

    def _composite(
        self,
        textures: Tensor,
        hits: Tensor,
        valid: Tensor,
        origin: Tensor,
        impl: Impl,
        texel_offset: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Look up each manifold's texture at its intersections and composite: pixels [B, P, 3], depth [B, P] (the
        distance of the canonical intersections from ``origin``, as the release measures depth) and the compositing
        weights [B, P, M]. ``texel_offset``: the offset the textures' texels were laid out with
        (:meth:`manifold_textures`); the lookup moves back by as much, so it reads the same canonical points."""
        B, P, M, _ = hits.shape
        uv = texture_uv(hits)  # [B, P, M, 2]
        if texel_offset is not None:  # align_corners=False: one texel is 2 / side in uv
            uv = uv - 2.0 * texel_offset.to(uv.dtype) / textures.shape[-1]
        grid = uv.permute(0, 2, 1, 3).reshape(B * M, 1, P, 2)
        rgba = F.grid_sample(textures.to(hits.dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)
        rgba = rgba.reshape(B, M, 4, P).permute(0, 3, 1, 2)  # [B, P, M, 4]
        z = torch.linalg.vector_norm(hits - origin[:, None, None, :], dim=-1)
        color, depth, weights = ops.volume_composite(
            rgba[..., :3], rgba[..., 3], z, valid=valid, white_back=True, impl=impl
        )
        return 2 * color - 1, depth, weights

    def generate(self, body: BodyModel, seeds: list[int], camera: Tensor, pose: Tensor, expression: Tensor, **kwargs):
        """Uncached convenience path: prepare the identities of ``seeds`` and render one frame."""
        z_id, z_noise, betas = (
            t.to(self.levels.device) for t in sample_identity_latents(self.config, seeds, id_bank=self.id_bank)
        )
        impl = kwargs.pop("impl", "auto")
        identity = self.prepare_identity(z_id, z_noise, betas, impl=impl, **kwargs)
        return self.render_frame(identity, body, camera, pose, expression, impl=impl)
