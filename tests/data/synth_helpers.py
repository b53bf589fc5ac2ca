"""Figures, renders and part-map helpers shared by the synthetic-data tests (test_synth_*.py)."""

import math

import numpy as np

from aniportrait.data import synth_labels, synth_render, synth_scene

FRONTAL = (math.pi / 2, math.pi / 2)
PART = synth_scene.PART


def neutral(seed: int = 3, style: str = "short") -> synth_labels.Figures:
    """One figure: frontal camera, mean pose, neutral expression, zero betas, the given hair style."""
    fig = synth_labels.sample_figures(seed, 1)
    return fig.with_(
        camera=np.array([FRONTAL]),
        pose=np.zeros((1, 6, 3)),
        expression=np.zeros((1, 64)),
        betas=np.zeros((1, 10)),
        hair_style=np.array([synth_labels.HAIR_STYLES.index(style)]),
        hair_volume=np.array([1.08]),
    )


def stack(*figs: synth_labels.Figures) -> synth_labels.Figures:
    return synth_labels.Figures(**{k: np.concatenate([getattr(f, k) for f in figs]) for k in vars(figs[0])})


def render(fig, res=64, face_res=64, **kw):
    return synth_render.render_figures(fig, res, face_res, return_parts=True, **kw)


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    assert len(rows), "empty region"
    return np.array([rows.mean(), cols.mean()])


def in_parts(labels: np.ndarray, *names: str) -> np.ndarray:
    return np.isin(labels, [PART[n] for n in names])


HEAD = ("skull", "jaw", "nose", "ear_l", "ear_r", "hair", "hair_back", "bun", "eye", "brow", "mouth")


def pose_offset(joint, axis, value):
    """One figure's pose label [1, 6, 3]: zero but for one angle (pose joint 0-5, axis 0-2 = Z, Y, X)."""
    pose = np.zeros((1, 6, 3), np.float32)
    pose[0, joint, axis] = value
    return pose
