"""Rebuild the committed face assets from the real faces in ``../shared/data``.

Writes
------
asset/canonical_face.npz
    ``vertices`` (468, 3) the project's canonical frontal face in FaceMesh's
    point order (image frame: x right, y down, z away from the camera; unit =
    outer-eye-corner distance; origin = centroid), ``triangles`` (m, 3) a
    triangulation of it, ``mirror_index`` (468,) the left-right point pairing.
asset/landmarks68_map.npz
    ``indices`` (68, K) and ``weights`` (68, K): each iBUG-68 landmark as a
    convex combination of K FaceMesh points.
asset/face_assets_report.json, asset/canonical_face.png
    Numbers and a picture of what was built.

Method
------
1. FaceMesh (the product's own detector + aligner) runs on every 300-W face
   in ``landmarks68/`` (the detection that overlaps the labelled face).
2. Left-right pairing: the points of a first generalised-Procrustes mean are
   reflected and matched to their nearest neighbours after a rigid alignment
   of the reflected mean onto the mean (ICP).
3. Canonical face: generalised Procrustes analysis (similarity) over the
   near-frontal faces (|yaw|, |pitch| < 20 deg against the first-pass mean)
   and their mirror images, so the mean is exactly left-right symmetric.
   Orientation: the mirror plane is x = 0 and the pitch is the average pitch
   of those faces, i.e. "frontal" means the way people in 300-W photos face
   the camera (yaw and roll are zero by symmetry).
4. Triangles: Delaunay triangulation of the canonical face seen from the
   front, with the triangles inside the mouth opening removed (eyes covered).
5. iBUG-68 map: per landmark, non-negative least squares (weights summing to
   one) from the 468 points to the labelled point, over HELEN-train and
   LFPW-train faces in a per-face normalised frame, truncated to the K
   largest weights and refitted. AFW is held out and only reported.

Deterministic: no randomness; the FaceMesh outputs are cached in
``.cache/facemesh_300w.npz`` (delete it to recompute).

Usage: ``python tools/build_face_assets.py [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import nnls
from scipy.spatial import Delaunay, cKDTree
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.aligner import FaceAligner, roi_from_detection  # noqa: E402
from service.detector import FaceDetector, box_iou, merge_detections  # noqa: E402
from service.ibug import read_pts  # noqa: E402
from service.pose import umeyama, yaw_pitch_roll_deg  # noqa: E402

CACHE = ROOT / ".cache" / "facemesh_300w.npz"
TRAIN_SUBSETS = ("helen_train", "lfpw_train")
HELD_OUT_SUBSET = "afw"
K_WEIGHTS = 6
FRONTAL_LIMIT_DEG = 20.0
# FaceMesh contours of the holes of the face surface (outer-eye-corner first).
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
INNER_LIPS = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]


def run_facemesh(data: Path) -> dict:
    """FaceMesh points for every labelled 300-W face whose face the detector finds."""
    if CACHE.is_file():
        return dict(np.load(CACHE))
    short, full, aligner = FaceDetector("short"), FaceDetector("full"), FaceAligner()
    rows = list(csv.DictReader(open(data / "landmarks68" / "index.csv")))
    points, labels, subsets, names = [], [], [], []
    missed = 0
    for row in tqdm(rows, desc="FaceMesh on 300-W"):
        image = cv2.imread(str(data / "landmarks68" / row["image"]), cv2.IMREAD_COLOR)
        gt = read_pts(data / "landmarks68" / row["pts"])
        gt_box = np.array([*gt.min(0), *gt.max(0)])
        dets = merge_detections(short.process(image), full.process(image))
        ious = [box_iou(gt_box, d.box[None])[0] for d in dets]
        if not dets or max(ious) < 0.2:
            missed += 1
            continue
        alignment = aligner.process(image, roi_from_detection(dets[int(np.argmax(ious))]))
        if alignment.presence < 0.5:
            missed += 1
            continue
        points.append(alignment.points)
        labels.append(gt)
        subsets.append(row["subset"])
        names.append(row["image"])
    result = dict(points=np.array(points, np.float32), labels=np.array(labels, np.float32),
                  subsets=np.array(subsets), names=np.array(names), missed=np.array(missed))
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **result)
    return result


def normalise(shape: np.ndarray) -> np.ndarray:
    """Centre at the centroid and scale to unit outer-eye-corner distance."""
    shape = shape - shape.mean(0)
    return shape / np.linalg.norm(shape[LEFT_EYE[0]] - shape[RIGHT_EYE[0]])


def procrustes_mean(shapes: np.ndarray, reference: np.ndarray, iterations: int = 10):
    """Generalised Procrustes analysis; returns the mean and each shape's rotation (mean -> shape)."""
    mean = normalise(reference)
    for _ in range(iterations):
        aligned, rotations = [], []
        for shape in shapes:
            rotation, scale, translation = umeyama(shape, mean)
            aligned.append(scale * shape @ rotation.T + translation)
            rotations.append(rotation.T)
        new_mean = normalise(np.mean(aligned, 0))
        rotation, _, _ = umeyama(new_mean, mean)  # keep the mean's orientation fixed
        mean = new_mean @ rotation.T
    return mean, np.array(rotations)


