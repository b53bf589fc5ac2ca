"""Dataset format validation, loading, flip conventions and the loader (CPU, tiny datasets; the label samplers are
tested in ``test_samplers.py``)."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aniportrait.data.dataset import (
    DatasetError,
    PortraitDataset,
    check_dataset,
    flip_decision,
    flip_labels,
    make_loader,
    mirror_camera,
    mirror_pose,
    set_epoch,
)
from aniportrait.data.format import FORMAT, LABEL_SHAPES, VERSION
from tests.data.dataset_helpers import F, R, write_dataset


def rewrite_labels(root: Path, **changes) -> None:
    """Rewrite labels.npz with some arrays replaced (None removes one)."""
    with np.load(root / "labels.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(root / "labels.npz", **arrays)


# ---------------------------------------------------------------------------------------------------------------------
# check_dataset


def test_check_dataset_ok(dataset_dir):
    report = check_dataset(dataset_dir)
    assert report.ok, report.summary()
    assert report.problems == [] and report.count == 6
    assert "OK, 6 entries" in report.summary()


def test_check_dataset_extra_files_are_fine(dataset_dir):
    (dataset_dir / "README.txt").write_text("notes")
    Image.new("RGB", (3, 3)).save(dataset_dir / "images" / "unlisted.png")
    assert check_dataset(dataset_dir).ok


def _break_missing_image(root):
    (root / "images" / "000002.png").unlink()
    return ["images/000002.png: missing"]


def _break_missing_face(root):
    (root / "faces" / "000004.png").unlink()
    return ["faces/000004.png: missing"]


def _break_corrupt_png(root):
    file = root / "faces" / "000001.png"
    data = bytearray(file.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zero the second half
    file.write_bytes(bytes(data))
    return ["faces/000001.png: corrupt (cannot decode)"]


def _break_truncated_png(root):
    file = root / "images" / "000003.png"
    file.write_bytes(file.read_bytes()[:60])
    return ["images/000003.png: corrupt (cannot decode)"]


def _break_not_png(root):
    Image.new("RGB", (R, R)).save(root / "images" / "000000.png", format="JPEG")
    return ["images/000000.png: not a PNG (bad signature)"]


def _break_wrong_size(root):
    Image.new("RGB", (R + 1, R)).save(root / "images" / "000005.png")
    return ["images/000005.png: size 17x16, expected 16x16"]


def _break_label_shape(root):
    rewrite_labels(root, pose=np.zeros((6, 6, 2), np.float32))
    return ["labels.npz: pose has shape [6, 6, 2], expected [N, 6, 3]"]


def _break_label_rows(root):
    rewrite_labels(root, betas=np.zeros((5, 10), np.float32))
    return ["labels.npz: betas has 5 rows, expected N = 6 (one per id)"]


def _break_nan_label(root):
    with np.load(root / "labels.npz") as z:
        expression = z["expression"].copy()
    expression[3, 7] = np.nan
    rewrite_labels(root, expression=expression)
    return ["labels.npz: expression has NaN or inf in 1 row(s): 3 ('000003')"]


def _break_int_label(root):
    rewrite_labels(root, camera=np.zeros((6, 2), np.int64))
    return ["labels.npz: camera has dtype int64, expected float32"]


def _break_missing_label(root):
    rewrite_labels(root, id=None)
    return ["labels.npz: id missing, expected [N, 80] float32"]


def _break_duplicate_id(root):
    rewrite_labels(root, ids=np.array(["000000", "000001", "000002", "000003", "000001", "000005"]))
    return ["labels.npz: id '000001' appears 2 times; ids must be unique"]


def _break_bad_stem(root):
    rewrite_labels(root, ids=np.array(["000000", "000001", "../x", "000003", "000004", "000005\n"]))
    return [
        "labels.npz: id '../x' is not a valid file stem; use letters, digits, '-', '_'",
        "labels.npz: id '000005\\n' is not a valid file stem",
    ]


def _break_object_ids(root):
    rewrite_labels(root, ids=np.array([f"{i:06d}" for i in range(6)], dtype=object))
    return ["labels.npz: ids cannot be loaded without pickle"]


def _break_missing_labels(root):
    (root / "labels.npz").unlink()
    return ["labels.npz: missing"]


def _break_unreadable_labels(root):
    (root / "labels.npz").write_bytes(b"not a zip file")
    return ["labels.npz: cannot read"]


def _break_bad_json(root):
    (root / "dataset.json").write_text("{'format': oops")
    return ["dataset.json: not valid JSON"]


def _break_missing_json(root):
    (root / "dataset.json").unlink()
    return ["dataset.json: missing"]


def _break_meta_fields(root):
    meta = {"format": "other", "version": 2, "image_size": "16", "face_size": F, "count": 6}
    (root / "dataset.json").write_text(json.dumps(meta))
    return [
        "dataset.json: format is 'other', expected 'aniportrait-dataset'",
        "dataset.json: version 2 is not supported",
        "dataset.json: image_size is '16', expected a positive integer",
    ]


def _break_count(root):
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "count": 7}))
    return ["dataset.json: count is 7 but labels.npz has 6 ids"]


BREAKAGES = [
    pytest.param(_break_missing_image, id="missing-image"),
    pytest.param(_break_missing_face, id="missing-face"),
    pytest.param(_break_corrupt_png, id="corrupt-png"),
    pytest.param(_break_truncated_png, id="truncated-png"),
    pytest.param(_break_not_png, id="jpeg-as-png"),
    pytest.param(_break_wrong_size, id="wrong-size"),
    pytest.param(_break_label_shape, id="label-shape"),
    pytest.param(_break_label_rows, id="label-rows"),
    pytest.param(_break_nan_label, id="nan-label"),
    pytest.param(_break_int_label, id="int-label"),
    pytest.param(_break_missing_label, id="missing-label"),
    pytest.param(_break_duplicate_id, id="duplicate-id"),
    pytest.param(_break_bad_stem, id="bad-stem"),
    pytest.param(_break_object_ids, id="object-ids"),
    pytest.param(_break_missing_labels, id="missing-labels-npz"),
    pytest.param(_break_unreadable_labels, id="unreadable-labels-npz"),
    pytest.param(_break_bad_json, id="bad-json"),
    pytest.param(_break_missing_json, id="missing-json"),
    pytest.param(_break_meta_fields, id="meta-fields"),
    pytest.param(_break_count, id="count-mismatch"),
]


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_check_dataset_names_the_problem(dataset_dir, breakage):
    expected = breakage(dataset_dir)
    report = check_dataset(dataset_dir)
    assert not report.ok
    for prefix in expected:
        assert any(p.startswith(prefix) for p in report.problems), (prefix, report.problems)
    assert len(report.problems) == len(expected), report.problems  # nothing else is blamed
    assert expected[0].split(":")[0] in report.summary()
    with pytest.raises(DatasetError, match=expected[0].split(":")[0]):
        PortraitDataset(dataset_dir)


def test_check_dataset_lists_every_problem(dataset_dir):
    breakages = (_break_missing_image, _break_missing_face, _break_wrong_size, _break_nan_label, _break_count)
    expected = [prefix for breakage in breakages for prefix in breakage(dataset_dir)]
    problems = check_dataset(dataset_dir).problems
    assert len(problems) == len(expected), problems
    for prefix in expected:
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)


def test_check_dataset_empty(tmp_path):
    root = write_dataset(tmp_path / "empty", n=0)
    report = check_dataset(root)
    assert not report.ok and report.count == 0
    assert report.problems == ["labels.npz: no entries (N = 0); a dataset needs at least one image"]
    with pytest.raises(DatasetError, match="no entries"):
        PortraitDataset(root)


def test_check_dataset_not_a_directory(tmp_path):
    report = check_dataset(tmp_path / "nowhere")
    assert not report.ok and "not a directory" in report.problems[0]


def test_check_dataset_is_fast(tmp_path):
    """1000 entries at 128x128 (the target of the brief: a few seconds at most; here a generous bound)."""
    root = tmp_path / "big"
    (root / "images").mkdir(parents=True)
    (root / "faces").mkdir()
    n = 1000
    rng = np.random.default_rng(0)
    png = tmp_path / "template.png"  # one encoded PNG, copied: writing is not what is timed
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(png)
    data = png.read_bytes()
    ids = [f"{i:06d}" for i in range(n)]
    for stem in ids:
        (root / "images" / f"{stem}.png").write_bytes(data)
        (root / "faces" / f"{stem}.png").write_bytes(data)
    labels = {k: np.zeros((n, *shape), np.float32) for k, shape in LABEL_SHAPES.items()}
    np.savez(root / "labels.npz", ids=np.array(ids, dtype=str), **labels)
    meta = {"format": FORMAT, "version": VERSION, "image_size": 128, "face_size": 128, "count": n}
    (root / "dataset.json").write_text(json.dumps(meta))
    start = time.perf_counter()
    report = check_dataset(root)
    elapsed = time.perf_counter() - start
    assert report.ok, report.summary()
    assert elapsed < 10.0, f"check_dataset took {elapsed:.1f} s for {n} entries"


# ---------------------------------------------------------------------------------------------------------------------
# PortraitDataset


def test_dataset_item_shapes_and_ranges(dataset_dir):
    ds = PortraitDataset(dataset_dir)
    assert len(ds) == 6
    item = ds[2]
    assert item["image"].shape == (3, R, R) and item["image"].dtype == torch.float32
    assert item["face"].shape == (3, F, F) and item["face"].dtype == torch.float32
    for key in ("image", "face"):
        assert item[key].min() >= -1.0 and item[key].max() <= 1.0
    for key, shape in LABEL_SHAPES.items():
        assert item[key].shape == shape and item[key].dtype == torch.float32
    assert item["index"] == 2 and not item["flipped"]
    # Pixel values map exactly: 0 -> -1, 255 -> 1.
    raw = np.array(Image.open(dataset_dir / "images" / "000002.png"))
    torch.testing.assert_close(item["image"], torch.from_numpy(raw).permute(2, 0, 1).float() / 127.5 - 1)
    with np.load(dataset_dir / "labels.npz") as z:
        torch.testing.assert_close(item["pose"], torch.from_numpy(z["pose"][2]))


def test_dataset_transparency_over_white_and_grey(tmp_path):
    root = write_dataset(tmp_path / "ds", n=2)
    Image.new("RGBA", (R, R), (0, 0, 0, 0)).save(root / "images" / "000000.png")
    Image.new("L", (F, F), 0).save(root / "faces" / "000001.png")
    assert check_dataset(root).ok
    ds = PortraitDataset(root)
    assert torch.all(ds[0]["image"] == 1.0)  # fully transparent -> white
    assert ds[1]["face"].shape == (3, F, F) and torch.all(ds[1]["face"] == -1.0)


def test_dataset_without_check_raises_on_load(dataset_dir):
    (dataset_dir / "images" / "000001.png").unlink()
    ds = PortraitDataset(dataset_dir, check=False)
    ds[0]
    with pytest.raises(DatasetError, match="000001.png: missing"):
        ds[1]


def test_dataset_without_check_names_bad_images(dataset_dir):
    Image.new("RGB", (R + 2, R + 2)).save(dataset_dir / "images" / "000003.png")
    (dataset_dir / "faces" / "000004.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    ds = PortraitDataset(dataset_dir, check=False)
    with pytest.raises(DatasetError, match="000003.png: size 18x18, expected 16x16"):
        ds[3]
    with pytest.raises(DatasetError, match="000004.png: corrupt"):
        ds[4]


def test_rows_stack_the_unmirrored_items(dataset_dir):
    ds = PortraitDataset(dataset_dir, flip=True, seed=3)
    assert ds.flips(3) and not ds.flips(1)  # the dataset would mirror item 3
    rows = ds.rows([3, 1, 3])
    assert set(rows) == {"image", "face", *LABEL_SHAPES}
    for n, index in enumerate([3, 1, 3]):
        item = ds.get(index, flip=False)
        assert all(torch.equal(rows[key][n], item[key]) for key in rows)
    picked = ds.rows(range(2), keys=("camera", "image"))
    assert list(picked) == ["camera", "image"] and picked["image"].shape == (2, 3, R, R)


def test_default_collate(dataset_dir):
    batch = torch.utils.data.default_collate([PortraitDataset(dataset_dir)[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, R, R) and batch["pose"].shape == (3, 6, 3)
    assert batch["index"].tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------------------------
# Flip


def test_flip_conventions(dataset_dir):
    ds = PortraitDataset(dataset_dir)
    plain, flipped = ds.get(1, flip=False), ds.get(1, flip=True)
    assert flipped["flipped"] and not plain["flipped"]
    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
    torch.testing.assert_close(flipped["face"], plain["face"].flip(-1))
    # Yaw mirrored around pi/2, pitch kept.
    torch.testing.assert_close(flipped["camera"][0], plain["camera"][0])
    torch.testing.assert_close(flipped["camera"][1] - math.pi / 2, math.pi / 2 - plain["camera"][1])
    # Left/right joints swapped (13<->14, 16<->17), Z and Y negated, X kept; neck and head stay.
    for src, dst in {0: 0, 1: 2, 2: 1, 3: 3, 4: 5, 5: 4}.items():
        torch.testing.assert_close(flipped["pose"][dst], plain["pose"][src] * torch.tensor([-1.0, -1.0, 1.0]))
    for key in ("betas", "id", "expression"):  # documented approximation: unchanged
        torch.testing.assert_close(flipped[key], plain[key])


def test_flip_twice_is_identity():
    labels = {
        "camera": torch.rand(5, 2) * math.pi,
        "pose": torch.randn(5, 6, 3),
        "betas": torch.randn(5, 10),
    }
    twice = flip_labels(flip_labels(labels))
    for key, value in labels.items():
        torch.testing.assert_close(twice[key], value)
    frontal = torch.tensor([[math.pi / 2, math.pi / 2]])
    torch.testing.assert_close(mirror_camera(frontal), frontal)


def test_mirror_pose_is_the_mirrored_rotation():
    """Each joint's mirrored Euler angles give M R M with M = diag(-1, 1, 1) (x is the body's left)."""
    from aniportrait.geometry import euler_zyx_to_matrix

    pose = 0.6 * torch.randn(4, 6, 3, dtype=torch.float64)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    expected = mirror @ euler_zyx_to_matrix(pose) @ mirror
    got = euler_zyx_to_matrix(mirror_pose(pose))[:, [0, 2, 1, 3, 5, 4]]
    torch.testing.assert_close(got, expected)


def test_flip_is_deterministic_per_seed_epoch_index(dataset_dir):
    ds = PortraitDataset(dataset_dir, flip=True, seed=3)
    first = [bool(ds[i]["flipped"]) for i in range(len(ds))]
    assert first == [bool(PortraitDataset(dataset_dir, flip=True, seed=3)[i]["flipped"]) for i in range(len(ds))]
    assert first == [flip_decision(3, 0, i) for i in range(len(ds))]
    # Other epochs give other flips; about half of all decisions flip.
    decisions = [flip_decision(3, e, i) for e in range(50) for i in range(20)]
    assert 0.4 < np.mean(decisions) < 0.6
    assert len({tuple(flip_decision(3, e, i) for i in range(20)) for e in range(10)}) > 1
    ds.set_epoch(1)
    assert [bool(ds[i]["flipped"]) for i in range(len(ds))] == [flip_decision(3, 1, i) for i in range(len(ds))]
    assert not any(bool(PortraitDataset(dataset_dir)[i]["flipped"]) for i in range(len(ds)))  # flip=False default


# ---------------------------------------------------------------------------------------------------------------------
# Loader


def _order(loader):
    return [batch["index"].tolist() for batch in loader]


def test_loader_reproducible(tmp_path):
    ds = PortraitDataset(write_dataset(tmp_path / "ds", n=10), flip=True, seed=1)
    first = _order(make_loader(ds, 4, shuffle=True, seed=7))
    assert len(first) == 2 and all(len(b) == 4 for b in first)  # drop_last: 10 -> 2 batches of 4
    assert first == _order(make_loader(ds, 4, shuffle=True, seed=7))
    assert first != _order(make_loader(ds, 4, shuffle=True, seed=8))
    a, b = next(iter(make_loader(ds, 4, shuffle=True, seed=7))), next(iter(make_loader(ds, 4, shuffle=True, seed=7)))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _order(make_loader(ds, 4, shuffle=False, seed=0, drop_last=False)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_loader_distributed_splits_ranks(tmp_path):
    ds = PortraitDataset(write_dataset(tmp_path / "ds", n=10))
    loaders = [make_loader(ds, 2, True, seed=3, distributed=True, num_replicas=2, rank=r) for r in range(2)]
    orders = [[i for b in _order(loader) for i in b] for loader in loaders]
    assert len(orders[0]) == len(orders[1]) == 4  # 5 per rank, batches of 2, the last one dropped
    assert not set(orders[0]) & set(orders[1])
    assert orders == [[i for b in _order(loader) for i in b] for loader in loaders]  # same epoch, same order
    for loader in loaders:
        set_epoch(loader, 1)
    assert orders != [[i for b in _order(loader) for i in b] for loader in loaders]
    assert ds.epoch == 1


def test_loader_workers_match_main_process(tmp_path):
    """Flips depend on (seed, epoch, index) only, so worker processes give the same batches."""
    ds = PortraitDataset(write_dataset(tmp_path / "ds", n=8), flip=True, seed=2)
    ds.set_epoch(4)
    main = list(make_loader(ds, 4, shuffle=True, seed=1))
    workers = list(make_loader(ds, 4, shuffle=True, seed=1, num_workers=2))
    for a, b in zip(main, workers, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_label_digest_tells_datasets_apart_by_their_labels(tmp_path):
    from tests.train.train_helpers import write_dataset

    first, same = write_dataset(tmp_path / "a", seed=0), write_dataset(tmp_path / "b", seed=0)
    other = write_dataset(tmp_path / "c", seed=1)
    digest = PortraitDataset(first).label_digest()
    assert digest == PortraitDataset(same).label_digest()
    assert digest != PortraitDataset(other).label_digest()
    assert len(digest) == 64
