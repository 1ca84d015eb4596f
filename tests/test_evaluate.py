"""The evaluation tool's metrics, label readers and report, and the 68-landmark stages on held-out faces."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import labelled_afw_faces
from service.evaluate import Prediction, Sample, ced, evaluate, find_samples, landmark_errors, summarise
from service.ibug import IBUG68_MIRROR, read_pts

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_on_known_errors():
    labels = np.zeros((68, 2))
    labels[:, 0] = np.linspace(0, 100, 68)
    labels[:, 1] = np.linspace(0, 50, 68) ** 1.1
    io = np.linalg.norm(labels[36] - labels[45])
    _, nme, _ = landmark_errors(labels + [0.02 * io, 0], labels)
    assert nme == pytest.approx(0.02)
    records = [{"nme_io": 0.0, "nme_box": 0.0}, {"nme_io": 0.04, "nme_box": 0.02},
               {"nme_io": 0.1, "nme_box": 0.05}, {"nme_io": float("inf"), "nme_box": float("inf")}]
    summary = summarise(records)
    assert summary["missed"] == 1 and summary["failure_rate_at_0.08"] == pytest.approx(0.5)
    assert summary["nme_io_mean"] == pytest.approx((0.0 + 0.04 + 0.1) / 3)
    _, _, auc = ced(np.array([0.0, 0.04, 0.1, np.inf]))
    assert auc == pytest.approx((1.0 + 0.5) / 4, abs=0.01)  # one face at 0 (area 1), one at 0.04 (area 0.5)


def test_pose_buckets_and_missed_faces(tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    labels = np.stack([np.linspace(10, 50, 68), np.linspace(10, 50, 68) ** 0.9], 1)
    samples = [Sample(image, labels, np.array([70.0, 5.0, -3.0])), Sample(image, labels, np.array([10.0, 0.0, 0.0])),
               Sample(image, labels + 1000, np.array([40.0, 0.0, 0.0]))]

    def predict(_):
        return [Prediction(labels, np.array([65.0, 7.0, -3.0]))]

    summary, records, per_point = evaluate(samples, predict, progress=False)
    assert summary["missed"] == 1 and per_point.shape == (2, 68)
    buckets = summary["pose_mae_deg_by_abs_yaw"]
    assert buckets["60-90"]["yaw"] == pytest.approx(5.0) and buckets["60-90"]["pitch"] == pytest.approx(2.0)
    assert buckets["0-30"]["yaw"] == pytest.approx(55.0) and buckets["30-60"]["faces"] == 0


def test_label_readers(tmp_path, shared_data):
    from scipy.io import savemat

    source = sorted((shared_data / "landmarks68" / "afw").glob("*.jpg"))[0]
    labels = read_pts(source.with_suffix(".pts"))
    assert labels.shape == (68, 2) and (labels >= 0).all()
    assert np.array_equal(IBUG68_MIRROR[IBUG68_MIRROR], np.arange(68))
    shutil.copy(source, tmp_path / "face.jpg")
    pts3d = np.vstack([labels.T, np.zeros(68)])
    savemat(tmp_path / "face.mat", {"pt3d_68": pts3d, "Pose_Para": np.array([[0.1, -0.5, 0.2, 0, 0, 0, 1]])})
    (sample,) = find_samples([tmp_path])
    assert np.allclose(sample.landmarks, labels)
    assert np.allclose(sample.pose, np.rad2deg([-0.5, 0.1, 0.2]))  # yaw, pitch, roll


def test_evaluate_command_writes_a_report(tmp_path, shared_data, models_present):
    folder = tmp_path / "faces"
    folder.mkdir()
    for image in sorted((shared_data / "landmarks68" / "afw").glob("*.jpg"))[:6]:
        shutil.copy(image, folder / image.name)
        shutil.copy(image.with_suffix(".pts"), folder / image.with_suffix(".pts").name)
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "service.evaluate", str(folder), "-o", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces"] == 6 and summary["nme_io_mean"] < 0.08
    for png in ("ced.png", "per_point.png"):
        assert cv2.imread(str(out / png)) is not None
    assert len((out / "per_image.csv").read_text().splitlines()) == 7


def test_cascade_beats_ridge_beats_fixed_map_on_held_out_faces(shared_data, models_present):
    """AFW people were not used to learn the landmark stages; all three methods see the same FaceMesh points."""
    from service.aligner import Alignment, Roi
    from service.detector import Detection
    from service.landmarks68 import Landmarks68Model
    from service.pipeline import FacePipeline

    pipeline = FacePipeline(detector="both", refine_steps=2, landmarks="map")
    models = {"map": None, "ridge": Landmarks68Model.load(use_cascade=False), "cascade": Landmarks68Model.load()}
    errors = {name: [] for name in models}
    for gray, labels, face in labelled_afw_faces(shared_data, pipeline, slice(0, 60, 2)):
        detection = Detection(face.box, np.zeros((6, 2), np.float32), face.score)
        alignment = Alignment(face.points468, face.presence, Roi(np.zeros(2), 1.0, 0.0))
        for name, model in models.items():
            pipeline.landmarks68_model = model
            refit = pipeline.fit(detection, alignment, gray)
            errors[name].append(landmark_errors(refit.landmarks68, labels)[1])
        pipeline.landmarks68_model = None
    mean = {k: float(np.mean(v)) for k, v in errors.items()}
    assert len(errors["map"]) >= 25
    assert mean["cascade"] < 0.95 * mean["ridge"] and mean["ridge"] < mean["map"], mean
    assert mean["cascade"] < 0.06, mean
