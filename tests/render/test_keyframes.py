"""Keyframes: validation and loading of the release's formats, built-in trajectories, interpolation and seed lists.

Formats (the release's keyframe files): expression [N, 64], pose [N, 6, 3], camera [N, 2] = (pitch, yaw).
Frames are ``(1 - k) kf[i] + k kf[i + 1]`` with ``k = j / n_interval``, looping back to the first keyframe.
"""

import math
import os
import warnings

import numpy as np
import pytest

from aniportrait.render import keyframes as kf
from aniportrait.render.keyframes import KeyframeError

GOOD = {
    "expression": np.linspace(-1, 1, 3 * 64, dtype=np.float32).reshape(3, 64),
    "pose": np.linspace(-0.5, 0.5, 3 * 18, dtype=np.float32).reshape(3, 6, 3),
    "camera": np.array([[1.5, 1.4], [1.6, 1.7], [1.57, 1.57]], np.float32),
}
KINDS = tuple(GOOD)


# -- validate ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_validate_accepts_release_shapes_and_returns_float32(kind):
    array = GOOD[kind].astype(np.float64)
    out = kf.validate(kind, array, "test")
    assert out.dtype == np.float32 and out.shape == array.shape
    np.testing.assert_array_equal(out, array.astype(np.float32))


def test_validate_accepts_integer_arrays_and_one_keyframe():
    out = kf.validate("camera", np.ones((1, 2), np.int64), "test")
    assert out.dtype == np.float32 and out.shape == (1, 2)


@pytest.mark.parametrize(
    ("kind", "shape"),
    [
        ("expression", (3, 63)),
        ("expression", (3, 64, 1)),
        ("expression", (64,)),
        ("expression", (0, 64)),
        ("pose", (3, 18)),
        ("pose", (3, 3, 6)),
        ("pose", (3, 6, 3, 1)),
        ("camera", (3, 3)),
        ("camera", (2,)),
        ("camera", (3, 2, 1)),
        ("camera", ()),
    ],
)
def test_validate_rejects_wrong_shapes_naming_the_expected_one(kind, shape):
    with pytest.raises(KeyframeError) as err:
        kf.validate(kind, np.zeros(shape, np.float32), "f.npy")
    message = str(err.value)
    assert "f.npy" in message and kind in message and kf.SHAPE_TEXT[kind] in message
    assert str(list(shape)) in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", KINDS)
def test_validate_rejects_non_finite_values(kind, bad):
    array = GOOD[kind].copy()
    array.flat[len(array.flat) // 2] = bad
    with pytest.raises(KeyframeError, match="NaN or infinite"):
        kf.validate(kind, array, "f.npy")


@pytest.mark.parametrize(
    "array",
    [
        np.array([["a", "b"], ["c", "d"]]),
        np.ones((2, 2), bool),
        np.array([[object(), 1.0]], dtype=object),
        np.zeros(2, dtype=[("pitch", "f4"), ("yaw", "f4")]),
        [[1.5, 1.5]],  # a list, not an array
    ],
    ids=["str", "bool", "object", "structured", "list"],
)
def test_validate_rejects_non_numeric_input(array):
    with pytest.raises(KeyframeError, match="numeric array"):
        kf.validate("camera", array, "f.npy")


@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_validate_rejects_complex_arrays():
    with pytest.raises(KeyframeError):
        kf.validate("camera", np.full((2, 2), 1.5 + 1j), "f.npy")


def test_validate_rejects_unknown_kind():
    with pytest.raises(KeyframeError, match="unknown keyframe kind"):
        kf.validate("shape", np.zeros((1, 10)), "f.npy")


# -- load ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_load_round_trips_npy(tmp_path, kind):
    path = tmp_path / f"{kind}.npy"
    np.save(path, GOOD[kind].astype(np.float64))
    out = kf.load(kind, path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, GOOD[kind])
    assert np.array_equal(kf.load(kind, str(path)), out)  # str and PathLike both work


def test_load_missing_file(tmp_path):
    with pytest.raises(KeyframeError, match="not found") as err:
        kf.load("pose", tmp_path / "nope.npy")
    assert "pose" in str(err.value) and "nope.npy" in str(err.value)


def test_load_a_directory_is_refused_as_a_folder(tmp_path):
    with pytest.raises(KeyframeError, match="is a folder"):
        kf.load("pose", tmp_path)


def test_load_refuses_npz_archives(tmp_path):
    path = tmp_path / "expression.npz"
    np.savez(path, expression=GOOD["expression"])
    with pytest.raises(KeyframeError, match=r"\.npz archive"):
        kf.load("expression", path)


def test_load_refuses_pickled_object_arrays_without_unpickling(tmp_path):
    sentinel = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(sentinel),))

    path = tmp_path / "camera.npy"
    np.save(path, np.array([[Payload(), 1.0]], dtype=object), allow_pickle=True)
    with pytest.raises(KeyframeError, match="not a readable .npy array") as err:
        kf.load("camera", path)
    assert "allow_pickle" in str(err.value)  # numpy's reason is passed on
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "content", [b"", b"not a numpy file at all", b"\x93NUMPY\x01\x00garbage"], ids=["empty", "text", "bad-header"]
)
def test_load_refuses_unreadable_files(tmp_path, content):
    path = tmp_path / "camera.npy"
    path.write_bytes(content)
    with pytest.raises(KeyframeError, match="not a readable .npy array"):
        kf.load("camera", path)


