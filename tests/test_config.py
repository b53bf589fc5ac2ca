"""Generator configs: the small model's radiance field fits its textures (little energy above their Nyquist limit);
the expression's neck gate."""

import dataclasses

import pytest
import torch

from aniportrait import constants
from aniportrait.config import SMALL, SSHQ512, TINY, GeneratorConfig, RenderingConfig
from aniportrait.models.generator import AniPortraitGenerator
from aniportrait.models.radiance import RadianceNet


def energy_above_nyquist(config, fine=96, identities=3, seed=0) -> float:
    """Fraction of the colour spectrum (mean removed) of a fresh RadianceNet over the texture box, on the z = 0 plane,
    above the textures' Nyquist frequency (lr_img_size / 2 cycles per box side)."""
    torch.manual_seed(seed)
    net = RadianceNet(
        hidden_dim=config.hidden_dim,
        z_dim=config.z_dim,
        feature_dim=config.feature_dim,
        mapping_hidden_dim=config.mapping_hidden_dim,
        input_scale=config.radiance_input_scale,
    )
    side = torch.linspace(-constants.SAMPLE_SCALE, constants.SAMPLE_SCALE, fine)
    y, x = torch.meshgrid(side + constants.SAMPLE_CENTER, side, indexing="ij")
    points = torch.stack([x, y, torch.zeros_like(x)], -1).reshape(1, -1, 3)
    with torch.no_grad():
        freq, phase = net.mapping(torch.randn(identities, config.z_dim, generator=torch.Generator().manual_seed(1)))
        rgb, _, _ = net.features(points.expand(identities, -1, -1), freq, phase, torch.tensor([[[0.0, 0.0, -1.0]]]))
    field = rgb.reshape(identities, fine, fine, 3).permute(0, 3, 1, 2).double()
    power = torch.fft.fft2(field - field.mean(dim=(-2, -1), keepdim=True)).abs().square()
    k = torch.fft.fftfreq(fine, d=1.0 / fine).abs()
    above = (k[:, None] > config.lr_img_size / 2) | (k[None, :] > config.lr_img_size / 2)
    return float(power[..., above].sum() / power.sum())


def test_small_radiance_field_stays_below_its_texture_nyquist_limit():
    assert SMALL.radiance_input_scale < 1 and SSHQ512.radiance_input_scale == 1.0
    small = energy_above_nyquist(SMALL)
    release_scale = energy_above_nyquist(dataclasses.replace(SMALL, radiance_input_scale=1.0))
    assert small < 0.1, small
    assert release_scale > 1.5 * small, (release_scale, small)


def test_expression_gate_fields_are_validated_and_travel_in_json():
    assert SSHQ512.neck_gate is None  # the release has no gate
    gated = dataclasses.replace(
        SMALL, expression_gate_low=-0.16, expression_gate_high=-0.125, expression_gate_slope=0.5
    )
    assert gated.neck_gate == (-0.16, -0.125, 0.5)
    assert GeneratorConfig.from_json(gated.to_json()) == gated
    for slope in (-0.5, 11.0, float("nan")):
        with pytest.raises(ValueError, match="expression_gate_slope"):
            dataclasses.replace(SMALL, expression_gate_slope=slope)
    for low, high in ((-0.1, -0.2), (-0.1, -0.1), (float("nan"), 0.1), (-0.1, float("inf"))):
        with pytest.raises(ValueError, match="expression_gate_low"):
            dataclasses.replace(SMALL, expression_gate_low=low, expression_gate_high=high)
    with pytest.raises(ValueError, match="odd"):
        dataclasses.replace(SMALL, smoother_spatial_kernel=4)


def test_the_expression_depth_gate_is_validated_and_travels_in_json():
    assert SSHQ512.depth_gate is None and SMALL.depth_gate is None  # neither preset has one
    gated = dataclasses.replace(SMALL, expression_gate_depth_low=-0.04, expression_gate_depth_high=-0.025)
    assert gated.depth_gate == (-0.04, -0.025)
    assert GeneratorConfig.from_json(gated.to_json()) == gated
    assert AniPortraitGenerator(
        dataclasses.replace(TINY, expression_gate_depth_low=-0.04, expression_gate_depth_high=-0.025)
    ).deform_net.depth_gate == (
        -0.04,
        -0.025,
    )
    for low, high in ((-0.02, -0.04), (-0.03, -0.03), (float("nan"), 0.0), (-0.04, float("inf"))):
        with pytest.raises(ValueError, match="expression_gate_depth_low"):
            dataclasses.replace(SMALL, expression_gate_depth_low=low, expression_gate_depth_high=high)


