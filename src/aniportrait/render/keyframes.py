"""Keyframes of an animation: loading, validation, built-in trajectories and per-frame interpolation.

The formats are exactly those of the release's keyframe files (read by its ``gen_video.py``):

- expression [N, 64]: Deep3DFaceRecon expression coefficients, 0 = neutral;
- pose [N, 6, 3]: ZYX Euler angles of SMPL joints 12..17 as offsets from the canonical mean pose, 0 = mean pose;
- camera [N, 2]: [pitch, yaw] in radians, pi/2 = frontal.

Frames are linearly interpolated between keyframes, ``n_interval`` frames per keyframe, looping back to the first
keyframe at the end (as gen_video does).

Values beyond the plausible ranges below are refused (they render garbage, and huge ones overflow float32):

- camera pitch in the open interval (0, pi) (the camera's polar angle; 0 and pi look straight down and up);
- camera yaw in [pi/2 - pi, pi/2 + pi], half a turn either way of frontal;
- pose: every Euler offset in [-pi, pi];
- expression: every coefficient in [-10, 10] (real faces stay within about +-3).

A video has at most ``MAX_FRAMES`` = 100,000 frames (keyframe rows x ``n_interval``), checked before interpolating.

The release's semantics and the quirks kept for parity: docs/release.md.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from aniportrait.errors import UserInputError
from aniportrait.userfiles import UnreadableFileError, load_npy

EXPRESSION_DIM = 64
NUM_POSE_JOINTS = 6
FRONTAL = (math.pi / 2, math.pi / 2)  # (pitch, yaw) of the frontal camera

SHAPES = {"expression": (EXPRESSION_DIM,), "pose": (NUM_POSE_JOINTS, 3), "camera": (2,)}
SHAPE_TEXT = {"expression": "[N, 64]", "pose": "[N, 6, 3]", "camera": "[N, 2] (pitch, yaw in radians)"}

MAX_SEED = 2**32 - 1  # seeds feed torch.Generator.manual_seed; keep them in numpy's range too
MAX_SEEDS = 100_000  # seeds in one run, counted over every item of the list
MAX_FRAMES = 100_000  # frames of one video: keyframe rows x n_interval
MAX_KEYFRAMES = MAX_FRAMES  # rows of a keyframe file (each makes at least one frame)

# Plausible value ranges (radians for angles): (low, high, open interval?, how the range is described).
PITCH_RANGE = (0.0, math.pi, True, "(0, pi) (radians)")
YAW_RANGE = (math.pi / 2 - math.pi, math.pi / 2 + math.pi, False, "[pi/2 - pi, pi/2 + pi] (radians; pi/2 is frontal)")
POSE_RANGE = (-math.pi, math.pi, False, "[-pi, pi] (radians)")
EXPRESSION_RANGE = (-10.0, 10.0, False, "[-10, 10]")

# Yaw offsets of the built-in camera sweep (radians, about +-17 degrees around frontal).
YAW_SWEEP = (0.0, 0.3, 0.0, -0.3)


class KeyframeError(UserInputError):
    """A keyframe file or option is unusable; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Keyframes:
    """Per-keyframe (or, after :func:`interpolate`, per-frame) controls, all with the same leading length."""

    expression: np.ndarray  # [N, 64] float32
    pose: np.ndarray  # [N, 6, 3] float32
    camera: np.ndarray  # [N, 2] float32

    def __len__(self) -> int:
        return len(self.expression)


def validate(name: str, array: np.ndarray, source: str) -> np.ndarray:
    """Check a keyframe array of kind ``name`` and return it as float32."""
    if name not in SHAPES:
        raise KeyframeError(f"unknown keyframe kind {name!r}; expected one of {', '.join(SHAPES)}")
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise KeyframeError(f"{source}: {name} keyframes must be a numeric array of shape {SHAPE_TEXT[name]}")
    if array.ndim != 1 + len(SHAPES[name]) or array.shape[1:] != SHAPES[name] or array.shape[0] < 1:
        raise KeyframeError(f"{source}: {name} keyframes must have shape {SHAPE_TEXT[name]}, got {list(array.shape)}")
    if array.shape[0] > MAX_KEYFRAMES:
        raise KeyframeError(
            f"{source}: {len(array):,} {name} keyframes; at most {MAX_KEYFRAMES:,} (one video has at most "
            f"{MAX_FRAMES:,} frames)"
        )
    if not np.isfinite(array).all():
        raise KeyframeError(f"{source}: {name} keyframes contain NaN or infinite values; fix or regenerate the file")
    _check_range(name, array, source)  # before any cast, so that no overflow can happen or warn
    return array.astype(np.float32)


