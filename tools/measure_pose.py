"""Pose error on the face-profiling set, per yaw bucket, before and after the large-pose correction.

Runs the photo pipeline (``FacePipeline(detector="both", refine_steps=2)``) on
every image of the set made by ``tools/build_profiling_set.py`` and compares
the face's angles with the set's exact ground truth (see that script's
docstring). The face is the detected one whose points' box overlaps the
ground-truth face box best (IoU > 0.3); where the detector or FaceMesh's
presence test drops the turned face, FaceMesh is run on a crop placed from the
ground-truth box instead (counted as "not found" and still scored, since the
pose stage is what is measured here).

Angles: AFLW2000-3D yaw, pitch, roll (``service.pose``); the error of each
angle is its absolute difference, wrapped to [-180, 180) (the usual
AFLW2000-3D mean absolute error). "raw" is the pose of the fitted camera
(``pose_from_params(face.params62)``), "corrected" is ``face.pose`` (after
``service.pose_calibration``). Buckets of |ground-truth yaw|: 0-30, 30-60,
60-85 deg.

The network outputs are cached in ``<set>/pipeline_outputs.npz`` (keyed by the
image list; ``--recompute`` to redo), so re-scoring after a change to the
correction takes seconds.

Writes ``<set>/pose_report.json`` and ``<set>/pose_yaw.png`` (measured vs true
yaw, raw and corrected, held-out split).

Usage: ``python tools/measure_pose.py [--set .cache/profiling] [--split test|train|all] [--recompute]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.aligner import Roi  # noqa: E402
from service.face_model import pose_from_params  # noqa: E402
from service.pose import yaw_pitch_roll_deg  # noqa: E402

SET = ROOT / ".cache" / "profiling"
BUCKETS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))  # the last: 60 up to 85 (the largest turn)
ANGLES = ("yaw", "pitch", "roll")


def read_index(set_dir: Path) -> list[dict]:
    with open(set_dir / "index.csv") as f:
        return list(csv.DictReader(f))


def _box_iou(a, b) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / max(union, 1e-9))


def run_face(pipeline, image: np.ndarray, gt_box: np.ndarray, gt_roll_deg: float):
    """``(points468, params62, found)`` for the face at ``gt_box`` (see the module docstring)."""
    best, best_iou = None, 0.3
    for face in pipeline.process(image):
        pts = face.points468[:, :2]
        iou = _box_iou(gt_box, np.array([*pts.min(0), *pts.max(0)]))
        if iou > best_iou:
            best, best_iou = face, iou
    if best is not None:
        return best.points468, best.params62, True
    center = (gt_box[:2] + gt_box[2:]) / 2
    roi = Roi(center=center, size=float((gt_box[2:] - gt_box[:2]).max() * 1.5), angle=float(np.deg2rad(gt_roll_deg)))
    from service.aligner import roi_from_points

    alignment = pipeline.aligner.process(image, roi)
    for _ in range(pipeline.refine_steps):
        if not np.isfinite(alignment.points).all():
            break
        alignment = pipeline.aligner.process(image, roi_from_points(alignment.points))
    if not np.isfinite(alignment.points).all():
        return None, None, False
    params62 = pipeline.model.fit(alignment.points, iterations=2)
    return alignment.points, params62, False


def pipeline_outputs(set_dir: Path, rows: list[dict], recompute: bool = False) -> dict:
    """Cached FaceMesh points and raw model fit for every image of the set."""
    cache = set_dir / "pipeline_outputs.npz"
    files = np.array([r["file"] for r in rows])
    if cache.is_file() and not recompute:
        data = dict(np.load(cache))
        if len(data["files"]) == len(files) and (data["files"] == files).all():
            return data
    from service.image_io import load_image
    from service.pipeline import FacePipeline

    pipeline = FacePipeline(detector="both", refine_steps=2)
    points = np.full((len(rows), 468, 3), np.nan, np.float32)
    params = np.full((len(rows), 62), np.nan)
    found = np.zeros(len(rows), bool)
    for i, row in enumerate(tqdm(rows, desc="pipeline on the profiling set")):
        image = load_image(set_dir / "images" / row["file"])
        gt_box = np.array([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
        p, q, ok = run_face(pipeline, image, gt_box, float(row["roll"]))
        if p is not None:
            points[i], params[i], found[i] = p, q, ok
    data = dict(files=files, points=points, params=params, found=found)
    np.savez_compressed(cache, **data)
    return data


def angle_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Absolute angle differences in degrees, wrapped to [0, 180]."""
    return np.abs((np.asarray(estimate) - np.asarray(truth) + 180.0) % 360.0 - 180.0)