def test_noise_input_scale_is_validated_and_travels_in_json():
    assert SSHQ512.noise_input_scale == 1.0  # the release feeds z_noise as drawn
    scaled = dataclasses.replace(SMALL, noise_input_scale=0.1)
    assert GeneratorConfig.from_json(scaled.to_json()) == scaled
    for bad in (0.0, -0.5, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise_input_scale"):
            dataclasses.replace(SMALL, noise_input_scale=bad)


def test_the_boolean_generator_options_travel_in_json():
    for flag in ("color_modulation", "mean_shape_canonical", "field_hr_textures"):
        assert not getattr(SSHQ512, flag) and not getattr(SMALL, flag)  # the release has neither
        changed = dataclasses.replace(SMALL, **{flag: True})
        assert GeneratorConfig.from_json(changed.to_json()) == changed
        for bad in (1, "true", None):
            with pytest.raises(ValueError, match=flag):
                GeneratorConfig.from_dict({flag: bad})


def test_generator_with_a_neck_gate_moves_nothing_below_the_neck():
    """An expression change moves the deformed lookup points above the gate and leaves those below it in place."""
    # No re-interpolation along the rays, so each sample's d sits at its own height.
    config = dataclasses.replace(
        TINY, expression_gate_low=-0.16, expression_gate_high=-0.125, num_samples_fine=TINY.num_samples
    )
    torch.manual_seed(0)
    generator = AniPortraitGenerator(config)
    torch.nn.init.normal_(generator.deform_net.final_layer.weight, std=0.1)
    x_can = torch.rand(1, 16, config.num_samples, 3) * 0.6 - 0.3
    z_id = torch.randn(1, config.z_id_dim)
    expression = torch.zeros(1, config.z_exp_dim)
    with torch.no_grad():
        d0 = generator.intersect(x_can, z_id, expression)["d"]
        d1 = generator.intersect(x_can, z_id, expression + 2.0)["d"]
    y = x_can[..., 1:2].expand_as(d0)
    assert torch.equal(d0[y <= -0.16], torch.zeros_like(d0[y <= -0.16]))
    assert torch.equal(d1[y <= -0.16], d0[y <= -0.16])
    assert (d1 - d0)[y >= -0.125].abs().max() > 1e-3


def test_small_smoother_footprint_is_the_releases_on_its_grid():
    """The LBS smoother's kernels cover about the share of the strided grid that the release's cover of its own."""

    def footprint(config):
        side, depth = config.lr_img_size // config.knn_stride, config.num_samples // config.knn_stride
        return config.smoother_spatial_kernel / side, config.smoother_depth_kernel / depth

    release_spatial, release_depth = footprint(SSHQ512)  # 9 / 64 and 5 / 32
    spatial, depth = footprint(SMALL)
    assert spatial <= 1.5 * release_spatial and depth <= 1.5 * release_depth, (spatial, depth)
    assert SMALL.neck_gate is not None and SSHQ512.neck_gate is None


def test_rendering_config_defaults_and_json_round_trip():
    assert RenderingConfig() == RenderingConfig(
        psi=0.7, n_interval=8, fps=25, precision="fp32", sr_precision="fp32", sampling="exact"
    )
    settings = RenderingConfig(psi=0, n_interval=1000, fps=240, precision="bf16", sampling="adaptive")
    assert RenderingConfig.from_json(settings.to_json()) == settings
    assert RenderingConfig.from_dict({"fps": 10}) == RenderingConfig(fps=10)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"psi": 1.01}, "psi=1.01 must be a number in \\[0, 1\\]"),
        ({"psi": float("nan")}, "psi=nan"),
        ({"psi": True}, "psi=True"),
        ({"psi": "0.5"}, "psi='0.5'"),
        ({"n_interval": 0}, "n_interval=0 must be an integer in \\[1, 1000\\]"),
        ({"n_interval": 2.0}, "n_interval=2.0"),
        ({"fps": 241}, "fps=241 must be an integer in \\[1, 240\\]"),
        ({"precision": "fp16"}, "precision='fp16' must be one of fp32, bf16-deform, bf16"),
        ({"sr_precision": "bf16-deform"}, "sr_precision='bf16-deform' must be one of fp32, bf16"),
        ({"sr_precision": "fp16"}, "sr_precision='fp16' must be one of fp32, bf16"),
        ({"sampling": "fast"}, "sampling='fast' must be one of exact, adaptive"),
    ],
)
def test_rendering_config_refuses_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        RenderingConfig(**values)


def test_rendering_config_refuses_unknown_keys_and_non_mappings():
    with pytest.raises(ValueError, match="unknown rendering config keys: speed"):
        RenderingConfig.from_dict({"speed": 2})
    with pytest.raises(ValueError, match="must be a mapping"):
        RenderingConfig.from_dict([("psi", 0.5)])
