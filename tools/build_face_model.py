"""Rebuild the 3D morphable face model ``asset/face_model.npz`` from real faces.

Method
------
1. FaceMesh (the product's own detector + aligner) gives 468 3D points per
   face: on the 300-W photos (``landmarks68/``, many people, one photo each)
   and on every frame of the single-person videos (``videos/liveportrait_*``,
   ``videos/WDA_*``: one person each, changing expression). Video frames are
   tracked (the crop comes from the previous frame's points).
2. Every face is brought into the canonical frame (``asset/canonical_face.npz``)
   by a similarity fit (Procrustes), which removes pose and scale.
3. **Expression** basis: PCA of how each person's face moves around that
   person's own mean across the frames of their video (same identity,
   changing expression), pooled over videos, with every frame also mirrored
   (through the canonical face's left-right point pairs) so the model is
   symmetric. 10 components.
4. **Shape** (identity) basis: PCA of how the 300-W training faces (HELEN and
   LFPW train, and their mirror images) differ from their mean, after
   projecting the expression directions out. 40 components.
5. Mean: the 300-W training mean, symmetrised, aligned to the canonical
   frame, and moved along the jaw component until the inner lips touch (so
   zero expression is a closed mouth, not the average photo's parted lips). Both bases are scaled by their standard deviations, so coefficients
   are in standard deviations; the fit's ridge weight is the mean residual
   variance per coordinate left after the 40 shape components.
6. Expression components are named by what they do most: the lip gap (jaw
   open), the mouth width (smile / pucker), the eyelid gaps (eyes), the brow
   height, or their left-right asymmetric versions; the sign is chosen so a
   positive coefficient opens, widens or raises.

Held out (never used to build): the AFW photos (other people) and the video
``liveportrait_d9.mp4``; the report gives the reconstruction error on them.

Writes ``asset/face_model.npz``, ``asset/face_model_report.json`` and
``asset/face_model.png`` (mean face and ±3σ of the first components).
Deterministic; FaceMesh outputs are cached in ``.cache/``.

Usage: ``python tools/build_face_model.py [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.aligner import roi_from_points  # noqa: E402
from service.face_assets import CanonicalFace  # noqa: E402
from service.face_model import N_EXPRESSION, N_SHAPE, FaceModel  # noqa: E402
from service.pipeline import FacePipeline  # noqa: E402
from service.pose import umeyama  # noqa: E402
from service.render import MeshRenderer  # noqa: E402
from tools.build_face_assets import run_facemesh  # noqa: E402

VIDEO_CACHE = ROOT / ".cache" / "facemesh_videos.npz"
HELD_OUT_VIDEO = "liveportrait_d9"
TRAIN_SUBSETS = ("helen_train", "lfpw_train")
# FaceMesh indices used to name expression components.
UPPER_LIP, LOWER_LIP = 13, 14
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
RIGHT_UPPER_LID, RIGHT_LOWER_LID, LEFT_UPPER_LID, LEFT_LOWER_LID = 159, 145, 386, 374
RIGHT_BROW, LEFT_BROW = [70, 63, 105, 66, 107], [300, 293, 334, 296, 336]
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


def track_video(path: Path, pipeline: FacePipeline) -> np.ndarray:
    """FaceMesh points of the single face in every frame (tracked; lost frames skipped)."""
    capture = cv2.VideoCapture(str(path))
    points, previous = [], None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        alignment = None
        if previous is not None:
            alignment = pipeline.aligner.process(frame, roi_from_points(previous))
        if alignment is None or alignment.presence < 0.5:
            detections = pipeline.detect(frame)
            alignment = pipeline.align(frame, detections[0]) if detections else None
        if alignment is None or alignment.presence < 0.5:
            previous = None
            continue
        previous = alignment.points
        points.append(alignment.points)
    capture.release()
    return np.array(points, np.float32)


def video_meshes(data: Path) -> dict[str, np.ndarray]:
    if VIDEO_CACHE.is_file():
        return dict(np.load(VIDEO_CACHE))
    pipeline = FacePipeline(detector="short")
    videos = sorted((data / "videos").glob("liveportrait_*.mp4")) + sorted((data / "videos").glob("WDA_*.mp4"))
    result = {v.stem: track_video(v, pipeline) for v in tqdm(videos, desc="FaceMesh on videos")}
    VIDEO_CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(VIDEO_CACHE, **result)
    return result


def to_model_frame(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Similarity-align every face (n, 468, 3) onto ``reference``."""
    out = np.empty(points.shape, np.float64)
    for i, p in enumerate(points.astype(np.float64)):
        rotation, scale, translation = umeyama(p, reference)
        out[i] = scale * p @ rotation.T + translation
    return out


def mirror(shapes: np.ndarray, mirror_index: np.ndarray) -> np.ndarray:
    """Mirror images (n, 468, 3) through the midline x = 0."""
    return (shapes * np.array([-1.0, 1.0, 1.0]))[:, mirror_index]