def bucket_table(truth: np.ndarray, estimates: dict, found: np.ndarray) -> list[dict]:
    """Per-bucket MAE of yaw, pitch, roll for each estimate (and the 'all' row)."""
    table = []
    ayaw = np.abs(truth[:, 0])
    for k, (lo, hi) in enumerate((*BUCKETS, (0.0, 90.0))):
        sel = (ayaw >= lo) & (ayaw < hi)
        entry = {"bucket": f"{lo:g}-{min(hi, 85):.0f}" if k < len(BUCKETS) else "all", "count": int(sel.sum()),
                 "found_rate": round(float(found[sel].mean()), 4) if sel.any() else None}
        for name, est in estimates.items():
            ok = sel & np.isfinite(est).all(1)
            err = angle_error(est[ok], truth[ok])
            entry[name] = {a: round(float(err[:, k].mean()), 3) for k, a in enumerate(ANGLES)}
            entry[name]["median_yaw"] = round(float(np.median(err[:, 0])), 3) if ok.any() else None
        table.append(entry)
    return table


def scatter_png(path: Path, truth_yaw: np.ndarray, series: dict, title: str) -> None:
    """Measured vs true yaw (one colour per series) with the identity line."""
    size, margin = 560, 60
    img = np.full((size + 2 * margin, size + 2 * margin, 3), 255, np.uint8)

    def px(v):
        return margin + (np.asarray(v) + 90.0) / 180.0 * size

    for t in range(-90, 91, 30):
        p = int(px(t))
        cv2.line(img, (p, margin), (p, margin + size), (225, 225, 225), 1)
        cv2.line(img, (margin, int(2 * margin + size - px(t))), (margin + size, int(2 * margin + size - px(t))),
                 (225, 225, 225), 1)
        cv2.putText(img, f"{t}", (p - 12, margin + size + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (40, 40, 40), 1)
        cv2.putText(img, f"{t}", (8, int(2 * margin + size - px(t)) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (40, 40, 40), 1)
    cv2.line(img, (margin, margin + size), (margin + size, margin), (120, 120, 120), 1)
    colours = [(60, 60, 220), (200, 120, 30), (40, 160, 40)]
    for k, (name, yaw) in enumerate(series.items()):
        ok = np.isfinite(yaw)
        for x, y in zip(px(truth_yaw[ok]), 2 * margin + size - px(yaw[ok])):
            cv2.circle(img, (int(x), int(y)), 1, colours[k % 3], -1)
        cv2.putText(img, name, (margin + 10, margin + 20 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colours[k % 3], 1)
    cv2.putText(img, title, (margin, margin - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "true yaw (deg)", (margin + size // 2 - 50, 2 * margin + size - 15), cv2.FONT_HERSHEY_SIMPLEX,
                0.45, (0, 0, 0), 1)
    cv2.putText(img, "measured", (4, margin - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def evaluate(set_dir: Path, split: str = "test", recompute: bool = False) -> dict:
    from service.pose_calibration import corrected_pose

    rows = read_index(set_dir)
    data = pipeline_outputs(set_dir, rows, recompute)
    sel = np.array([split == "all" or r["split"] == split for r in rows])
    truth = np.array([[float(r[a]) for a in ANGLES] for r in rows])[sel]
    params, points, found = data["params"][sel], data["points"][sel], data["found"][sel]
    raw = np.full((len(params), 3), np.nan)
    corrected = np.full((len(params), 3), np.nan)
    for i, (p, q) in enumerate(zip(params, points)):
        if np.isfinite(p).all():
            pose = pose_from_params(p)
            raw[i] = pose.yaw_pitch_roll_deg
            corrected[i] = yaw_pitch_roll_deg(corrected_pose(pose, q).rotation)
    report = {"set": str(set_dir), "split": split, "images": int(sel.sum()),
              "sources": len({r["source"] for r, s in zip(rows, sel) if s}),
              "buckets": bucket_table(truth, {"raw": raw, "corrected": corrected}, found)}
    scatter_png(set_dir / "pose_yaw.png", truth[:, 0], {"raw": raw[:, 0], "corrected": corrected[:, 0]},
                f"measured vs true yaw, {split} split ({report['sources']} source faces)")
    return report


def label_pose(labels68: np.ndarray, shape3d: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Yaw, pitch, roll (degrees) of 300-W 2D labels: scaled-orthographic fit of the labels' own 3D shape.

    ``shape3d`` is :func:`tools.build_profiling_set.annotation_shape`'s shape of
    the rigid labelled points (canonical frame); the fit starts from the best
    affine camera, projected to a rotation, then Gauss-Newton on the rotation.
    """
    from tools.build_profiling_set import RIGID68

    target = labels68[RIGID68] - labels68[RIGID68].mean(0)
    shape = shape3d - shape3d.mean(0)
    affine = np.linalg.lstsq(shape, target, rcond=None)[0].T
    u, sing, vt = np.linalg.svd(affine)
    top = u @ np.eye(2, 3) @ vt
    rotation = np.vstack([top, np.cross(top[0], top[1])])
    for _ in range(iterations):
        turned = shape @ rotation.T
        scale = (turned[:, :2] * target).sum() / (turned[:, :2] ** 2).sum()
        r = (target - scale * turned[:, :2]).ravel()
        x, y, z = turned.T
        zero = np.zeros_like(x)
        jac = scale * np.stack([np.stack([zero, z, -y], 1), np.stack([-z, zero, x], 1)], 1).reshape(-1, 3)
        omega = np.linalg.lstsq(jac, r, rcond=None)[0]
        angle = np.linalg.norm(omega)
        if angle < 1e-12:
            break
        k = omega / angle
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rotation = (np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx) @ rotation
    return yaw_pitch_roll_deg(rotation)


def real_photo_faces(data: Path, subsets, desc: str = "real photos"):
    """``(label yaw/pitch/roll, face, raw pose)`` for each labelled 300-W face of ``subsets`` the pipeline finds.

    The photo pipeline (both detectors, two refinements) runs on each image; the
    face is the one matching the labels (:func:`match_source`); the label pose
    comes from :func:`label_pose`.
    """
    from service.ibug import read_pts
    from service.image_io import load_image
    from service.pipeline import FacePipeline
    from tools.build_profiling_set import annotation_shape, match_source

    shape3d, _ = annotation_shape(data)
    pipeline = FacePipeline(detector="both", refine_steps=2)
    rows = [r for r in csv.DictReader(open(data / "landmarks68" / "index.csv")) if r["subset"] in subsets]
    for row in tqdm(rows, desc=desc):
        labels = read_pts(data / "landmarks68" / row["pts"])
        face = match_source(pipeline.process(load_image(data / "landmarks68" / row["image"])), labels)
        if face is not None:
            yield label_pose(labels, shape3d), face, pose_from_params(face.params62)


def real_photo_check(data: Path, subset: str = "afw") -> dict:
    """Raw and corrected yaw against the yaw of the human 2D labels on real 300-W photos (no 3D truth).

    The label yaw comes from :func:`label_pose` with the 3D shape factorised from
    all 300-W labels; it carries the labels' and the shape's own errors (a few
    degrees per face) but no bias from FaceMesh or from rendering, so it checks
    that the correction learned on rendered faces holds on photos.
    """
    from service.pose_calibration import corrected_pose

    label, raw, corrected = [], [], []
    for label_angles, face, pose in real_photo_faces(data, (subset,), f"real {subset} photos"):
        label.append(label_angles)
        raw.append(pose.yaw_pitch_roll_deg)
        corrected.append(corrected_pose(pose, face.points468).yaw_pitch_roll_deg)
    label, raw, corrected = np.array(label), np.array(raw), np.array(corrected)
    out = {"subset": subset, "faces": len(label), "buckets": []}
    for lo, hi in ((0, 30), (30, 50), (50, 90)):
        sel = (np.abs(label[:, 0]) >= lo) & (np.abs(label[:, 0]) < hi)
        if sel.any():
            out["buckets"].append({
                "label_yaw": f"{lo}-{hi}", "count": int(sel.sum()),
                "raw_yaw_mae": round(float(angle_error(raw[sel, 0], label[sel, 0]).mean()), 2),
                "corrected_yaw_mae": round(float(angle_error(corrected[sel, 0], label[sel, 0]).mean()), 2),
                "raw_yaw_bias": round(float(np.mean((raw[sel, 0] - label[sel, 0]) * np.sign(label[sel, 0]))), 2),
                "corrected_yaw_bias": round(float(np.mean((corrected[sel, 0] - label[sel, 0])
                                                          * np.sign(label[sel, 0]))), 2)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=SET)
    parser.add_argument("--split", choices=("test", "train", "all"), default="test")
    parser.add_argument("--recompute", action="store_true")
    parser.add_argument("--real", type=Path, metavar="DATA",
                        help="also compare with the label yaw of the real AFW photos in DATA (../shared/data)")
    args = parser.parse_args(argv)
    if not (args.set / "index.csv").is_file():
        print(f"error: {args.set / 'index.csv'} not found; run tools/build_profiling_set.py first", file=sys.stderr)
        return 2
    report = evaluate(args.set, args.split, args.recompute)
    if args.real:
        report["real_photos"] = real_photo_check(args.real)
    (args.set / "pose_report.json").write_text(json.dumps(report, indent=1))
    print(f"{report['images']} images, {report['sources']} source faces ({args.split} split)")
    print(f"{'|yaw| bucket':>12} {'n':>6} {'found':>6}   raw MAE yaw/pitch/roll    corrected MAE yaw/pitch/roll")
    for b in report["buckets"]:
        r, c = b["raw"], b["corrected"]
        print(f"{b['bucket']:>12} {b['count']:>6} {b['found_rate']:>6.3f}   "
              f"{r['yaw']:6.2f} {r['pitch']:6.2f} {r['roll']:6.2f}          "
              f"{c['yaw']:6.2f} {c['pitch']:6.2f} {c['roll']:6.2f}")
    if args.real:
        real = report["real_photos"]
        print(f"real {real['subset']} photos ({real['faces']} faces), yaw against the labels' yaw: "
              "MAE raw -> corrected (signed bias, + = turned further than the labels)")
        for b in real["buckets"]:
            print(f"  |label yaw| {b['label_yaw']:>6} n={b['count']:4d}  {b['raw_yaw_mae']:5.2f} -> "
                  f"{b['corrected_yaw_mae']:5.2f}  (bias {b['raw_yaw_bias']:+.2f} -> {b['corrected_yaw_bias']:+.2f})")
    print(f"-> {args.set / 'pose_report.json'}, {args.set / 'pose_yaw.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
