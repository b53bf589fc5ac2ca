"""The generator end to end on the tiny config: shapes, caching, ref vs Triton, pose and truncation behaviour."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from aniportrait import constants
from aniportrait.cameras import portrait_rays
from aniportrait.config import SMALL, SSHQ512, TINY
from aniportrait.kernels._testing import assert_close
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import (
    TRUNCATION_SAMPLES,
    TRUNCATION_SEED,
    AniPortraitGenerator,
    init_planar_manifolds,
    sample_identity_latents,
)

FRONT = (math.pi / 2, math.pi / 2)


def _controls(n, yaw=0.0, head=0.0, expression=0.0):
    camera = torch.tensor([[FRONT[0], FRONT[1] + yaw]] * n)
    pose = torch.zeros(n, 6, 3)
    pose[:, 3, 2] = head  # joint 15 (head), rotation about X: a nod
    return camera, pose, torch.full((n, TINY.z_exp_dim), expression)


def _identity(generator, seeds, psi=0.7, impl="ref"):
    z_id, z_noise, betas = sample_identity_latents(TINY, seeds)
    return generator.prepare_identity(z_id, z_noise, betas, psi=psi, impl=impl)


@torch.no_grad()
def test_frame_shapes_and_ranges(generator, body):
    identity = _identity(generator, [0, 1])
    out = generator.render_frame(identity, body, *_controls(2, yaw=0.2), impl="ref")
    hr, lr = TINY.hr_img_size, TINY.lr_img_size
    assert out["image"].shape == (2, 3, hr, hr) and out["image_lr"].shape == (2, 3, lr, lr)
    assert out["depth"].shape == (2, 1, hr, hr) and out["depth_lr"].shape == (2, 1, lr, lr)
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    assert out["image"].min() >= -1 and out["image"].max() <= 1
    hit = out["depth"] < constants.INVALID_DEPTH
    assert hit.float().mean() > 0.5, "planar manifolds should cover most pixels"
    assert (out["depth"][hit] > constants.RAY_START - 0.1).all() and (out["depth"][hit] < constants.RAY_END + 0.1).all()
    assert identity.hr_textures.shape == (2 * TINY.num_manifolds, 4, hr, hr)
    assert identity.hr_textures.min() >= 0 and identity.hr_textures.max() <= 1


@torch.no_grad()
def test_cached_and_uncached_identity_give_identical_frames(generator, body):
    controls = _controls(1, yaw=-0.1, head=0.15, expression=0.5)
    cached = _identity(generator, [3])
    first = generator.render_frame(cached, body, *controls, impl="ref")
    generator.render_frame(cached, body, *_controls(1, yaw=0.3), impl="ref")  # another frame in between
    again = generator.render_frame(cached, body, *controls, impl="ref")
    uncached = generator.generate(body, [3], *controls, impl="ref")
    for key in first:
        assert torch.equal(first[key], again[key]), key
        assert torch.equal(first[key], uncached[key]), key


@pytest.mark.interpret
@torch.no_grad()
def test_triton_matches_ref_end_to_end(generator, body):
    controls = _controls(1, yaw=0.25, head=0.1, expression=0.3)
    ref = generator.render_frame(_identity(generator, [5], impl="ref"), body, *controls, impl="ref")
    tri = generator.render_frame(_identity(generator, [5], impl="triton"), body, *controls, impl="triton")
    for key in ref:
        assert_close(tri[key], ref[key], atol=1e-4, rtol=1e-4, name=key)


@torch.no_grad()
def test_zero_pose_leaves_samples_unchanged(generator, body):
    camera, pose, _ = _controls(2, yaw=0.2)
    betas = torch.zeros(2, TINY.betas_dim)
    points, _ = portrait_rays(camera, TINY.lr_img_size, TINY.num_samples)
    x_can = generator.canonical_samples(body, points, pose, betas, impl="ref")["x_can"]
    assert_close(x_can, points, atol=1e-5, rtol=0, name="x_can")


@torch.no_grad()
def test_zero_initialised_deformation_is_identity(body):
    torch.manual_seed(1)
    g = AniPortraitGenerator(TINY).eval()
    freq, phase = g.deform_net.mapping(torch.randn(1, TINY.z_id_dim + TINY.z_exp_dim))
    x = torch.randn(1, 50, 3) * 0.1
    new_coords, d = g.deform_net(x, freq, phase)
    assert torch.equal(d, torch.zeros_like(d))
    assert torch.equal(new_coords, x * constants.WARP_SCALE)


@torch.no_grad()
def test_pose_and_expression_change_the_frame(generator, body):
    identity = _identity(generator, [0])
    torch.manual_seed(2)
    generator_exp = AniPortraitGenerator(TINY).eval()
    generator_exp.load_state_dict(generator.state_dict())
    torch.nn.init.normal_(generator_exp.deform_net.final_layer.weight, std=0.05)  # a non-zero expression response
    base = generator_exp.render_frame(identity, body, *_controls(1), impl="ref")
    nod = generator_exp.render_frame(identity, body, *_controls(1, head=0.3), impl="ref")
    smile = generator_exp.render_frame(identity, body, *_controls(1, expression=1.0), impl="ref")
    assert (base["depth"] - nod["depth"]).abs().max() > 1e-3
    assert (base["image"] - smile["image"]).abs().max() > 1e-3


@torch.no_grad()
def test_truncation_zero_collapses_identities(generator, body):
    zero = _identity(generator, [0, 1], psi=0.0)
    assert_close(zero.hr_textures[: TINY.num_manifolds], zero.hr_textures[TINY.num_manifolds :], atol=1e-6, rtol=0)
    full = _identity(generator, [0, 1], psi=1.0)
    assert (full.hr_textures[: TINY.num_manifolds] - full.hr_textures[TINY.num_manifolds :]).abs().max() > 1e-3


def test_seeds_are_deterministic_and_distinct():
    a = sample_identity_latents(TINY, [0, 1])
    b = sample_identity_latents(TINY, [0, 1])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0][0], a[0][1])


def test_full_size_generator_has_the_release_parameter_count():
    g = AniPortraitGenerator(SSHQ512)
    assert sum(p.numel() for p in g.parameters()) == 5_570_696
    assert len(g.state_dict()) == 234  # 244 release keys minus the duplicated smoother (2) and SMPL buffers (8)


# -- dual-camera training renders ----------------------------------------------------------------------------------


def _striped_field(period: float):
    """A RadianceNet stand-in: opaque everywhere, colour = stripes along canonical x with ``period``."""

    def features(points, freq, phase, view_dir):
        stripes = 0.5 + 0.4 * torch.sin(2 * math.pi * points[..., :1] / period)
        rgb = stripes.expand(*points.shape[:-1], 3)
        sigma = torch.full_like(points[..., :1], 1e4)
        return rgb, sigma, torch.zeros(*points.shape[:-1], TINY.feature_dim)

    return features


def _ramp_field(points, freq, phase, view_dir):
    """A RadianceNet stand-in: opaque everywhere, colour linear in canonical x and y (bilinear lookups are exact)."""
    rgb = torch.stack([0.5 + points[..., 0], 0.5 + points[..., 1], 0.5 - points[..., 0]], dim=-1)
    sigma = torch.full_like(points[..., :1], 1e4)
    return rgb, sigma, torch.zeros(*points.shape[:-1], TINY.feature_dim)


@torch.no_grad()
def test_stage1_face_view_holds_detail_finer_than_a_portrait_texel(body, monkeypatch):
    """The face camera evaluates the field at its own intersections: stripes one texel apart, which the manifold
    textures sample at a single phase (flat), show in the face image at full contrast."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(TINY).eval()
    from aniportrait.models.generator import init_planar_manifolds

    init_planar_manifolds(generator)
    texel = 2 * constants.SAMPLE_SCALE / (TINY.lr_img_size - 1)  # texture texels sit at linspace(-0.22, 0.22, H)
    monkeypatch.setattr(generator.radiance_net, "features", _striped_field(period=texel))
    z_id, z_noise, betas = sample_identity_latents(TINY, [0])
    camera, pose, expression = _controls(1)
    face_size = 32  # 0.21 units / 32 px: about 4.4 face pixels per stripe period
    out = generator.render_train(body, z_id, z_noise, betas, expression, camera, pose, face_size=face_size, impl="ref")
    face, portrait = out["face"][0, 0], out["image"][0, 0]
    centre = slice(face_size // 4, 3 * face_size // 4)
    face_contrast = float(face[centre, centre].std())
    lr = TINY.lr_img_size
    portrait_contrast = float(portrait[lr // 4 : 3 * lr // 4, lr // 4 : 3 * lr // 4].std())
    assert face_contrast > 0.4, "the face view shows the stripes"
    assert portrait_contrast < 0.05, "the textures cannot hold them: one texel apart, they sample one phase"


@torch.no_grad()
def test_field_hr_textures_hold_detail_finer_than_a_low_resolution_texel(body, monkeypatch):
    """With ``field_hr_textures`` the high-resolution textures are the field at the fine texels: stripes one
    low-resolution texel apart, flat in the low-resolution textures (one phase), show in the full-size frame."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(dataclasses.replace(TINY, field_hr_textures=True)).eval()
    init_planar_manifolds(generator)
    texel = 2 * constants.SAMPLE_SCALE / (TINY.lr_img_size - 1)
    monkeypatch.setattr(generator.radiance_net, "features", _striped_field(period=texel))
    identity = _identity(generator, [0])
    out = generator.render_frame(identity, body, *_controls(1), impl="ref")
    lr, hr = TINY.lr_img_size, TINY.hr_img_size
    assert float(out["image_lr"][0, 0, lr // 4 : 3 * lr // 4, lr // 4 : 3 * lr // 4].std()) < 0.05
    assert float(out["image"][0, 0, hr // 4 : 3 * hr // 4, hr // 4 : 3 * hr // 4].std()) > 0.3
    z_id, z_noise, _ = sample_identity_latents(TINY, [0])
    fine, _ = generator.manifold_textures(z_id, z_noise, psi=0.7, impl="ref", side=hr)
    assert torch.equal(identity.hr_textures, fine[:, :4])


@torch.no_grad()
def test_field_hr_textures_show_the_figure_the_low_resolution_lookup_shows(monkeypatch):
    """Textures are looked up with align_corners=False over linspace-laid texels (the release's quirk), which scales
    a side-N texture's content by N / (N - 1) about the box's centre. The fine textures are laid out where the
    coarse lookup reads, so for a field linear in x and y both lookups give the same colour at every point (on the
    linspace layout they would differ by the two sides' scales, about 5% of the offset here)."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(dataclasses.replace(TINY, field_hr_textures=True)).eval()
    init_planar_manifolds(generator)
    monkeypatch.setattr(generator.radiance_net, "features", _ramp_field)
    z_id, z_noise, _ = sample_identity_latents(TINY, [0])
    coarse = generator.manifold_textures(z_id, z_noise, impl="ref")[0][:, :3]
    fine = generator.manifold_textures(z_id, z_noise, impl="ref", side=TINY.hr_img_size)[0][:, :3]
    assert fine.shape[-1] == 4 * coarse.shape[-1]
    uv = (torch.rand(1, 1, 500, 2, generator=torch.Generator().manual_seed(3)) * 1.6 - 0.8).expand(
        coarse.shape[0], -1, -1, -1
    )
    read = [F.grid_sample(t, uv, mode="bilinear", align_corners=False) for t in (coarse, fine)]
    assert_close(read[1], read[0], atol=1e-5, rtol=0)
    assert float((read[0] - 0.5).abs().max()) > 0.1  # the ramps vary over the points read


@torch.no_grad()
def test_a_texel_offset_moves_the_texels_and_the_lookup_together(body, monkeypatch):
    """Training's texel jitter: textures laid out a fraction of a texel off the grid sample the field at other
    points, and the lookup moves with them, so a field linear in x and y renders the same portrait; stage 2 refuses
    an offset."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(TINY).eval()
    init_planar_manifolds(generator)
    monkeypatch.setattr(generator.radiance_net, "features", _ramp_field)
    z_id, z_noise, betas = sample_identity_latents(TINY, [0])
    offset = torch.tensor([0.3, -0.4])
    plain = generator.manifold_textures(z_id, z_noise, impl="ref")[0]
    moved = generator.manifold_textures(z_id, z_noise, impl="ref", texel_offset=offset)[0]
    assert (moved - plain)[:, :3].abs().max() > 1e-3  # other points of the field
    camera, pose, expression = _controls(1, yaw=0.2)
    args = (body, z_id, z_noise, betas, expression, camera, pose)
    out = generator.render_train(*args, face_size=16, impl="ref")
    jittered = generator.render_train(*args, face_size=16, impl="ref", texel_offset=offset)
    # Inside the box: at its edges the lookup clamps to the edge texels, which the offset moves.
    inner = (..., slice(2, -2), slice(2, -2))
    assert_close(jittered["image"][inner], out["image"][inner], atol=1e-5, rtol=0)
    assert float((out["image"][inner] - 1).abs().max()) > 0.2  # the figure covers part of the frame
    with pytest.raises(ValueError, match="stage 1"):
        generator.render_train(*args, face_size=64, stage=2, impl="ref", texel_offset=offset)


@torch.no_grad()
def test_a_full_size_window_is_that_window_of_the_frame(body):
    """``hr_window`` renders a window of the full-size frame from only the fine texels its lookups read: it equals
    that window of the frame rendered from the whole fine textures (random weights, so a texel left out would show),
    and bad windows are refused."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(dataclasses.replace(TINY, field_hr_textures=True)).eval()
    init_planar_manifolds(generator)
    z_id, z_noise, betas = sample_identity_latents(TINY, [0, 1])
    camera, pose, expression = _controls(2, yaw=0.3, head=0.2, expression=0.5)
    args = (body, z_id, z_noise, betas, expression, camera, pose)
    identity = generator.prepare_identity(z_id, z_noise, betas, psi=1.0, impl="ref")
    frame = generator.render_frame(identity, body, camera, pose, expression, impl="ref")["image"]
    hr = TINY.hr_img_size
    for top, left, side in [(9, 22, 27), (0, hr - 1, 1), (0, 0, hr)]:  # odd and off-centre, one pixel, the frame
        out = generator.render_train(*args, face_size=16, impl="ref", hr_window=(top, left, side))
        crop = frame[..., top : top + side, left : left + side]
        assert out["window"].shape == (2, 3, side, side)
        assert_close(out["window"], crop, atol=1e-5, rtol=0)
    assert float((frame - 1).abs().max()) > 0.2  # the figure shows
    assert "window" not in generator.render_train(*args, face_size=16, impl="ref")
    for bad in [(0, hr - 3, 4), (-1, 0, 4), (0, 0, 0)]:
        with pytest.raises(ValueError, match="does not lie"):
            generator.render_train(*args, face_size=16, impl="ref", hr_window=bad)
    with pytest.raises(ValueError, match="stage 1"):
        generator.render_train(*args, face_size=64, stage=2, impl="ref", hr_window=(0, 0, 4))
    plain = AniPortraitGenerator(TINY).eval()
    with pytest.raises(ValueError, match="field_hr_textures"):
        plain.render_train(*args, face_size=16, impl="ref", hr_window=(0, 0, 4))


@torch.no_grad()
def test_the_full_size_face_is_the_face_stage_two_renders(body):
    """``hr_face_size`` renders the face view as stage 2 does (traced at a quarter of the side, upsampled, looked up in
    the fine textures) from only the fine texels it reads: it equals stage 2's face view of the same labels (random
    weights, so a texel left out would show), differs from the stage-1 face, and bad uses are refused."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(dataclasses.replace(TINY, field_hr_textures=True)).eval()
    init_planar_manifolds(generator)
    z_id, z_noise, betas = sample_identity_latents(TINY, [0, 1])
    camera, pose, expression = _controls(2, yaw=-0.2, head=0.3, expression=0.7)
    args = (body, z_id, z_noise, betas, expression, camera, pose)
    side = generator.default_face_size(2)
    out = generator.render_train(*args, face_size=16, impl="ref", hr_face_size=side)
    stage2 = generator.render_train(*args, face_size=side, stage=2, impl="ref")["face"]
    assert out["hr_face"].shape == (2, 3, side, side)
    assert_close(out["hr_face"], stage2, atol=1e-5, rtol=0)
    assert float((stage2 - 1).abs().mean()) > 0.05 and float(stage2.std()) > 1e-3  # the figure, not background
    plain = generator.render_train(*args, face_size=side, impl="ref")["face"]  # stage 1 at the same side
    assert float((plain - stage2).abs().mean()) > 1e-3
    assert "hr_face" not in generator.render_train(*args, face_size=16, impl="ref")
    with pytest.raises(ValueError, match="does not fit stage 2"):
        generator.render_train(*args, face_size=16, impl="ref", hr_face_size=side + 2)
    with pytest.raises(ValueError, match="stage 1"):
        generator.render_train(*args, face_size=side, stage=2, impl="ref", hr_face_size=side)
    with pytest.raises(ValueError, match="field_hr_textures"):
        AniPortraitGenerator(TINY).eval().render_train(*args, face_size=16, impl="ref", hr_face_size=side)


@torch.no_grad()
def test_with_texel_centres_every_view_shows_the_field_where_it_is(body, monkeypatch):
    """``texel_centres``: the coarse and the fine textures, read anywhere inside the box, give a field linear in x
    and y at the point read; the stage-1 face view through the fine textures equals the one that evaluates the field
    at its own intersections (the portrait, the full-size frames and the face view agree), and ``face_at_lookup``
    changes nothing. Without it the textured face differs (the release's layout, the test below)."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(dataclasses.replace(TINY, field_hr_textures=True, texel_centres=True)).eval()
    init_planar_manifolds(generator)
    monkeypatch.setattr(generator.radiance_net, "features", _ramp_field)
    z_id, z_noise, betas = sample_identity_latents(TINY, [0, 1])
    coarse = generator.manifold_textures(z_id, z_noise, impl="ref")[0][:, :3]
    fine = generator.manifold_textures(z_id, z_noise, impl="ref", side=TINY.hr_img_size)[0][:, :3]
    lr = TINY.lr_img_size
    uv = (torch.rand(1, 1, 500, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1) * (1 - 1 / lr)
    x = uv[..., 0] * constants.SAMPLE_SCALE
    y = uv[..., 1] * constants.SAMPLE_SCALE + constants.SAMPLE_CENTER
    field = torch.stack([0.5 + x, 0.5 + y, 0.5 - x], dim=1)  # _ramp_field at the points read, [1, 3, 1, 500]
    for texture in (coarse, fine):
        read = F.grid_sample(texture, uv.expand(texture.shape[0], -1, -1, -1), mode="bilinear", align_corners=False)
        assert_close(read, field.expand_as(read), atol=1e-5, rtol=0)
    camera, pose, expression = _controls(2, yaw=0.3, head=0.2)
    args = (body, z_id, z_noise, betas, expression, camera, pose)
    read = generator.render_train(*args, face_size=16, impl="ref", face_textures=True)["face"]
    plain = generator.render_train(*args, face_size=16, impl="ref")["face"]
    moved = generator.render_train(*args, face_size=16, impl="ref", face_at_lookup=True)["face"]
    assert_close(read, plain, atol=1e-4, rtol=0)
    assert torch.equal(moved, plain)
    assert float((plain - 1).abs().max()) > 0.2  # the figure shows


@torch.no_grad()
def test_a_face_view_through_the_textures_shows_the_field_where_the_lookups_do(body, monkeypatch):
    """Textures are looked up with align_corners=False over linspace-laid texels, so a lookup shows the field at
    N / (N - 1) times the point's offset from the box's centre. With ``face_textures`` the stage-1 face view reads the
    fine textures: for a field linear in x and y it equals the face view that evaluates, at its own intersections,
    that field scaled so, and differs from the plain face view."""
    torch.manual_seed(0)
    generator = AniPortraitGenerator(dataclasses.replace(TINY, field_hr_textures=True)).eval()
    init_planar_manifolds(generator)
    z_id, z_noise, betas = sample_identity_latents(TINY, [0, 1])
    camera, pose, expression = _controls(2, yaw=0.3, head=0.2)
    args = (body, z_id, z_noise, betas, expression, camera, pose)
    monkeypatch.setattr(generator.radiance_net, "features", _ramp_field)
    read = generator.render_train(*args, face_size=16, impl="ref", face_textures=True)["face"]
    plain = generator.render_train(*args, face_size=16, impl="ref")["face"]
    k = TINY.lr_img_size / (TINY.lr_img_size - 1)
    centre = torch.tensor([0.0, constants.SAMPLE_CENTER, 0.0])

    def scaled(points, *rest):
        moved = torch.cat([centre[:2] + k * (points[..., :2] - centre[:2]), points[..., 2:]], dim=-1)
        return _ramp_field(moved, *rest)

    monkeypatch.setattr(generator.radiance_net, "features", scaled)
    expected = generator.render_train(*args, face_size=16, impl="ref")["face"]
    assert_close(read, expected, atol=1e-4, rtol=0)
    assert float((read - plain).abs().max()) > 5e-3
    # face_at_lookup evaluates the field at the points so moved: the same face as the fine textures show.
    monkeypatch.setattr(generator.radiance_net, "features", _ramp_field)
    moved = generator.render_train(*args, face_size=16, impl="ref", face_at_lookup=True)["face"]
    assert_close(moved, read, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="face_at_lookup"):
        generator.render_train(*args, face_size=16, impl="ref", face_textures=True, face_at_lookup=True)
    with pytest.raises(ValueError, match="face_at_lookup"):
        generator.render_train(*args, face_size=64, stage=2, impl="ref", face_at_lookup=True)
    with pytest.raises(ValueError, match="stage 1"):
        generator.render_train(*args, face_size=64, stage=2, impl="ref", face_textures=True)
    with pytest.raises(ValueError, match="field_hr_textures"):
        AniPortraitGenerator(TINY).eval().render_train(*args, face_size=16, impl="ref", face_textures=True)


@torch.no_grad()
def test_field_hr_textures_leave_the_super_resolved_path_alone(generator, body):
    """The flag changes only where the high-resolution textures come from: the LR frame is the same."""
    field = AniPortraitGenerator(dataclasses.replace(TINY, field_hr_textures=True)).eval()
    field.load_state_dict(generator.state_dict())
    plain_id, field_id = _identity(generator, [0, 1]), _identity(field, [0, 1])
    assert torch.equal(plain_id.lr_textures, field_id.lr_textures)
    assert field_id.hr_textures.shape == plain_id.hr_textures.shape
    assert not torch.allclose(field_id.hr_textures, plain_id.hr_textures)
    controls = _controls(2, yaw=0.2)
    plain = generator.render_frame(plain_id, body, *controls, impl="ref")
    fielded = field.render_frame(field_id, body, *controls, impl="ref")
    assert torch.equal(plain["image_lr"], fielded["image_lr"])
    assert fielded["image"].shape == plain["image"].shape and fielded["image"].abs().max() <= 1


def test_face_field_composite_evaluates_only_valid_intersections_and_matches_all_points(generator):
    """Valid-only evaluation (gathered, padded per item) equals evaluating every intersection and masking."""
    from aniportrait import ops
    from aniportrait.models.generator import texture_alpha

    g = torch.Generator().manual_seed(1)
    B, P, M = 2, 30, TINY.num_manifolds
    hits = 0.1 * torch.randn(B, P, M, 3, generator=g)
    valid = torch.rand(B, P, M, generator=g) > 0.4
    valid[1, :, :] &= torch.rand(P, M, generator=g) > 0.5  # items with different counts
    origin = torch.tensor([[0.0, 0.0, 1.9]]).expand(B, 3)
    codes = generator.identity_codes(*sample_identity_latents(TINY, [0, 1])[:2])
    calls = []
    features = generator.radiance_net.features

    def counting(points, *args):
        calls.append(points.shape[1])
        return features(points, *args)

    generator.radiance_net.features = counting
    try:
        color, depth = generator._composite_field(codes, hits, valid, origin, "ref")
    finally:
        del generator.radiance_net.features
    assert calls == [int(valid.reshape(B, -1).sum(1).max())]
    view = torch.tensor([[[0.0, 0.0, -1.0]]]).expand(B, 1, 3)
    rgb, sigma, _ = features(hits, codes[0], codes[1], view)
    alpha = texture_alpha(sigma[..., 0]) * valid
    z = torch.linalg.vector_norm(hits - origin[:, None, None, :], dim=-1)
    ref_color, ref_depth, _ = ops.volume_composite(rgb, alpha, z, valid=valid, white_back=True, impl="ref")
    torch.testing.assert_close(color, 2 * ref_color - 1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(depth, ref_depth, atol=1e-5, rtol=1e-5)


def test_a_head_turn_leaves_the_shoulders_canonical_samples_in_place():
    """The LBS smoother's footprint fits the small model's 16x16x8 grid: turning the head (0.5 rad) must not move
    the canonical coordinates of samples on the shoulders and chest (the bottom quarter of a frontal frame, within
    0.02 of the posed body). With the release's 9x9x5 kernels on this grid they moved by 0.0095 on average (the
    head's transforms smeared over half the image); with 3x3x1 by 0.0005."""
    body = BodyModel.procedural()
    side = SMALL.lr_img_size
    points, _ = portrait_rays(torch.tensor([[math.pi / 2, math.pi / 2]]), side, SMALL.num_samples)
    rest = torch.zeros(1, 6, 3)
    turned = rest.clone()
    turned[0, 3, 1] = 0.5  # joint 15 (the head), about y
    betas = torch.zeros(1, 10)
    verts, _ = body.inverse_skinning(betas, rest)
    near_body = torch.cdist(points.reshape(1, -1, 3), verts.float()).min(-1).values.reshape(side, side, -1) < 0.02
    near_body[: 3 * side // 4] = False
    generator = AniPortraitGenerator(SMALL)
    with torch.no_grad():
        before = generator.canonical_samples(body, points, rest, betas)["x_can"].reshape(side, side, -1, 3)
        after = generator.canonical_samples(body, points, turned, betas)["x_can"].reshape(side, side, -1, 3)
    moved = (after - before).norm(dim=-1)
    assert near_body.sum() > 200
    assert moved[near_body].mean() < 0.002, moved[near_body].mean()
    # The face does turn.
    assert moved[: side // 2].mean() > 0.03


@torch.no_grad()
def test_super_resolution_runs_channels_last_with_the_nchw_values(generator):
    z_id, z_noise, betas = sample_identity_latents(TINY, [2])
    identity = generator.prepare_identity(z_id, z_noise, betas, psi=0.7, impl="ref")
    lr_features, style = generator.manifold_textures(z_id, z_noise, psi=0.7, impl="ref")
    nchw = torch.sigmoid(generator.sr_net(lr_features, style))
    assert identity.hr_textures.is_contiguous()
    assert_close(identity.hr_textures, nchw, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_bf16_paths_stay_near_fp32_and_bad_precisions_are_refused(generator, body):
    z_id, z_noise, betas = sample_identity_latents(TINY, [2])
    exact = generator.prepare_identity(z_id, z_noise, betas, impl="ref")
    fast = generator.prepare_identity(z_id, z_noise, betas, impl="ref", sr_precision="bf16")
    assert fast.hr_textures.dtype == torch.float32
    difference = (fast.hr_textures - exact.hr_textures).abs()
    assert 0 < difference.max() < 0.02 and difference.mean() < 2e-3  # bf16 keeps 8 bits of mantissa
    controls = _controls(1, yaw=0.2, head=0.1, expression=0.5)
    frames = {p: generator.render_frame(exact, body, *controls, impl="ref", precision=p) for p in ("fp32", "bf16")}
    assert (frames["bf16"]["image"] - frames["fp32"]["image"]).abs().mean() < 0.02
    with pytest.raises(ValueError, match="sr_precision must be one of fp32, bf16"):
        generator.prepare_identity(z_id, z_noise, betas, impl="ref", sr_precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16-deform, bf16"):
        generator.render_frame(exact, body, *controls, impl="ref", precision="fp16")


@torch.no_grad()
def test_bf16_deform_rounds_only_the_expression_displacement(body):
    torch.manual_seed(0)
    generator = AniPortraitGenerator(TINY).eval()
    init_planar_manifolds(generator)
    identity = _identity(generator, [1])
    controls = _controls(1, yaw=0.2, head=0.1, expression=0.5)

    def frame(precision):
        found, _ = generator._frame_intersections(identity, body, *controls, "ref", precision, "exact")
        image = generator.render_frame(identity, body, *controls, impl="ref", precision=precision)["image"]
        return found, image

    # DeformNet's zero-initialised final layer: no displacement to round, and the scalar field runs in fp32.
    (exact, exact_image), (fast, fast_image) = frame("fp32"), frame("bf16-deform")
    assert torch.equal(fast["d"], exact["d"]) and torch.equal(fast["s"], exact["s"])
    assert torch.equal(fast_image, exact_image)
    # A displacement of about 4 mm everywhere: bf16 rounds it by a small fraction of itself.
    torch.nn.init.normal_(generator.deform_net.final_layer.weight, std=2e-3)
    (exact, exact_image), (fast, fast_image) = frame("fp32"), frame("bf16-deform")
    scale = exact["d"].abs().mean()
    assert scale > 1e-3
    assert (fast["d"] - exact["d"]).abs().mean() < 0.1 * scale  # about 4% on this project's AMD EPYC
    assert (fast_image - exact_image).abs().mean() < 2e-3


def test_texture_intersections_are_cached_until_samplenet_changes():
    torch.manual_seed(0)
    generator = AniPortraitGenerator(TINY).eval()
    init_planar_manifolds(generator)
    z_id, z_noise, _ = sample_identity_latents(TINY, [0, 1])
    with torch.enable_grad():  # the uncached path, per identity (training's)
        fresh = generator.manifold_textures(z_id, z_noise, psi=0.7, impl="ref")[0].detach()
    with torch.no_grad():
        cached = generator.manifold_textures(z_id, z_noise, psi=0.7, impl="ref")[0]
        hits, valid = generator.texture_intersections("cpu", torch.float32, "ref")
        assert generator.texture_intersections("cpu", torch.float32, "ref")[0] is hits  # reused
        assert valid.shape == (1, TINY.lr_img_size**2, TINY.num_manifolds) and valid.dtype == torch.bool
        fine_hits, _ = generator.texture_intersections("cpu", torch.float32, "ref", res=2 * TINY.lr_img_size)
        assert fine_hits.shape == (1, 4 * TINY.lr_img_size**2 * TINY.num_manifolds, 3)
        assert generator.texture_intersections("cpu", torch.float32, "ref")[0] is hits  # one cache per side
    assert_close(cached, fresh, atol=1e-5, rtol=1e-5)
    layer = next(generator.sample_net.parameters())
    with torch.no_grad():
        layer.mul_(1.5)  # an in-place update (an optimiser step) bumps the version
        moved = generator.texture_intersections("cpu", torch.float32, "ref")[0]
    assert moved is not hits and not torch.equal(moved, hits)
    state = {k: v.clone() for k, v in generator.state_dict().items()}
    with torch.no_grad():
        layer.div_(1.5)
        generator.load_state_dict(state)  # back to the scaled weights
        assert torch.equal(generator.texture_intersections("cpu", torch.float32, "ref")[0], moved)
        assert generator.double().texture_intersections("cpu", torch.float64, "ref")[0].dtype == torch.float64


def test_truncation_averages_follow_the_weights():
    torch.manual_seed(0)
    first = AniPortraitGenerator(TINY).eval()
    torch.manual_seed(1)
    second = AniPortraitGenerator(TINY).eval()
    stale = first.truncation_averages()
    assert first.truncation_averages() is stale  # cached
    first.load_state_dict(second.state_dict())  # new weights, in place
    for key, value in second.truncation_averages().items():
        assert_close(first.truncation_averages()[key], value, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(stale[key], value)


@torch.no_grad()
def test_noise_input_scale_scales_the_noise_in_every_mapping_input():
    """A generator with noise_input_scale k gives at noise z the codes the same weights give at scale 1 and noise
    k z, in the mapping networks and in the truncation averages; at scale 1 the noise enters as drawn."""
    torch.manual_seed(0)
    plain = AniPortraitGenerator(TINY)
    scaled = AniPortraitGenerator(dataclasses.replace(TINY, noise_input_scale=0.25))
    scaled.load_state_dict(plain.state_dict())
    z_id, z_noise, _ = sample_identity_latents(TINY, [0, 1])
    assert torch.equal(plain.latent(z_id, z_noise), torch.cat([z_id, z_noise], dim=-1))
    for a, b in zip(scaled.identity_codes(z_id, z_noise), plain.identity_codes(z_id, 0.25 * z_noise)):
        assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(scaled.identity_codes(z_id, z_noise)[0], plain.identity_codes(z_id, z_noise)[0])
    # Without a label bank the averages are taken over N(0, I) draws of z_id, then of z_noise, from one seed.
    seeds = torch.Generator().manual_seed(TRUNCATION_SEED)
    bank_id = torch.randn(TRUNCATION_SAMPLES, TINY.z_id_dim, generator=seeds)
    bank_noise = torch.randn(TRUNCATION_SAMPLES, TINY.z_noise_dim, generator=seeds)
    expected = plain.radiance_net.average_mapping(torch.cat([bank_id, 0.25 * bank_noise], dim=-1))
    assert_close(scaled.truncation_averages(None)["freq"], expected[0], atol=1e-6, rtol=1e-6)


def test_color_modulation_truncates_with_the_codes_and_saves_with_the_checkpoint(tmp_path):
    """The colour modulation travels with RadianceNet's codes: psi 0 gives the averages' modulation, the cached
    averages follow its weights, and a checkpoint restores it (its config says it is on)."""
    from aniportrait.checkpoint import load_generator, save_generator
    from aniportrait.models.radiance import COLOR_MODULATION_GAIN

    torch.manual_seed(0)
    config = dataclasses.replace(TINY, color_modulation=True)
    generator = AniPortraitGenerator(config)
    with torch.no_grad():
        generator.radiance_net.color_modulation.weight.normal_()
    z_id, z_noise, _ = sample_identity_latents(config, [0, 1])
    freq, _, _ = generator.identity_codes(z_id, z_noise, psi=0.0)
    average = generator.truncation_averages(None)["freq"]
    assert freq.shape[1] > (8 + 1) * config.hidden_dim
    assert_close(freq, average.expand_as(freq), atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        generator.radiance_net.color_modulation.bias.add_(0.05)
    shifted = generator.truncation_averages(None)["freq"][:, -1]
    assert_close(shifted, average[:, -1] + 0.05 * COLOR_MODULATION_GAIN, atol=1e-5, rtol=1e-5)

    save_generator(tmp_path / "m.safetensors", generator)
    loaded, _, _ = load_generator(tmp_path / "m.safetensors")
    assert loaded.config.color_modulation
    for key, value in generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not any("color_modulation" in key for key in AniPortraitGenerator(TINY).state_dict())


def test_mean_shape_canonical_space_takes_the_shape_out_of_the_samples(body):
    """With ``mean_shape_canonical`` the canonical samples are the mean-shape inverse skinning's, which differ from
    the release's for a non-zero shape; the networks are the same (one state dict loads into both)."""
    torch.manual_seed(0)
    plain = AniPortraitGenerator(TINY)
    mean = AniPortraitGenerator(dataclasses.replace(TINY, mean_shape_canonical=True))
    mean.load_state_dict(plain.state_dict())
    betas, pose = 1.5 * torch.randn(1, 10), 0.2 * torch.randn(1, 6, 3)
    points = torch.rand(1, 16 * 16, 8, 3) * 0.6 - 0.3
    got = mean.canonical_samples(body, points, pose, betas, impl="ref")["x_can"]
    skinning = body.inverse_skinning(betas, pose, mean_shape=True)
    expected = plain.canonical_samples(body, points, pose, betas, impl="ref", skinning=skinning)["x_can"]
    assert torch.equal(got, expected)
    release = plain.canonical_samples(body, points, pose, betas, impl="ref")["x_can"]
    assert (got - release).norm(dim=-1).mean() > 1e-3