def test_load_truncated_npy(tmp_path):
    path = tmp_path / "expression.npy"
    np.save(path, GOOD["expression"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(KeyframeError, match="not a readable .npy array"):
        kf.load("expression", path)


def test_load_validates_shape_and_values(tmp_path):
    path = tmp_path / "pose.npy"
    np.save(path, np.zeros((3, 6, 2), np.float32))
    with pytest.raises(KeyframeError, match=r"\[N, 6, 3\]"):
        kf.load("pose", path)
    bad = GOOD["pose"].copy()
    bad[1, 2, 0] = np.nan
    np.save(path, bad)
    with pytest.raises(KeyframeError, match="NaN"):
        kf.load("pose", path)


# -- from_files ----------------------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    paths = {}
    for kind, array in GOOD.items():
        paths[kind] = str(tmp_path / f"{kind}.npy")
        np.save(paths[kind], array)
    return paths


def test_from_files_all_kinds(files):
    keys = kf.from_files(**files)
    assert len(keys) == 3
    for kind in KINDS:
        np.testing.assert_array_equal(getattr(keys, kind), GOOD[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_from_files_fills_the_missing_kinds_with_neutral_values(files, kind):
    keys = kf.from_files(**{kind: files[kind]})
    assert len(keys) == 3
    np.testing.assert_array_equal(getattr(keys, kind), GOOD[kind])
    neutral = kf.neutral(3)
    for other in set(KINDS) - {kind}:
        np.testing.assert_array_equal(getattr(keys, other), getattr(neutral, other))
    for name in KINDS:
        assert getattr(keys, name).dtype == np.float32


def test_neutral_is_zero_expression_mean_pose_frontal_camera():
    keys = kf.neutral(2)
    assert keys.expression.shape == (2, 64) and not keys.expression.any()
    assert keys.pose.shape == (2, 6, 3) and not keys.pose.any()
    np.testing.assert_allclose(keys.camera, [[math.pi / 2, math.pi / 2]] * 2)


def test_from_files_length_mismatch_names_every_length(files, tmp_path):
    np.save(files["camera"], GOOD["camera"][:2])
    with pytest.raises(KeyframeError, match="disagree in length") as err:
        kf.from_files(**files)
    message = str(err.value)
    assert "expression has 3" in message and "pose has 3" in message and "camera has 2" in message


def test_from_files_needs_a_file():
    with pytest.raises(KeyframeError, match="no keyframe file"):
        kf.from_files()


def test_from_files_missing_file_is_reported(files, tmp_path):
    with pytest.raises(KeyframeError, match="camera keyframe file not found"):
        kf.from_files(expression=files["expression"], camera=str(tmp_path / "missing.npy"))


# -- interpolate ---------------------------------------------------------------------------------------------------


def _lerp_loop(keys: np.ndarray, n: int) -> np.ndarray:
    """The release's assembly written out: frame i * n + j = (1 - j/n) kf[i] + (j/n) kf[(i + 1) mod N]."""
    frames = []
    for i in range(len(keys)):
        nxt = keys[(i + 1) % len(keys)]
        for j in range(n):
            k = j / n
            frames.append((1 - k) * keys[i].astype(np.float64) + k * nxt.astype(np.float64))
    return np.stack(frames)


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_interpolate_matches_the_release_formula(n):
    keys = kf.Keyframes(GOOD["expression"], GOOD["pose"], GOOD["camera"])
    frames = kf.interpolate(keys, n)
    assert len(frames) == 3 * n
    for kind in KINDS:
        out = getattr(frames, kind)
        assert out.dtype == np.float32 and out.shape == (3 * n, *GOOD[kind].shape[1:])
        np.testing.assert_allclose(out, _lerp_loop(GOOD[kind], n), rtol=0, atol=1e-6)


def test_interpolate_hits_keyframes_and_loops_back():
    keys = kf.Keyframes(GOOD["expression"], GOOD["pose"], GOOD["camera"])
    frames = kf.interpolate(keys, 4)
    np.testing.assert_array_equal(frames.camera[::4], GOOD["camera"])  # k = 0 on every keyframe
    # The last frame lies 3/4 of the way from the last keyframe back to the first.
    np.testing.assert_allclose(frames.camera[-1], 0.25 * GOOD["camera"][-1] + 0.75 * GOOD["camera"][0], atol=1e-6)
    np.testing.assert_allclose(frames.camera[2], 0.5 * (GOOD["camera"][0] + GOOD["camera"][1]), atol=1e-6)


def test_interpolate_n1_is_identity_and_single_keyframe_is_constant():
    keys = kf.Keyframes(GOOD["expression"], GOOD["pose"], GOOD["camera"])
    frames = kf.interpolate(keys, 1)
    for kind in KINDS:
        np.testing.assert_array_equal(getattr(frames, kind), GOOD[kind])
    one = kf.interpolate(kf.Keyframes(GOOD["expression"][:1], GOOD["pose"][:1], GOOD["camera"][:1]), 5)
    assert len(one) == 5
    np.testing.assert_allclose(one.pose, np.repeat(GOOD["pose"][:1], 5, axis=0), atol=1e-7)


@pytest.mark.parametrize("n", [0, -1])
def test_interpolate_rejects_non_positive_interval(n):
    keys = kf.neutral(2)
    with pytest.raises(KeyframeError, match="n_interval"):
        kf.interpolate(keys, n)


# -- built-in trajectories -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", kf.TRAJECTORIES)
def test_builtin_trajectories_are_consistent_and_finite(name):
    keys = kf.builtin(name)
    n = len(keys)
    assert n >= 2
    assert keys.expression.shape == (n, 64) and keys.pose.shape == (n, 6, 3) and keys.camera.shape == (n, 2)
    for kind in KINDS:
        array = getattr(keys, kind)
        assert array.dtype == np.float32 and np.isfinite(array).all()
    # Plausible ranges: cameras within 45 degrees of frontal, joint offsets under 90 degrees.
    assert np.abs(keys.camera - math.pi / 2).max() < math.pi / 4
    assert np.abs(keys.pose).max() < math.pi / 2
    frames = kf.interpolate(keys, 2)
    assert len(frames) == 2 * n


def test_builtin_single_kind_trajectories_leave_the_rest_neutral():
    yaw = kf.builtin("yaw")
    assert not yaw.expression.any() and not yaw.pose.any()
    np.testing.assert_allclose(yaw.camera[:, 0], math.pi / 2)
    np.testing.assert_allclose(yaw.camera[:, 1], math.pi / 2 + np.array(kf.YAW_SWEEP), atol=1e-6)
    expression = kf.builtin("expression")
    assert expression.expression.any() and not expression.pose.any()
    np.testing.assert_allclose(expression.camera, math.pi / 2)
    for name in ("head", "shoulder", "pose"):
        keys = kf.builtin(name)
        assert keys.pose.any() and not keys.expression.any()
        np.testing.assert_allclose(keys.camera, math.pi / 2)
    video = kf.builtin("video")
    assert video.expression.any() and video.pose.any()


def test_builtin_demo_is_yaw_head_shoulder_expression_concatenated():
    demo = kf.builtin("demo")
    parts = [kf.builtin(name) for name in ("yaw", "head", "shoulder", "expression")]
    assert len(demo) == sum(len(p) for p in parts)
    for kind in KINDS:
        np.testing.assert_array_equal(getattr(demo, kind), np.concatenate([getattr(p, kind) for p in parts]))


def test_builtin_unknown_trajectory():
    with pytest.raises(KeyframeError, match="unknown trajectory") as err:
        kf.builtin("spin")
    assert "demo" in str(err.value)


# -- seeds ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("0", [0]),
        ("0,1,4-6", [0, 1, 4, 5, 6]),
        ("7-7", [7]),
        (" 2 , 3-4 ", [2, 3, 4]),
        ("3,1,3,1-2", [3, 1, 2]),  # order kept, duplicates dropped
        ("123456789", [123456789]),
    ],
)
def test_parse_seeds_accepts(text, seeds):
    assert kf.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["a", "-1", "3-1", "", "1,,2", ",", "1,", "1-", "-", "1-2-3", "1.5", "0x10", "1;2"])
def test_parse_seeds_rejects(text):
    with pytest.raises(KeyframeError, match="bad seed list") as err:
        kf.parse_seeds(text)
    assert "0,1,4-6" in str(err.value)


def test_parse_seeds_rejects_seeds_torch_cannot_use():
    with pytest.raises(KeyframeError):
        kf.parse_seeds(str(2**64))


@pytest.mark.parametrize(
    "text",
    ["1_0", "+1", "\u0661", "1 2", "0-1-", " - 3"],
    ids=["underscore", "plus", "arabic-digit", "space", "dash", "neg"],
)
def test_parse_seeds_accepts_only_ascii_digits(text):
    with pytest.raises(KeyframeError, match="bad seed list"):
        kf.parse_seeds(text)


def test_parse_seeds_bounds_the_total_over_every_item():
    assert len(kf.parse_seeds("0-99999")) == kf.MAX_SEEDS
    assert kf.parse_seeds(f"{kf.MAX_SEED}") == [kf.MAX_SEED]
    for text in ("0-99999,100000-199999", "0-100000", "0-99999,5", "0,0-99999"):  # counted before duplicates go
        with pytest.raises(KeyframeError, match="at most 100,000 per run"):
            kf.parse_seeds(text)
    for text in (str(kf.MAX_SEED + 1), f"0-{kf.MAX_SEED + 1}", "0-" + "9" * 40):
        with pytest.raises(KeyframeError, match=f"at most {kf.MAX_SEED}"):
            kf.parse_seeds(text)


def test_parse_seeds_message_shortens_a_long_list():
    with pytest.raises(KeyframeError) as err:
        kf.parse_seeds("x" * 10_000)
    assert len(str(err.value)) < 200


# -- plausible ranges and size limits ------------------------------------------------------------------------------


def _with_value(kind: str, index: tuple, value: float, dtype=np.float64) -> np.ndarray:
    array = GOOD[kind].astype(dtype)
    array[index] = value
    return array


@pytest.mark.parametrize(
    ("kind", "index", "value", "fragments"),
    [
        ("camera", (1, 0), 0.0, ["camera pitch 0 at keyframe 1", "(0, pi)"]),
        ("camera", (0, 0), math.pi, ["camera pitch 3.14159 at keyframe 0", "(0, pi)"]),
        ("camera", (2, 0), -0.5, ["camera pitch -0.5"]),
        ("camera", (0, 1), 1e30, ["camera yaw 1e+30 at keyframe 0", "[pi/2 - pi, pi/2 + pi]"]),
        ("camera", (0, 1), 1e300, ["camera yaw 1e+300"]),
        ("camera", (1, 1), -1.6, ["camera yaw -1.6 at keyframe 1"]),
        ("camera", (1, 1), 4.72, ["camera yaw 4.72"]),
        ("pose", (2, 3, 1), 3.2, ["pose Euler offset 3.2 at keyframe 2, index [3, 1]", "[-pi, pi]"]),
        ("pose", (0, 0, 0), -1e30, ["pose Euler offset -1e+30 at keyframe 0, index [0, 0]"]),
        ("expression", (1, 7), 1e6, ["expression coefficient 1e+06 at keyframe 1, index [7]", "[-10, 10]"]),
        ("expression", (0, 63), -10.5, ["expression coefficient -10.5 at keyframe 0, index [63]"]),
    ],
)
def test_validate_refuses_values_beyond_the_plausible_range(kind, index, value, fragments):
    array = _with_value(kind, index, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning may leak (1e300 overflows float32)
        with pytest.raises(KeyframeError) as err:
            kf.validate(kind, array, "f.npy")
    message = str(err.value)
    assert message.startswith("f.npy: ") and "fix the file" in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("kind", "index", "value"),
    [
        ("camera", (0, 0), 1e-3),
        ("camera", (0, 0), math.pi - 1e-3),
        ("camera", (0, 1), math.pi / 2 - math.pi),
        ("camera", (0, 1), math.pi / 2 + math.pi),
        ("pose", (0, 0, 0), -math.pi),
        ("pose", (0, 0, 0), math.pi),
        ("expression", (0, 0), -10.0),
        ("expression", (0, 0), 10.0),
    ],
)
def test_validate_accepts_the_ends_of_the_ranges(kind, index, value):
    out = kf.validate(kind, _with_value(kind, index, value), "f.npy")
    assert out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="longdouble is float64 here")
