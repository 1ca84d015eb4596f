"""Accuracy of the 68 landmarks and of the head pose on labelled photos.

Usage::

    python -m service.evaluate FOLDER [FOLDER ...] -o OUT_DIR [--limit N] [--detector both]

Every image in the folders (searched recursively) that has a label file beside
it is evaluated:

- ``NAME.pts``: 300-W / ibug 68 points, 1-based pixels;
- ``NAME.mat``: AFLW2000-3D style, ``pt3d_68`` (3 x 68; x, y used as 0-based
  pixels, as 3DDFA's evaluation uses them) and ``Pose_Para`` (pitch, yaw, roll
  in radians first), compared with the product's angles in the same convention.

Outputs in ``OUT_DIR``: ``summary.json`` (NME normalised by the inter-ocular
distance — outer eye corners, iBUG 36 and 45 — and by the label box size
sqrt(w h); failure rate at NME_io > 8 %; AUC of the CED up to 8 %; missed faces,
which count as failures; pose MAE per axis and per |yaw| bucket 0-30, 30-60,
60-90), ``per_image.csv``, ``ced.png`` (cumulative error distribution) and
``per_point.png`` (mean error per landmark).

The metric code takes any ``predict(image) -> list of (68, 2) landmarks (and
optional yaw, pitch, roll)``, so other tools can be measured by the same code
(``tools/compare_dlib.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ibug import IBUG68_LEFT_EYE_OUTER, IBUG68_RIGHT_EYE_OUTER, read_pts

FAILURE_THRESHOLD = 0.08
YAW_BUCKETS = ((0, 30), (30, 60), (60, 90))


@dataclass
class Sample:
    """One labelled face: image path, 68 (x, y) labels, optional (yaw, pitch, roll) degrees."""

    image: Path
    landmarks: np.ndarray
    pose: np.ndarray | None = None


@dataclass
class Prediction:
    landmarks: np.ndarray
    yaw_pitch_roll_deg: np.ndarray | None = None


def read_aflw2000_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks (68, 2), yaw_pitch_roll_deg (3,))`` from an AFLW2000-3D ``.mat`` file."""
    from scipy.io import loadmat

    mat = loadmat(str(path))
    pts = np.asarray(mat["pt3d_68"], np.float64)
    landmarks = pts[:2].T if pts.shape[0] in (2, 3) else pts[:, :2]
    pitch, yaw, roll = np.asarray(mat["Pose_Para"], np.float64).ravel()[:3]
    return landmarks, np.rad2deg([yaw, pitch, roll])


def find_samples(folders) -> list[Sample]:
    """Every image with a ``.pts`` or ``.mat`` label beside it, sorted by path."""
    from .image_io import IMAGE_SUFFIXES

    samples = []
    for folder in map(Path, folders):
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: no such folder")
        images = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*")
                                                          if p.suffix.lower() in IMAGE_SUFFIXES)
        for image in images:
            pts, mat = image.with_suffix(".pts"), image.with_suffix(".mat")
            if pts.is_file():
                samples.append(Sample(image, read_pts(pts)))
            elif mat.is_file():
                landmarks, pose = read_aflw2000_mat(mat)
                samples.append(Sample(image, landmarks, pose))
    return samples


def box_of(points: np.ndarray) -> np.ndarray:
    return np.array([*points.min(0), *points.max(0)])


def match(predictions: list[Prediction], labels: np.ndarray) -> Prediction | None:
    """The prediction whose landmark box overlaps the labelled face best (IoU > 0.3)."""
    from .detector import box_iou

    best, best_iou = None, 0.3
    for prediction in predictions:
        iou = box_iou(box_of(labels), box_of(prediction.landmarks)[None])[0]
        if iou > best_iou:
            best, best_iou = prediction, iou
    return best


def angle_difference(a, b) -> np.ndarray:
    """``a - b`` wrapped to [-180, 180) degrees."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


def landmark_errors(prediction: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Per-point error (pixels), NME_io and NME_box of one face."""
    per_point = np.linalg.norm(prediction[:, :2] - labels, axis=1)
    inter_ocular = np.linalg.norm(labels[IBUG68_RIGHT_EYE_OUTER] - labels[IBUG68_LEFT_EYE_OUTER])
    w, h = labels.max(0) - labels.min(0)
    return per_point, float(per_point.mean() / inter_ocular), float(per_point.mean() / np.sqrt(w * h))


def ced(errors: np.ndarray, limit: float = FAILURE_THRESHOLD, steps: int = 801):
    """Cumulative error distribution on [0, limit] and its normalised area (AUC)."""
    x = np.linspace(0.0, limit, steps)
    y = (np.asarray(errors)[None, :] <= x[:, None]).mean(1) if len(errors) else np.zeros_like(x)
    return x, y, float(np.trapezoid(y, x) / limit)


