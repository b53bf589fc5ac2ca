"""The training losses (the discriminators themselves are tested in ``tests/models/test_discriminator.py``)."""

import math

import torch
from torch import nn

from aniportrait.models import discriminator as disc
from aniportrait.models.deformation import DeformNet
from aniportrait.models.discriminator import (
    PortraitDiscriminator,
)
from aniportrait.models.smoother import LbsSmoother
from aniportrait.train import losses
from aniportrait.train.config import TrainConfig

# -- adversarial losses --------------------------------------------------------------------------------------------


def test_nonsaturating_losses_values_and_monotonicity():
    zeros = torch.zeros(4)
    torch.testing.assert_close(losses.d_loss_nonsaturating(zeros, zeros), torch.tensor(2 * math.log(2)))
    torch.testing.assert_close(losses.g_loss_nonsaturating(zeros), torch.tensor(math.log(2)))
    base = losses.d_loss_nonsaturating(zeros, zeros)
    assert losses.d_loss_nonsaturating(zeros + 1, zeros) < base  # real logits rise
    assert losses.d_loss_nonsaturating(zeros, zeros - 1) < base  # fake logits fall
    assert losses.d_loss_nonsaturating(zeros + 2, zeros - 2) < losses.d_loss_nonsaturating(zeros + 1, zeros - 1)
    assert losses.g_loss_nonsaturating(zeros + 1) < losses.g_loss_nonsaturating(zeros)
    # non-saturating: a confident D (fake logit -10) still gives G a gradient of about 1
    fake = torch.full((1,), -10.0, requires_grad=True)
    losses.g_loss_nonsaturating(fake).backward()
    assert fake.grad.abs().item() > 0.99


def test_r1_zero_for_input_independent_discriminator():
    images = torch.randn(3, 3, 8, 8, requires_grad=True)
    bias = nn.Parameter(torch.tensor(0.3))
    assert losses.r1_penalty(bias.expand(3), images, gamma=10.0).item() == 0.0  # not in the graph at all
    logits = (images * 0).sum(dim=(1, 2, 3)) + bias  # in the graph, zero gradient
    assert losses.r1_penalty(logits, images, gamma=10.0).item() == 0.0


def test_r1_linear_discriminator_closed_form_and_double_backward():
    torch.manual_seed(1)
    w = nn.Parameter(torch.randn(3 * 4 * 4, dtype=torch.float64))
    images = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    logits = images.reshape(5, -1) @ w + 0.7
    gamma = 3.0
    r1 = losses.r1_penalty(logits, images, gamma)
    # grad_x D = w for every sample: 0.5 * gamma * ||w||^2
    torch.testing.assert_close(r1, 0.5 * gamma * w.pow(2).sum())
    (d_w,) = torch.autograd.grad(r1, w)  # create_graph=True makes the penalty train D
    torch.testing.assert_close(d_w, gamma * w)


def test_r1_matches_finite_differences_on_a_tiny_discriminator():
    torch.manual_seed(2)
    d = PortraitDiscriminator(4, max_channels=4, pose_outputs=0).double()
    images = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    gamma = 2.0
    r1 = losses.r1_penalty(d(images)[:, 0], images, gamma)
    assert r1.item() > 0
    eps, grads = 1e-6, torch.zeros_like(images)
    with torch.no_grad():
        flat = images.detach().clone().reshape(-1)
        for i in range(flat.numel()):
            plus, minus = flat.clone(), flat.clone()
            plus[i] += eps
            minus[i] -= eps
            diff = d(plus.reshape(images.shape))[:, 0].sum() - d(minus.reshape(images.shape))[:, 0].sum()
            grads.view(-1)[i] = diff / (2 * eps)
    expected = 0.5 * gamma * grads.pow(2).reshape(2, -1).sum(dim=1).mean()
    torch.testing.assert_close(r1, expected, rtol=1e-6, atol=1e-9)


def test_camera_loss_zero_at_target_and_mse_otherwise():
    target = torch.tensor([[1.5, 1.6], [1.55, 1.4]])
    assert losses.camera_loss(target.clone(), target).item() == 0.0
    torch.testing.assert_close(losses.camera_loss(target + torch.tensor([0.1, -0.3]), target), torch.tensor(0.05))


# -- deformation and 3DMM losses -----------------------------------------------------------------------------------


def test_imitation_loss_zero_at_the_3dmm_target_and_positive_otherwise():
    B, P, E = 2, 50, 6
    basis = torch.randn(B, P, 3, E)
    z_exp = torch.randn(B, E)
    target = losses.inverse_expression_displacement(basis, z_exp)
    assert target.shape == (B, P, 3)
    torch.testing.assert_close(target[1, 7], -(basis[1, 7] @ z_exp[1]))  # -B_exp z_exp at that point
    shared = losses.inverse_expression_displacement(basis[0], z_exp)  # one basis for the whole batch
    torch.testing.assert_close(shared[0], target[0])
    assert losses.imitation_loss(target.clone(), target).item() == 0.0
    pred = target.clone()
    pred[0, 3] += torch.tensor([0.3, 0.0, 0.4])  # one point off by 0.5
    torch.testing.assert_close(losses.imitation_loss(pred, target), torch.tensor(0.25 / (B * P)))
    mask = torch.ones(B, P, dtype=torch.bool)
    mask[0, 3] = False  # a far point, excluded
    assert losses.imitation_loss(pred, target, mask).item() == 0.0
    assert losses.imitation_loss(pred, target, torch.zeros(B, P)).item() == 0.0  # no points: 0, not NaN


