"""The evaluation report (aniportrait.eval.report): which metrics ``evaluate`` computes on which rows, the keys it
reports them under, the skipping of estimator metrics on other data, its input checks, and the table and JSON
formatting. The generator's renders and the render-based control / identity scores are stubbed (the CLI test
tests/cli/test_evaluate.py runs them for real); the dataset is the tiny one of the data tests."""

import json
from types import SimpleNamespace

import pytest
import torch

from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval import EvalError, control, metrics, report
from aniportrait.eval.estimator import SYNTH_SOURCE
from aniportrait.images import resample_grid
from tests.data.dataset_helpers import write_dataset

IMAGE, FACE = 12, 6  # the stub generator's sizes (the dataset's are 16 and 8: reals are resized)


class _Generator:
    config = SimpleNamespace(hr_img_size=IMAGE)

    def default_face_size(self, stage):
        assert stage == 2, "eval renders the full inference path"
        return FACE


class _Estimator(torch.nn.Module):
    """Features: the mean of the portrait and of the face crop; records the floor it was asked for."""

    def __init__(self, floor=None):
        super().__init__()
        self.head = torch.nn.Linear(1, 1)
        self.floors = []
        if floor is not None:
            self.floor = lambda size: self.floors.append(size) or floor

    def features(self, images, faces):
        assert images.shape[-1] == IMAGE and faces.shape[-1] == FACE
        return torch.stack([images.mean((1, 2, 3)), faces.mean((1, 2, 3))], dim=1)


def _inception(images):
    """A stand-in Inception: two colour means per image."""
    return images.mean((2, 3))[:, :2]


def _fake(n, seed):
    g = torch.Generator().manual_seed(1000 + seed)
    return {
        "image": torch.rand(n, 3, IMAGE, IMAGE, generator=g) * 2 - 1,
        "face": torch.rand(n, 3, FACE, FACE, generator=g),
    }


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    """The same 8 rows as another dataset and as a synthetic one."""
    root = tmp_path_factory.mktemp("report")
    other = write_dataset(root / "other", n=8)
    synth = write_dataset(root / "synth", n=8)
    meta = json.loads((synth / "dataset.json").read_text())
    (synth / "dataset.json").write_text(json.dumps(dict(meta, source=f"{SYNTH_SOURCE} test")))
    return other, synth


@pytest.fixture
def calls(monkeypatch):
    """Stub renders: generated_batches yields _fake batches; control_errors / identity_consistency return fixed
    scores. Returns the list of (what, kwargs) calls."""
    log = []

    def generated_batches(generator, body, bank, n, *, batch_size, seed, stage, face_size, impl):
        log.append(("generated", {"n": n, "batch_size": batch_size, "stage": stage, "face_size": face_size}))
        for start in range(0, n, batch_size):
            yield _fake(min(batch_size, n - start), seed + start)

    def control_errors(generator, body, labels, estimator, face_size, stage, **kwargs):
        log.append(("control", {"labels": labels, "face_size": face_size, "stage": stage, **kwargs}))
        return {"camera_deg": 1.5, "expression": 0.25, "count": len(labels["seeds"])}

    def identity_consistency(generator, body, seeds, controls, inception, **kwargs):
        log.append(("identity", {"seeds": seeds, "controls": controls, "inception": inception, **kwargs}))
        return {"gap": 0.5, "same": 0.75, "pairs": 12, "note": "text"}

    monkeypatch.setattr(metrics, "generated_batches", generated_batches)
    monkeypatch.setattr(control, "control_errors", control_errors)
    monkeypatch.setattr(control, "identity_consistency", identity_consistency)
    return log


def _reals(path, rows):
    dataset = PortraitDataset(path)
    # resampled on the ray grid (corner to corner), antialiased
    images = resample_grid(torch.stack([dataset[i]["image"] for i in rows]), IMAGE, antialias=True)
    faces = resample_grid(torch.stack([dataset[i]["face"] for i in rows]), FACE, antialias=True)
    return images, faces