def mirror_pairs(mean: np.ndarray) -> np.ndarray:
    """Left-right pairing of points: ICP of the reflected mean onto the mean."""
    reflected = mean * np.array([-1.0, 1.0, 1.0])
    tree = cKDTree(mean)
    moved = reflected
    for _ in range(30):
        _, index = tree.query(moved)
        rotation, scale, translation = umeyama(reflected, mean[index])
        moved = scale * reflected @ rotation.T + translation
    _, index = tree.query(moved)
    return index


def symmetric_pairing(index: np.ndarray) -> np.ndarray:
    """Make the pairing an involution: keep i <-> j only when both agree."""
    fixed = index.copy()
    for i, j in enumerate(index):
        if index[j] != i:
            fixed[i] = i  # ambiguous: treat as its own mirror (midline)
    return fixed


def mirror_shape(shape: np.ndarray, mirror_index: np.ndarray) -> np.ndarray:
    return (shape * np.array([-1.0, 1.0, 1.0]))[mirror_index]


def mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotation matrices."""
    u, _, vt = np.linalg.svd(rotations.sum(0))
    r = u @ vt
    if np.linalg.det(r) < 0:
        r = u @ np.diag([1, 1, -1]) @ vt
    return r


def align_mirror_plane(shape: np.ndarray, mirror_index: np.ndarray) -> np.ndarray:
    """Rotate ``shape`` so its mirror plane is x = 0 (smallest rotation), centred."""
    diffs = shape - shape[mirror_index]
    diffs = diffs[np.linalg.norm(diffs, axis=1) > 1e-6]
    normal = np.linalg.svd(diffs, full_matrices=False)[2][0]
    if normal[0] < 0:
        normal = -normal
    axis = np.cross(normal, [1.0, 0.0, 0.0])
    sin, cos = np.linalg.norm(axis), normal[0]
    if sin < 1e-12:
        return shape - shape.mean(0)
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rotation = np.eye(3) + sin * kx + (1 - cos) * kx @ kx
    shape = shape @ rotation.T
    return shape - shape.mean(0)


def build_canonical(points: np.ndarray):
    shapes = np.array([normalise(p) for p in points.astype(np.float64)])
    # First pass: mean of all faces from the raw image-frame average (roughly frontal).
    mean0, _ = procrustes_mean(shapes, shapes.mean(0), iterations=5)
    mirror_index = symmetric_pairing(mirror_pairs(mean0))
    augmented = np.concatenate([shapes, [mirror_shape(s, mirror_index) for s in shapes]])
    mean1, rotations1 = procrustes_mean(augmented, mean0)
    mean1 = mean1 @ mean_rotation(rotations1).T  # average orientation of the photos
    mean1 = align_mirror_plane(0.5 * (mean1 + mirror_shape(mean1, mirror_index)), mirror_index)
    # Second pass: near-frontal faces only.
    angles = np.array([yaw_pitch_roll_deg(umeyama(mean1, s)[0]) for s in shapes])
    frontal = (np.abs(angles[:, 0]) < FRONTAL_LIMIT_DEG) & (np.abs(angles[:, 1]) < FRONTAL_LIMIT_DEG)
    chosen = shapes[frontal]
    augmented = np.concatenate([chosen, [mirror_shape(s, mirror_index) for s in chosen]])
    mean2, rotations2 = procrustes_mean(augmented, mean1)
    mean2 = mean2 @ mean_rotation(rotations2).T
    mean2 = 0.5 * (mean2 + mirror_shape(mean2, mirror_index))
    canonical = normalise(align_mirror_plane(mean2, mirror_index))
    return canonical, mirror_index, int(frontal.sum())


def triangulate(canonical: np.ndarray) -> np.ndarray:
    """Delaunay triangles of the frontal view, minus the mouth opening.

    The eyes stay covered (a closed surface over the eyeball, as in the Basel
    Face Model); the mouth stays open so an open mouth renders as one.
    """
    xy = canonical[:, :2]
    triangles = Delaunay(xy).simplices
    centroids = xy[triangles].mean(1)
    keep = np.ones(len(triangles), bool)
    for contour in (INNER_LIPS,):
        polygon = xy[contour].astype(np.float32)
        inside = np.array([cv2.pointPolygonTest(polygon, tuple(map(float, c)), False) > 0 for c in centroids])
        keep &= ~inside
    triangles = triangles[keep]
    # Orient every triangle counter-clockwise on screen (y down => negative cross product).
    a, b, c = (xy[triangles[:, i]] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = cross > 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    return triangles.astype(np.int32)


def face_frame(points: np.ndarray):
    """Per-face 2D normalisation: centre at the mesh centroid, scale by its eye-corner distance."""
    xy = points[:, :, :2].astype(np.float64)
    center = xy.mean(1, keepdims=True)
    scale = np.linalg.norm(xy[:, LEFT_EYE[0]] - xy[:, RIGHT_EYE[0]], axis=1)[:, None, None]
    return center, scale


def fit_landmarks68(points: np.ndarray, labels: np.ndarray):
    """Sparse convex weights (68, K) from the 468 points to each iBUG landmark."""
    center, scale = face_frame(points)
    xy = (points[:, :, :2] - center) / scale          # (N, 468, 2)
    gt = (labels - center) / scale                      # (N, 68, 2)
    design = np.concatenate([xy[:, :, 0], xy[:, :, 1]])  # (2N, 468)
    penalty = 100.0 * np.sqrt(len(design))              # enforces sum(w) = 1
    indices = np.zeros((68, K_WEIGHTS), np.int32)
    weights = np.zeros((68, K_WEIGHTS), np.float32)
    for j in tqdm(range(68), desc="iBUG-68 map"):
        target = np.concatenate([gt[:, j, 0], gt[:, j, 1]])
        a = np.vstack([design, np.full(468, penalty)])
        b = np.append(target, penalty)
        w, _ = nnls(a, b, maxiter=5000)
        top = np.argsort(-w)[:K_WEIGHTS]
        w_top, _ = nnls(a[:, top], b)
        indices[j], weights[j] = top, w_top / w_top.sum()
    return indices, weights


def nme_io(points: np.ndarray, labels: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> float:
    """Mean point error over inter-ocular distance (iBUG 36-45) of the map."""
    pred = np.einsum("njkc,jk->njc", points[:, indices, :2], weights)
    io = np.linalg.norm(labels[:, 36] - labels[:, 45], axis=1)
    return float((np.linalg.norm(pred - labels, axis=2).mean(1) / io).mean())


def save_picture(canonical: np.ndarray, triangles: np.ndarray, path: Path) -> None:
    """Front and side wireframes of the canonical face."""
    size = 480
    canvas = np.full((size, 2 * size, 3), 255, np.uint8)
    for panel, axes in enumerate(((0, 1), (2, 1))):
        xy = canonical[:, axes]
        xy = (xy - xy.mean(0)) / 2.4 * size + size / 2 + np.array([panel * size, 0])
        lines = np.ascontiguousarray(xy[triangles][:, [0, 1, 2, 0]].round().astype(np.int32))
        cv2.polylines(canvas, list(lines), False, (120, 90, 60), 1, cv2.LINE_AA)
    cv2.putText(canvas, "front", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1)
    cv2.putText(canvas, "side (z right = farther)", (size + 10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1)
    cv2.imwrite(str(path), canvas)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild asset/canonical_face.npz and asset/landmarks68_map.npz")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    if not (args.data / "landmarks68" / "index.csv").is_file():
        raise SystemExit(f"error: {args.data}/landmarks68/index.csv not found; pass --data PATH")
    faces = run_facemesh(args.data)
    points, labels, subsets = faces["points"], faces["labels"], faces["subsets"]
    canonical, mirror_index, n_frontal = build_canonical(points)
    triangles = triangulate(canonical)
    train = np.isin(subsets, TRAIN_SUBSETS)
    held_out = subsets == HELD_OUT_SUBSET
    indices, weights = fit_landmarks68(points[train], labels[train])
    out = ROOT / "asset"
    out.mkdir(exist_ok=True)
    np.savez(out / "canonical_face.npz", vertices=canonical.astype(np.float32), triangles=triangles,
             mirror_index=mirror_index.astype(np.int32))
    np.savez(out / "landmarks68_map.npz", indices=indices, weights=weights)
    report = {
        "faces_used": int(len(points)), "faces_missed": int(faces["missed"]),
        "frontal_faces_for_canonical": n_frontal,
        "mirror_pairs": int((mirror_index != np.arange(468)).sum() // 2),
        "midline_points": int((mirror_index == np.arange(468)).sum()),
        "triangles": int(len(triangles)),
        "landmarks68_train_faces": int(train.sum()),
        "landmarks68_nme_io_train": nme_io(points[train], labels[train], indices, weights),
        "landmarks68_nme_io_afw_held_out": nme_io(points[held_out], labels[held_out], indices, weights),
    }
    (out / "face_assets_report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_picture(canonical, triangles, out / "canonical_face.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
