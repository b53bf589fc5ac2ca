"""The linear 3DMM (aniportrait.models.face3dmm): shapes, linearity, gradients, validation, no data in checkpoints."""

import numpy as np
import pytest
import torch

from aniportrait.models.face3dmm import Face3DMM, FaceModelError
from aniportrait.models.face_procedural import procedural_3dmm
from aniportrait.models.face_registration import (
    RegisteredFace,
)


def _unit(index, size):
    out = torch.zeros(1, size)
    out[0, index] = 1.0
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The linear model


@pytest.mark.parametrize("batch", [1, 3])
def test_face3dmm_shapes(face, batch):
    n = face.num_vertices
    id, exp, tex = torch.randn(batch, 80), torch.randn(batch, 64), torch.randn(batch, 80)
    assert (
        face.mean_shape.shape == (3 * n,) and face.id_base.shape == (3 * n, 80) and face.exp_base.shape == (3 * n, 64)
    )
    assert face.triangles.dtype == torch.int64 and face.triangles.shape[1] == 3
    assert face.landmark_index.dtype == torch.int64 and face.landmark_index.shape == (68,)
    assert face.vertices(id, exp).shape == (batch, n, 3)
    assert face(id, exp).shape == (batch, n, 3)
    assert face.landmarks(id, exp).shape == (batch, 68, 3)
    assert face.expression_offsets(exp).shape == (batch, n, 3)
    assert face.texture(tex).shape == (batch, n, 3)
    assert face.vertices(id, exp).dtype == torch.float32
    assert procedural_3dmm(dtype=torch.float64).vertices(id, exp).dtype == torch.float64


def test_face3dmm_zero_coefficients_give_the_mean(face):
    mean = face.mean_shape.reshape(-1, 3)
    torch.testing.assert_close(face.vertices(torch.zeros(2, 80), torch.zeros(2, 64)), mean.expand(2, -1, -1))
    torch.testing.assert_close(face.vertices()[0], mean)
    torch.testing.assert_close(face.landmarks()[0], mean[face.landmark_index])
    torch.testing.assert_close(face.texture(torch.zeros(1, 80))[0], face.mean_tex.reshape(-1, 3))


def test_face3dmm_is_linear_in_id_and_expression():
    face = procedural_3dmm(dtype=torch.float64)
    id1, id2 = torch.randn(2, 80, dtype=torch.float64), torch.randn(2, 80, dtype=torch.float64)
    exp1, exp2 = torch.randn(2, 64, dtype=torch.float64), torch.randn(2, 64, dtype=torch.float64)
    mean = face.vertices()

    def offset(id, exp):
        return face.vertices(id, exp) - mean

    torch.testing.assert_close(
        offset(2.0 * id1 - 0.5 * id2, exp1),
        2.0 * offset(id1, exp1) - 0.5 * offset(id2, exp1) - 0.5 * offset(torch.zeros_like(id1), exp1),
    )
    torch.testing.assert_close(offset(id1, exp1 + exp2), offset(id1, exp1) + offset(torch.zeros_like(id1), exp2))
    torch.testing.assert_close(offset(torch.zeros_like(id1), exp1), face.expression_offsets(exp1))
    torch.testing.assert_close(face.landmarks(id1, exp1), face.vertices(id1, exp1)[:, face.landmark_index])


def test_face3dmm_is_differentiable(face):
    id, exp = torch.randn(2, 80, requires_grad=True), torch.randn(2, 64, requires_grad=True)
    face.landmarks(id, exp).square().sum().backward()
    assert id.grad.abs().sum() > 0 and exp.grad.abs().sum() > 0


def test_face3dmm_rejects_bad_coefficients(face):
    with pytest.raises(ValueError, match=r"id must be a float tensor of shape \[B, 80\]"):
        face.vertices(torch.zeros(2, 79), torch.zeros(2, 64))
    with pytest.raises(ValueError, match=r"expression must be .* \[B, 64\] with B = 2"):
        face.vertices(torch.zeros(2, 80), torch.zeros(3, 64))
    with pytest.raises(ValueError, match="float tensor"):
        face.landmarks(torch.zeros(1, 80, dtype=torch.long), None)
    with pytest.raises(FaceModelError, match=r"id_base must have shape \[3N, 80\]"):
        Face3DMM(np.zeros(9), np.zeros((9, 40)), np.zeros((9, 64)), np.zeros((1, 3)), np.zeros(68))
    with pytest.raises(FaceModelError, match="landmark_index indexes vertices outside"):
        Face3DMM(np.zeros(9), np.zeros((9, 80)), np.zeros((9, 64)), np.zeros((1, 3)), np.full(68, 3))


def test_face3dmm_state_dict_holds_no_face_data(face):
    """The buffers are licensed data for BFM: they must never be saved into a checkpoint."""
    assert face.state_dict() == {}
    registered = RegisteredFace(face, 1.0, torch.eye(3), torch.zeros(3))
    assert registered.state_dict() == {}