def test_validate_refuses_a_longdouble_beyond_float64_without_a_warning():
    array = GOOD["camera"].astype(np.longdouble)
    array[0, 1] = np.longdouble(10) ** 400
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyframeError, match="camera yaw 1e\\+400"):
            kf.validate("camera", array, "f.npy")


@pytest.mark.parametrize("name", ["expression", "pose", "video"])
def test_release_keyframes_lie_well_inside_the_ranges(name):
    """The release's files (built-in trajectories) pass with room to spare: at most half of each range is used."""
    keys = kf.builtin(name)
    assert np.abs(keys.expression).max() <= kf.EXPRESSION_RANGE[1] / 2
    assert np.abs(keys.pose).max() <= kf.POSE_RANGE[1] / 2
    assert np.abs(keys.camera - math.pi / 2).max() <= math.pi / 4


def test_validate_refuses_more_rows_than_a_video_may_have():
    kf.validate("camera", np.full((kf.MAX_KEYFRAMES, 2), 1.5), "f.npy")
    with pytest.raises(KeyframeError, match="100,001 camera keyframes; at most 100,000"):
        kf.validate("camera", np.full((kf.MAX_KEYFRAMES + 1, 2), 1.5), "f.npy")


def test_load_refuses_a_huge_file_from_its_header_without_reading_the_data(tmp_path, monkeypatch):
    path = tmp_path / "camera.npy"
    np.save(path, np.full((kf.MAX_KEYFRAMES + 1, 2), 1.5, np.float32))

    def no_data_read(*args, **kwargs):
        raise AssertionError("the data was read")

    monkeypatch.setattr(np, "load", no_data_read)
    with pytest.raises(KeyframeError, match="camera.npy: the camera keyframe file has 100,001 rows; at most 100,000"):
        kf.load("camera", path)


def test_load_refuses_out_of_range_values_naming_the_file(tmp_path):
    path = tmp_path / "camera.npy"
    np.save(path, np.array([[1.5, 1e300]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyframeError, match=r"camera\.npy: camera yaw 1e\+300 at keyframe 0"):
            kf.load("camera", path)


def test_interpolate_refuses_over_100000_frames_before_allocating():
    keys = kf.neutral(100_000)  # x 1000 frames each would need 34 GB
    with pytest.raises(KeyframeError, match=r"100,000 keyframes x --n-interval 1000 = 100,000,000 frames"):
        kf.interpolate(keys, 1000)
    assert len(kf.interpolate(kf.neutral(1000), 100)) == kf.MAX_FRAMES
    with pytest.raises(KeyframeError, match="at most 100,000 frames"):
        kf.interpolate(kf.neutral(1001), 100)