def _features(images, faces):
    return _Estimator().features(images, faces).double()


# ---------------------------------------------------------------------------------------------------------------------
# evaluate


def test_real_batches_are_the_rows_resized(data_dirs):
    other, _ = data_dirs
    batches = list(report._real_batches(PortraitDataset(other), 5, 2, IMAGE, FACE, start=2))
    assert [b["image"].shape[0] for b in batches] == [2, 2, 1]
    images, faces = _reals(other, range(2, 7))
    torch.testing.assert_close(torch.cat([b["image"] for b in batches]), images)
    torch.testing.assert_close(torch.cat([b["face"] for b in batches]), faces)


def test_fidelity_and_its_floor_on_the_next_rows(data_dirs, calls):
    _, synth = data_dirs
    out = report.evaluate(
        _Generator(),
        None,
        str(synth),
        metrics_wanted=("fidelity",),
        num=4,
        batch_size=3,
        seed=7,
        estimator=_Estimator(),
    )
    assert calls == [("generated", {"n": 4, "batch_size": 3, "stage": 2, "face_size": FACE})]
    fake = [_fake(3, 7), _fake(1, 10)]
    f_fake = _features(torch.cat([b["image"] for b in fake]), torch.cat([b["face"] for b in fake]))
    f_real = _features(*_reals(synth, range(4)))
    f_next = _features(*_reals(synth, range(4, 8)))
    assert out["fidelity"] == pytest.approx(metrics.frechet_distance(f_fake, f_real), rel=1e-6)
    assert out["fidelity_floor"] == pytest.approx(metrics.frechet_distance(f_next, f_real), rel=1e-6)
    assert out["fidelity_floor"] != pytest.approx(out["fidelity"], rel=1e-3)
    assert out == {
        "num": 4,
        "image_size": IMAGE,
        "face_size": FACE,
        **{k: out[k] for k in ("fidelity", "fidelity_floor")},
    }


def test_no_fidelity_floor_without_twice_num_rows(data_dirs, calls):
    _, synth = data_dirs
    out = report.evaluate(_Generator(), None, str(synth), metrics_wanted=("fidelity",), num=5, estimator=_Estimator())
    assert "fidelity" in out and "fidelity_floor" not in out


def test_num_is_capped_at_the_dataset_size(data_dirs, calls):
    _, synth = data_dirs
    out = report.evaluate(_Generator(), None, str(synth), metrics_wanted=("fidelity",), num=100, estimator=_Estimator())
    assert out["num"] == 8 and calls[0][1]["n"] == 8


def test_fid_and_kid_per_region(data_dirs, calls):
    other, _ = data_dirs
    out = report.evaluate(
        _Generator(), None, str(other), metrics_wanted=("fid", "kid"), num=4, batch_size=4, inception=_inception
    )
    fake, (images, faces) = _fake(4, 0), _reals(other, range(4))
    for name, key, real in (("full", "image", images), ("face", "face", faces)):
        expected = metrics.fid_kid(_inception(real).double(), _inception(fake[key]).double(), subset_size=4, seed=0)
        assert out[f"fid_{name}"] == pytest.approx(expected["fid"], rel=1e-6), name
        assert out[f"kid_x100_{name}"] == pytest.approx(expected["kid_x100"], rel=1e-6, abs=1e-9), name
    assert out["fid_full"] != pytest.approx(out["fid_face"], rel=1e-3)
    only_fid = report.evaluate(_Generator(), None, str(other), metrics_wanted=("fid",), num=4, inception=_inception)
    assert {"fid_full", "fid_face"} <= set(only_fid) and not any(k.startswith("kid") for k in only_fid)