def _check_range(name: str, array: np.ndarray, source: str) -> None:
    """Refuse the first value beyond its plausible range, naming it, where it is and the range."""
    if name == "camera":
        checks = [("pitch", array[:, 0], PITCH_RANGE), ("yaw", array[:, 1], YAW_RANGE)]
    elif name == "pose":
        checks = [("Euler offset", array, POSE_RANGE)]
    else:
        checks = [("coefficient", array, EXPRESSION_RANGE)]
    for label, column, (low, high, open_interval, text) in checks:
        outside = (column <= low) | (column >= high) if open_interval else (column < low) | (column > high)
        if outside.any():
            where = tuple(int(i) for i in np.unravel_index(np.argmax(outside), column.shape))
            place = f"keyframe {where[0]}" + (f", index {list(where[1:])}" if len(where) > 1 else "")
            raise KeyframeError(
                f"{source}: {name} {label} {_show(column[where])} at {place} is outside the plausible range {text}; "
                "fix the file"
            )


def _show(value: np.generic) -> str:
    """A number as ``%.6g``, also a longdouble beyond float64's range."""
    if abs(value) <= np.finfo(np.float64).max:
        return f"{float(value):.6g}"
    return np.format_float_scientific(value, precision=5, trim="-")


def load(name: str, path: str | os.PathLike) -> np.ndarray:
    """Load and validate a ``.npy`` keyframe file (never unpickles: ``allow_pickle=False``; at most
    ``MAX_KEYFRAMES`` rows, checked before the data is read)."""
    path = os.fspath(path)
    try:
        array = load_npy(path, f"{name} keyframe file", max_rows=MAX_KEYFRAMES)
    except UnreadableFileError as err:
        raise KeyframeError(str(err)) from None
    return validate(name, array, path)


def _asset(*parts: str) -> np.ndarray:
    with resources.as_file(resources.files("aniportrait.assets").joinpath("keyframes", *parts)) as path:
        return np.load(path, allow_pickle=False)


def neutral(n: int) -> Keyframes:
    """``n`` keyframes of neutral expression, mean pose and frontal camera."""
    return Keyframes(
        expression=np.zeros((n, EXPRESSION_DIM), np.float32),
        pose=np.zeros((n, NUM_POSE_JOINTS, 3), np.float32),
        camera=np.tile(np.asarray(FRONTAL, np.float32), (n, 1)),
    )


def _with(base: Keyframes, **arrays: np.ndarray) -> Keyframes:
    fields = {"expression": base.expression, "pose": base.pose, "camera": base.camera}
    fields.update({k: validate(k, v, "built-in") for k, v in arrays.items()})
    return Keyframes(**fields)


def _yaw_sweep() -> np.ndarray:
    return np.asarray([[FRONTAL[0], FRONTAL[1] + dy] for dy in YAW_SWEEP], np.float32)


def builtin(trajectory: str) -> Keyframes:
    """A built-in trajectory. ``yaw``: camera sweep; ``expression``, ``head``, ``shoulder``, ``pose``: the release's
    demo keyframes; ``video``: the release's real-video-driven sequence; ``demo``: yaw, head, shoulder and
    expression one after another."""
    if trajectory == "yaw":
        return _with(neutral(len(YAW_SWEEP)), camera=_yaw_sweep())
    if trajectory == "expression":
        expression = _asset("expression.npy")
        return _with(neutral(len(expression)), expression=expression)
    if trajectory in ("head", "shoulder", "pose"):
        pose = _asset({"head": "headpose.npy", "shoulder": "shoulderpose.npy", "pose": "pose.npy"}[trajectory])
        return _with(neutral(len(pose)), pose=pose)
    if trajectory == "video":
        return Keyframes(
            expression=validate("expression", _asset("real_video_sample1", "expression.npy"), "built-in"),
            pose=validate("pose", _asset("real_video_sample1", "joint_eulers.npy"), "built-in"),
            camera=validate("camera", _asset("real_video_sample1", "camera_pose.npy"), "built-in"),
        )
    if trajectory == "demo":
        parts = [builtin(name) for name in ("yaw", "head", "shoulder", "expression")]
        return Keyframes(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("expression", "pose", "camera")))
    raise KeyframeError(f"unknown trajectory {trajectory!r}; expected one of {', '.join(TRAJECTORIES)}")