def pca(deviations: np.ndarray, count: int):
    """Orthonormal directions (count, 1404), standard deviations (count,), all variances."""
    flat = deviations.reshape(len(deviations), -1)
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    variances = singular ** 2 / len(flat)
    directions = vt[:count]
    # Deterministic sign: the largest-magnitude coordinate of each direction is positive.
    signs = np.sign(directions[np.arange(count), np.abs(directions).argmax(1)])
    return directions * signs[:, None], np.sqrt(variances[:count]), variances


def expression_measures(field: np.ndarray) -> dict[str, float]:
    """What a displacement field (468, 3) does, in model units (eye distance = 1)."""
    lid_right = field[RIGHT_LOWER_LID, 1] - field[RIGHT_UPPER_LID, 1]
    lid_left = field[LEFT_LOWER_LID, 1] - field[LEFT_UPPER_LID, 1]
    brow_right = -(field[RIGHT_BROW, 1].mean() - field[RIGHT_EYE_OUTER, 1])
    brow_left = -(field[LEFT_BROW, 1].mean() - field[LEFT_EYE_OUTER, 1])
    corner_right, corner_left = -field[MOUTH_RIGHT, 0], field[MOUTH_LEFT, 0]
    return {
        "jaw open (lip gap)": field[LOWER_LIP, 1] - field[UPPER_LIP, 1],
        "smile (mouth wider)": corner_left + corner_right,
        "mouth corners up": -(field[MOUTH_LEFT, 1] + field[MOUTH_RIGHT, 1]) / 2 + field[UPPER_LIP, 1],
        "eyes open": lid_right + lid_left,
        "brows raised": brow_right + brow_left,
        "mouth to the face's left": (corner_left - corner_right) / 2,
        "left eye open more than right": lid_left - lid_right,
        "left brow raised more than right": brow_left - brow_right,
    }


# FaceMesh regions, for naming components that no single measure explains.
REGIONS = {
    "face contour": [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                     148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109],
    "lips": [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
             78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415],
    "eyes": [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
             263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466],
    "brows": RIGHT_BROW + LEFT_BROW + [46, 53, 52, 65, 55, 276, 283, 282, 295, 285],
    "nose": [1, 2, 4, 5, 6, 19, 94, 97, 98, 326, 327, 168, 197, 195],
}


def name_expressions(basis: np.ndarray, mirror_index: np.ndarray):
    """A name per component and the sign that makes its named effect positive.

    A component is named after the measure (lip gap, mouth width, ...) it
    changes by at least 1 % of the eye distance per standard deviation, else
    after the region that moves most and whether the motion is left-right
    symmetric or antisymmetric.
    """
    keys = list(expression_measures(basis[0]).keys())
    table = np.array([list(expression_measures(b).values()) for b in basis])
    names, signs, used = [], [], set()
    for k, field in enumerate(basis):
        order = [j for j in np.argsort(-np.abs(table[k])) if keys[j] not in used]
        if order and abs(table[k, order[0]]) >= 0.01:
            best = order[0]
            used.add(keys[best])
            names.append(keys[best])
            signs.append(np.sign(table[k, best]) or 1.0)
            continue
        energy = {r: float((field[idx] ** 2).sum(1).mean()) for r, idx in REGIONS.items()}
        region = max(energy, key=energy.get)
        mirrored = (field * np.array([-1.0, 1.0, 1.0]))[mirror_index]
        symmetric = np.linalg.norm(field - mirrored) < np.linalg.norm(field + mirrored)
        name = f"{region}, {'symmetric' if symmetric else 'left-right'} ({k})"
        names.append(name)
        signs.append(1.0)
    return names, np.array(signs)


def reconstruction_error(model: FaceModel, points: np.ndarray) -> np.ndarray:
    """Mean vertex error of the fitted model per face, in eye distances (3D)."""
    errors = []
    for p in points.astype(np.float64):
        params = model.fit(p)
        scale = np.cbrt(np.linalg.det(params[:12].reshape(3, 4)[:, :3]))
        errors.append(np.linalg.norm(model.points468(params) - p, axis=1).mean() / scale)
    return np.array(errors)