def test_control_errors_and_the_estimator_floor(data_dirs, calls):
    _, synth = data_dirs
    floor = {"control": {"camera_deg": 2.0, "head_pose_deg": 3.0, "unlisted": 9.0}}
    estimator = _Estimator(floor)
    out = report.evaluate(
        _Generator(), "BODY", str(synth), metrics_wanted=("control",), num=3, batch_size=2, seed=5, estimator=estimator
    )
    assert out["control_camera_deg"] == 1.5 and out["control_expression"] == 0.25 and out["control_count"] == 3
    assert estimator.floors == [IMAGE]  # the floor of the generated image size
    floors = {k: v for k, v in out.items() if k.startswith("control_floor_")}
    assert floors == {"control_floor_camera_deg": 2.0, "control_floor_head_pose_deg": 3.0}
    [(what, kwargs)] = calls  # no renders for fid / fidelity
    assert what == "control" and kwargs["face_size"] == FACE and kwargs["stage"] == 2
    assert kwargs["batch_size"] == 2 and kwargs["seed"] == 5
    labels = kwargs["labels"]
    assert labels["seeds"] == [0, 1, 2]
    assert labels["camera"].shape == (3, 2) and labels["pose"].shape == (3, 6, 3)
    assert labels["expression"].shape == (3, 64)
    # an estimator without floors: no floor keys
    out = report.evaluate(_Generator(), None, str(synth), metrics_wanted=("control",), num=3, estimator=_Estimator())
    assert not any(k.startswith("control_floor_") for k in out)


def test_identity_reports_only_float_scores(data_dirs, calls):
    other, _ = data_dirs
    out = report.evaluate(
        _Generator(),
        None,
        str(other),
        metrics_wanted=("identity",),
        inception=_inception,
        identity_seeds=3,
        identity_controls=2,
    )
    assert {k: v for k, v in out.items() if k.startswith("identity_")} == {"identity_gap": 0.5, "identity_same": 0.75}
    [(what, kwargs)] = calls
    assert what == "identity" and kwargs["seeds"] == [0, 1, 2] and kwargs["inception"] is _inception
    assert kwargs["controls"]["camera"].shape == (2, 2) and kwargs["face_size"] == FACE and kwargs["stage"] == 2


def test_estimator_metrics_are_skipped_on_other_data(data_dirs, calls, monkeypatch):
    other, _ = data_dirs

    def no_estimator():
        raise AssertionError("the estimator must not be loaded for skipped metrics")

    monkeypatch.setattr(report, "builtin_estimator", no_estimator)
    out = report.evaluate(_Generator(), None, str(other), metrics_wanted=("fidelity", "control"), num=4)
    assert calls == []
    assert set(out) == {"num", "image_size", "face_size", "skipped"}
    assert out["skipped"].startswith("control, fidelity: ")
    assert out["skipped"].endswith("this dataset's source is 'not given'")


@pytest.mark.parametrize(
    "wanted,inception,message",
    [
        (("fid", "zeta", "alpha"), _inception, "unknown metrics alpha, zeta; choose from fid, kid, control"),
        (("fid",), None, "need --inception"),
        (("kid",), None, "need --inception"),
        (("identity", "control"), None, "need --inception"),
    ],
)
def test_evaluate_refuses_bad_requests(data_dirs, calls, wanted, inception, message):
    other, _ = data_dirs
    with pytest.raises(EvalError, match=message):
        report.evaluate(_Generator(), None, str(other), metrics_wanted=wanted, inception=inception)
    assert calls == []


# ---------------------------------------------------------------------------------------------------------------------
# Formatting


def test_format_table_aligns_and_rounds_floats():
    table = report.format_table({"num": 4, "fid_full": 12.345678, "kid_x100_face": 0.00004, "skipped": "x: y"})
    assert table.splitlines() == [
        "num            4",
        "fid_full       12.3457",
        "kid_x100_face  0.0000",
        "skipped        x: y",
    ]


def test_to_json_round_trips_in_report_order():
    out = {"num": 4, "fid_full": 1.25, "skipped": "control: other data", "control_camera_deg": 0.1}
    text = report.to_json(out)
    assert json.loads(text) == out
    assert list(json.loads(text)) == list(out)  # not sorted
    assert text.splitlines()[1] == '  "num": 4,'  # indented by two