def test_imitation_loss_gradient_reaches_deformnet():
    net = DeformNet(hidden_dim=16, mapping_hidden_dim=16)
    nn.init.normal_(net.final_layer.weight, std=0.01)
    freq, phase = net.mapping(torch.randn(2, 144))
    points = torch.rand(2, 20, 3) * 0.2 - 0.1
    _, d = net(points, freq, phase)
    loss = losses.imitation_loss(d, torch.full_like(d, 0.01))
    loss.backward()
    assert torch.isfinite(loss) and net.final_layer.weight.grad.abs().sum() > 0


def test_expression_smoothness_zero_for_identical_displacements_and_grows_with_roughness():
    d = torch.randn(2, 30, 3)
    assert losses.expression_smoothness(d, d.clone()).item() == 0.0
    assert losses.expression_smoothness(d, d + 0.1) > 0
    # the zero-initialised DeformNet is perfectly smooth; a random one is rougher at larger perturbations
    net = DeformNet(hidden_dim=16, mapping_hidden_dim=16)
    freq, phase = net.mapping(torch.randn(2, 144))
    points = torch.rand(2, 64, 3) * 0.2 - 0.1
    _, d0 = net(points, freq, phase)
    _, d1 = net(points + TrainConfig().exp_smooth_sigma * torch.randn_like(points), freq, phase)
    assert losses.expression_smoothness(d0, d1).item() == 0.0
    nn.init.normal_(net.final_layer.weight, std=0.1)
    noise = torch.randn_like(points)
    _, d = net(points, freq, phase)
    small = losses.expression_smoothness(d, net(points + 1e-3 * noise, freq, phase)[1])
    large = losses.expression_smoothness(d, net(points + 1e-1 * noise, freq, phase)[1])
    assert 0 < small < large


def test_minimal_deformation_zero_at_zero_and_quadratic():
    assert losses.minimal_deformation(torch.zeros(2, 7, 3)).item() == 0.0
    d = torch.randn(2, 7, 3)
    one = losses.minimal_deformation(d)
    torch.testing.assert_close(losses.minimal_deformation(2 * d), 4 * one)
    torch.testing.assert_close(one, d.pow(2).sum(-1).mean())
    assert losses.minimal_deformation(torch.zeros(2, 4, 5, 3)).item() == 0.0  # [B, R, S, 3] works too


def test_fixed_average_pool_keeps_constants_and_matches_box_filter():
    raw = torch.full((1, 16, 4, 6, 6), 0.25)
    pooled = losses.fixed_average_pool(raw, (8, 12, 12))
    assert pooled.shape == (1, 16, 8, 12, 12)
    torch.testing.assert_close(pooled, torch.full_like(pooled, 0.25))
    # equal sizes: two box passes, no upsampling; a 1x1x1 window is the identity
    x = torch.randn(1, 2, 3, 5, 5)
    torch.testing.assert_close(losses.fixed_average_pool(x, x.shape[2:], 1, 1), x)
    one_pass = losses.fixed_average_pool(x, x.shape[2:], 3, 3)
    assert one_pass.std() < x.std()  # it smooths


def test_pose_smoothness_zero_for_the_pooled_field_and_the_initial_smoother():
    raw = torch.randn(2, 16, 4, 6, 6)
    pooled = losses.fixed_average_pool(raw, (8, 12, 12))
    assert losses.pose_deformation_smoothness(pooled.clone(), raw).item() == 0.0
    smoother = LbsSmoother()  # D_p at init is exactly the fixed average pooling
    loss0 = losses.pose_deformation_smoothness(smoother(raw), raw)
    assert loss0.item() < 1e-10
    with torch.no_grad():
        smoother.conv_block1.weight.add_(torch.rand_like(smoother.conv_block1.weight) * 0.05)
    smoothed = smoother(raw)
    loss = losses.pose_deformation_smoothness(smoothed, raw)
    assert loss.item() > 1e-6
    raw_leaf = raw.clone().requires_grad_()
    losses.pose_deformation_smoothness(smoother(raw_leaf.detach()), raw_leaf).backward()
    assert raw_leaf.grad is None  # the pooled target is a constant
    assert smoother.conv_block1.weight.grad.abs().sum() > 0
    # the loss is the squared Frobenius norm per voxel, averaged over voxels
    offset = pooled + 0.5
    torch.testing.assert_close(losses.pose_deformation_smoothness(offset, raw), torch.tensor(16 * 0.25))


def test_landmark_loss():
    target = torch.randn(2, 68, 3)
    assert losses.landmark_loss(target.clone(), target).item() == 0.0
    pred = target.clone()
    pred[:, 30] += torch.tensor([0.0, 0.0, 1.0])
    torch.testing.assert_close(losses.landmark_loss(pred, target), torch.tensor(1 / 68))
    weights = torch.ones(68)
    weights[30] = 0
    assert losses.landmark_loss(pred, target, weights).item() == 0.0


def test_loss_weight_defaults_are_the_papers_and_live_in_the_training_config():
    config = TrainConfig()
    assert (config.weight_whole, config.weight_face, config.weight_torso) == (0.1, 1.0, 0.5)
    assert config.r1_gamma == 1.0 and config.pos_lambda == 15.0 and config.imitation_lambda == 20.0
    for name in ("WEIGHT_WHOLE", "LossWeights", "R1_GAMMA", "POS_LAMBDA", "IMITATION_LAMBDA"):
        assert not hasattr(losses, name) and not hasattr(disc, name), f"{name}: one source for each weight"