def save_picture(model: FaceModel, path: Path) -> None:
    """Mean face, then ±3σ of shape 0-1 and of the first expression components."""
    renderer = MeshRenderer()
    size = 220
    yaw = np.deg2rad(25)
    rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    tiles, labels = [], []

    def render(shape, expression, label):
        params = np.concatenate([np.hstack([70 * rotation, [[size / 2], [size / 2 + 5], [0]]]).ravel(),
                                 shape, expression])
        tile = np.full((size, size, 3), 255, np.uint8)
        renderer.render(tile, model.dense_vertices(params), model.dense_triangles, alpha=1.0)
        cv2.putText(tile, label, (4, size - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)

    zero_s, zero_e = np.zeros(N_SHAPE), np.zeros(N_EXPRESSION)
    render(zero_s, zero_e, "mean")
    for k in range(2):
        for sign in (-3, 3):
            s = zero_s.copy()
            s[k] = sign
            render(s, zero_e, f"shape {k} {sign:+d}sd")
    for k in range(4):
        for sign in (-3, 3):
            e = zero_e.copy()
            e[k] = sign
            render(zero_s, e, f"{model.expression_names[k][:18]} {sign:+d}")
    while len(tiles) % 7:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i:i + 7]) for i in range(0, len(tiles), 7)]
    cv2.imwrite(str(path), np.vstack(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild asset/face_model.npz from ../shared/data")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    if not (args.data / "landmarks68" / "index.csv").is_file():
        raise SystemExit(f"error: {args.data} does not hold the shared face data; pass --data PATH")
    canonical = CanonicalFace.load()
    reference, mirror_index = canonical.vertices, canonical.mirror_index

    photos = run_facemesh(args.data)
    train_photos = np.isin(photos["subsets"], TRAIN_SUBSETS)
    videos = video_meshes(args.data)
    train_videos = [k for k in sorted(videos) if k != HELD_OUT_VIDEO]

    # Expression: per-person deviations around each person's own mean, mirrored too.
    deviations = []
    for name in train_videos:
        shapes = to_model_frame(videos[name], reference)
        for group in (shapes, mirror(shapes, mirror_index)):
            deviations.append(group - group.mean(0))
    expr_dirs, expr_sigma, expr_var = pca(np.concatenate(deviations), N_EXPRESSION)

    # Shape: 300-W training faces and their mirror images, expression projected out.
    faces = to_model_frame(photos["points"][train_photos], reference)
    faces = np.concatenate([faces, mirror(faces, mirror_index)])
    mean = faces.mean(0)
    mean = 0.5 * (mean + mirror(mean[None], mirror_index)[0])
    rotation, scale, translation = umeyama(mean, reference)
    mean = scale * mean @ rotation.T + translation
    flat = (faces - mean).reshape(len(faces), -1)
    flat = flat - (flat @ expr_dirs.T) @ expr_dirs
    shape_dirs, shape_sigma, shape_var = pca(flat, N_SHAPE)
    regularisation = float(shape_var[N_SHAPE:].sum() / (flat.shape[1] - N_SHAPE - N_EXPRESSION))

    expression_basis = (expr_dirs * expr_sigma[:, None]).reshape(N_EXPRESSION, 468, 3)
    names, signs = name_expressions(expression_basis, mirror_index)
    expression_basis *= signs[:, None, None]
    shape_basis = (shape_dirs * shape_sigma[:, None]).reshape(N_SHAPE, 468, 3)
    # Zero expression should be a closed mouth, not the average photo's parted
    # lips: move the mean along the jaw component until the inner lips touch.
    jaw = names.index("jaw open (lip gap)")
    gap = mean[LOWER_LIP, 1] - mean[UPPER_LIP, 1]
    gap_per_sd = expression_basis[jaw, LOWER_LIP, 1] - expression_basis[jaw, UPPER_LIP, 1]
    mean_jaw_shift = -gap / gap_per_sd
    mean = mean + mean_jaw_shift * expression_basis[jaw]

    out = ROOT / "asset"
    np.savez(out / "face_model.npz", mean=mean.astype(np.float32), shape_basis=shape_basis.astype(np.float32),
             expression_basis=expression_basis.astype(np.float32), expression_names=np.array(names),
             triangles=canonical.triangles, regularisation=np.float64(regularisation))
    model = FaceModel.load(out / "face_model.npz")

    held_photos = photos["points"][photos["subsets"] == "afw"]
    held_video = videos[HELD_OUT_VIDEO]
    report = {
        "photos_train": int(train_photos.sum()), "video_frames_train": int(sum(len(videos[k]) for k in train_videos)),
        "videos_train": train_videos, "held_out": {"photos": "afw", "video": HELD_OUT_VIDEO},
        "expression_names": names,
        "expression_sigma": [round(float(s), 4) for s in expr_sigma],
        "expression_variance_explained": float(expr_var[:N_EXPRESSION].sum() / expr_var.sum()),
        "shape_variance_explained": float(shape_var[:N_SHAPE].sum() / shape_var.sum()),
        "regularisation": regularisation,
        "mean_closed_by_jaw_sd": float(mean_jaw_shift),
        "dense_vertices": model.n_dense_vertices, "dense_triangles": int(len(model.dense_triangles)),
        "reconstruction_error_eye_distance": {
            "train_photos_mean": float(reconstruction_error(model, photos["points"][train_photos][::4]).mean()),
            "held_out_afw_mean": float(reconstruction_error(model, held_photos).mean()),
            "held_out_afw_p90": float(np.percentile(reconstruction_error(model, held_photos), 90)),
            "held_out_video_mean": float(reconstruction_error(model, held_video[::3]).mean()),
        },
    }
    (out / "face_model_report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_picture(model, out / "face_model.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
