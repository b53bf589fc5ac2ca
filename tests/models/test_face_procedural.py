"""The procedural 3DMM: a face in the BFM layout whose leading expression coefficients do what they name."""

import pytest
import torch

from aniportrait.models.face3dmm import EXPRESSION_MEANING
from aniportrait.models.face_procedural import procedural_3dmm

JAW, BROWS, NOSE, EYES, MOUTH = range(17), range(17, 27), range(27, 36), range(36, 48), range(48, 68)
UPPER_LIDS = [37, 38, 43, 44]

MM = 1e-2  # decimetres per millimetre (the model unit)


def _unit(index, size):
    out = torch.zeros(1, size)
    out[0, index] = 1.0
    return out


def _landmark_motion(face, coefficient):
    """[68] landmark displacement (mm) for expression coefficient ``coefficient`` = 1."""
    moved = face.landmarks(None, _unit(coefficient, 64))[0]
    return (moved - face.landmarks()[0]).norm(dim=-1) / MM


# ---------------------------------------------------------------------------------------------------------------------
# The procedural model


def test_procedural_3dmm_is_deterministic(face):
    again = procedural_3dmm()
    for name, buffer in face.named_buffers():
        assert torch.equal(buffer, getattr(again, name)), name
    other = procedural_3dmm(seed=1)
    # The seed only drives the random fields: the mean, the leading directions and the landmarks stay.
    assert torch.equal(face.mean_shape, other.mean_shape) and torch.equal(face.landmark_index, other.landmark_index)
    assert torch.equal(face.exp_base[:, :4], other.exp_base[:, :4]) and torch.equal(
        face.id_base[:, :10], other.id_base[:, :10]
    )
    assert not torch.equal(face.exp_base[:, 4:], other.exp_base[:, 4:])


def test_procedural_3dmm_mesh(face):
    verts = face.vertices()[0]
    assert face.unit_metres == 0.1 and face.num_vertices == 55**2
    assert procedural_3dmm(num_vertices=1000).num_vertices == 31**2
    with pytest.raises(ValueError, match="num_vertices"):
        procedural_3dmm(num_vertices=100)
    torch.testing.assert_close(verts.mean(0), torch.zeros(3), atol=1e-6, rtol=0)  # recentred like Deep3DFaceRecon
    width, height = (verts.max(0).values - verts.min(0).values)[:2] / MM
    assert 140 < width < 180 and 160 < height < 200  # a face-sized patch (mm)
    a, b, c = (verts[face.triangles[:, i]] for i in range(3))
    assert (torch.linalg.cross(b - a, c - a)[:, 2] > 0).all()  # counter-clockwise seen from the front (+z)
    assert torch.unique(face.triangles).numel() == face.num_vertices
    assert torch.unique(face.landmark_index).numel() == 68
    lm = face.landmarks()[0]
    assert lm[:, 2].argmax() == 30  # the nose tip is the front-most landmark
    assert lm[8, 1] == lm[:, 1].min()  # the chin is the lowest
    assert lm[36, 0] < lm[39, 0] < 0 < lm[42, 0] < lm[45, 0]  # right eye on -x (subject's right), left on +x
    mirrored = lm[list(JAW)] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirrored, lm[list(reversed(JAW))])


def test_procedural_3dmm_expression_meaning(face):
    assert EXPRESSION_MEANING[:4] == ("mouth open", "smile", "eyes closed", "brows raised")

    def rest(region):
        return [k for k in range(68) if k not in region]

    for coefficient, region in ((0, MOUTH), (2, EYES), (3, BROWS)):
        motion = _landmark_motion(face, coefficient)
        assert motion[list(region)].max() > 4.0, coefficient  # several mm per unit coefficient
        assert motion[rest(region)].mean() < 0.05 * motion[list(region)].mean(), coefficient
        assert motion[rest(region)].max() < 0.1 * motion[list(region)].max(), coefficient
    base = face.landmarks()[0]
    open_mouth = face.landmarks(None, _unit(0, 64))[0]
    assert open_mouth[57, 1] < base[57, 1] - 5 * MM and open_mouth[66, 1] < base[66, 1]  # the lower lip drops
    smile = face.landmarks(None, _unit(1, 64))[0]
    assert smile[48, 1] > base[48, 1] and smile[54, 1] > base[54, 1]  # mouth corners up
    assert smile[48, 0] < base[48, 0] and smile[54, 0] > base[54, 0]  # and outwards
    assert _landmark_motion(face, 1)[list(MOUTH)].argmax() in (0, 6)  # corners 48 / 54 move most
    closed = face.landmarks(None, _unit(2, 64))[0]
    assert (closed[UPPER_LIDS, 1] < base[UPPER_LIDS, 1] - 3 * MM).all()
    lower_lids = [41, 40, 47, 46]  # below 37, 38, 43, 44
    assert (base[UPPER_LIDS, 1] - base[lower_lids, 1] > 8 * MM).all()  # open: about 9 mm
    assert ((closed[UPPER_LIDS, 1] - closed[lower_lids, 1]).abs() < 1 * MM).all()  # coefficient 2 = 1: closed
    raised = face.landmarks(None, _unit(3, 64))[0]
    assert (raised[list(BROWS), 1] > base[list(BROWS), 1] + 1 * MM).all()
    # The other 60 directions are small localized bumps.
    offsets = face.exp_base[:, 4:].reshape(-1, 3, 60).norm(dim=1)
    assert offsets.max() < 2 * MM and (offsets > 1e-3 * MM).float().mean() < 0.5


def test_procedural_3dmm_identity_directions(face):
    verts = face.vertices()[0]
    wider = face.vertices(_unit(0, 80))[0]
    assert wider[:, 0].max() > verts[:, 0].max() + 2 * MM
    longer = face.vertices(_unit(1, 80))[0]
    assert longer[:, 1].max() - longer[:, 1].min() > verts[:, 1].max() - verts[:, 1].min() + 4 * MM
    motion = face.id_base.reshape(-1, 3, 80).norm(dim=1).max(0).values / MM
    assert (motion[:10] > 0.5).all() and (motion > 0.05).all() and (motion < 10).all()
    assert (motion[10:-1] >= motion[11:] * 0.5).all()  # the random fields decay like PCA components