def summarise(records: list[dict]) -> dict:
    """Metrics over per-face records (``nme_io`` is inf for a missed face)."""
    nme_io = np.array([r["nme_io"] for r in records], float)
    nme_box = np.array([r["nme_box"] for r in records], float)
    found = np.isfinite(nme_io)
    _, _, auc = ced(nme_io)
    summary = {
        "faces": len(records), "missed": int((~found).sum()),
        "nme_io_mean": float(nme_io[found].mean()) if found.any() else None,
        "nme_io_median": float(np.median(nme_io[found])) if found.any() else None,
        "nme_box_mean": float(nme_box[found].mean()) if found.any() else None,
        "failure_rate_at_0.08": float((~(nme_io <= FAILURE_THRESHOLD)).mean()) if len(records) else None,
        "auc_at_0.08": auc,
    }
    posed = [r for r in records if r.get("yaw_true") is not None and np.isfinite(r["nme_io"])]
    if posed:
        errors = np.abs(np.array([[r["yaw_error"], r["pitch_error"], r["roll_error"]] for r in posed]))
        true_yaw = np.abs(np.array([r["yaw_true"] for r in posed]))
        summary["pose_mae_deg"] = dict(zip(("yaw", "pitch", "roll"), map(float, errors.mean(0))))
        summary["pose_mae_deg_by_abs_yaw"] = {}
        for lo, hi in YAW_BUCKETS:
            inside = (true_yaw >= lo) & ((true_yaw < hi) if hi < 90 else (true_yaw <= hi))
            summary["pose_mae_deg_by_abs_yaw"][f"{lo}-{hi}"] = (
                dict(zip(("yaw", "pitch", "roll", "faces"), [*map(float, errors[inside].mean(0)), int(inside.sum())]))
                if inside.any() else {"faces": 0})
    return summary


def evaluate(samples: list[Sample], predict, progress: bool = True) -> tuple[dict, list[dict], np.ndarray]:
    """Run ``predict`` on every sample; return the summary, per-face records and per-point errors."""
    from tqdm import tqdm

    from .image_io import InputError, load_image

    records, per_point = [], []
    for sample in tqdm(samples, desc="evaluate", unit="face", disable=not progress):
        record = {"image": str(sample.image), "nme_io": float("inf"), "nme_box": float("inf")}
        try:
            prediction = match(predict(load_image(sample.image)), sample.landmarks)
        except InputError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            prediction = None
        if prediction is not None:
            points, record["nme_io"], record["nme_box"] = landmark_errors(prediction.landmarks, sample.landmarks)
            io = np.linalg.norm(sample.landmarks[IBUG68_RIGHT_EYE_OUTER] - sample.landmarks[IBUG68_LEFT_EYE_OUTER])
            per_point.append(points / io)
        if sample.pose is not None:
            record["yaw_true"], record["pitch_true"], record["roll_true"] = map(float, sample.pose)
            if prediction is not None and prediction.yaw_pitch_roll_deg is not None:
                diff = angle_difference(prediction.yaw_pitch_roll_deg, sample.pose)
                record["yaw_error"], record["pitch_error"], record["roll_error"] = map(float, diff)
        records.append(record)
    return summarise(records), records, (np.array(per_point) if per_point else np.zeros((0, 68)))


def write_report(out: Path, summary: dict, records: list[dict], per_point: np.ndarray, name: str,
                 extra_curves: dict | None = None) -> None:
    """summary.json, per_image.csv, ced.png, per_point.png."""
    from .plots import bar_plot, line_plot

    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"name": name, **summary}, indent=2) + "\n")
    keys = sorted({k for r in records for k in r}, key=lambda k: (k != "image", k))
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(records)
    x, y, auc = ced(np.array([r["nme_io"] for r in records]))
    curves = {f"{name} (AUC {auc:.3f})": (x * 100, y * 100)}
    curves.update(extra_curves or {})
    line_plot(out / "ced.png", curves, "Cumulative error distribution (68 points)", "NME, % of inter-ocular distance",
              "% of faces", (0, 8), (0, 100), range(0, 9), range(0, 101, 20))
    if len(per_point):
        bar_plot(out / "per_point.png", per_point.mean(0) * 100, "Mean error per iBUG-68 point",
                 "landmark index (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth)", "% inter-ocular")


def pipeline_predictor(pipeline):
    """``predict(image)`` for the product's own pipeline."""
    def predict(image):
        return [Prediction(f.landmarks68[:, :2], f.pose.yaw_pitch_roll_deg) for f in pipeline.process(image)]
    return predict


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="68-landmark and head-pose accuracy on labelled photos.")
    parser.add_argument("folders", nargs="+", type=Path, help="folders of images with .pts or .mat labels")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/evaluate"), help="report folder")
    parser.add_argument("--limit", type=int, help="evaluate only the first N labelled faces")
    parser.add_argument("--detector", choices=("short", "full", "both"), default="both")
    parser.add_argument("--refine", type=int, default=2, help="FaceMesh re-crop steps (as demo_image.py)")
    parser.add_argument("--tiles", type=int, default=2, help="detection tiles per side (as demo_image.py)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="densehead", help="label of this run in the report")
    args = parser.parse_args(argv)

    from .assets import MissingAssetError
    from .api import TiledFacePipeline

    try:
        samples = find_samples(args.folders)[:args.limit]
        if not samples:
            raise FileNotFoundError("no image with a .pts or .mat label found in " + " ".join(map(str, args.folders)))
        pipeline = TiledFacePipeline(detector=args.detector, num_threads=args.threads, refine_steps=args.refine,
                                     tiles=args.tiles)
    except (FileNotFoundError, MissingAssetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary, records, per_point = evaluate(samples, pipeline_predictor(pipeline))
    write_report(args.output, summary, records, per_point, args.name)
    print(json.dumps(summary, indent=2))
    print(f"report: {args.output}/summary.json, per_image.csv, ced.png, per_point.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