TRAJECTORIES = ("demo", "yaw", "expression", "head", "shoulder", "pose", "video")


def from_files(expression: str | None = None, pose: str | None = None, camera: str | None = None) -> Keyframes:
    """Keyframes from the given files; a missing kind is neutral. Every given file must have the same N."""
    given = {k: load(k, p) for k, p in (("expression", expression), ("pose", pose), ("camera", camera)) if p}
    if not given:
        raise KeyframeError("no keyframe file given")
    lengths = {k: len(v) for k, v in given.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise KeyframeError(f"keyframe files disagree in length ({listing}); give files with the same number of rows")
    return _with(neutral(next(iter(lengths.values()))), **given)


def interpolate(keyframes: Keyframes, n_interval: int) -> Keyframes:
    """``len(keyframes) * n_interval`` frames: ``(1 - k) kf[i] + k kf[i+1]`` for ``k = j / n_interval``, with the
    first keyframe appended so that the animation loops."""
    if n_interval < 1:
        raise KeyframeError(f"n_interval must be at least 1, got {n_interval}")
    check_frame_count(len(keyframes), n_interval)
    k = (np.arange(n_interval, dtype=np.float32) / n_interval)[None, :]

    def lerp(a: np.ndarray) -> np.ndarray:
        looped = np.concatenate([a, a[:1]])
        start, end = looped[:-1, None], looped[1:, None]
        kk = k.reshape(1, n_interval, *([1] * (a.ndim - 1)))
        return ((1 - kk) * start + kk * end).reshape(-1, *a.shape[1:]).astype(np.float32)

    return Keyframes(lerp(keyframes.expression), lerp(keyframes.pose), lerp(keyframes.camera))


def check_frame_count(num_keyframes: int, n_interval: int) -> int:
    """The frame count ``num_keyframes * n_interval`` of a video; ``KeyframeError`` beyond ``MAX_FRAMES``."""
    frames = num_keyframes * n_interval
    if frames > MAX_FRAMES:
        raise KeyframeError(
            f"{num_keyframes:,} keyframes x --n-interval {n_interval} = {frames:,} frames; a video has at most "
            f"{MAX_FRAMES:,} frames: use fewer keyframes or a smaller --n-interval"
        )
    return frames


_SEED_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def parse_seeds(text: str) -> list[int]:
    """``"0,1,4-6"`` -> ``[0, 1, 4, 5, 6]``: comma-separated non-negative integers and inclusive ranges, at most
    ``MAX_SEEDS`` seeds in all (counted before duplicates are dropped), each at most ``MAX_SEED``."""
    shown = repr(text if len(text) <= 40 else text[:37] + "...")
    usage = f"bad seed list {shown}: use non-negative integers and ranges, e.g. 0,1,4-6"
    items: list[tuple[int, int]] = []
    total = 0
    for part in text.split(","):
        match = _SEED_ITEM.fullmatch(part.strip())
        if match is None:
            raise KeyframeError(usage)
        first = int(match[1])
        last = first if match[2] is None else int(match[2])
        if last < first:
            raise KeyframeError(usage)
        if last > MAX_SEED:
            raise KeyframeError(f"bad seed list {shown}: seeds must be at most {MAX_SEED}")
        total += last - first + 1
        if total > MAX_SEEDS:
            raise KeyframeError(f"seed list {shown} has over {MAX_SEEDS:,} seeds; at most {MAX_SEEDS:,} per run")
        items.append((first, last))
    return list(dict.fromkeys(seed for first, last in items for seed in range(first, last + 1)))
